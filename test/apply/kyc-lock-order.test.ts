import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { adminAudience } from '../../src/admin/authorize.ts';
import { lockKycPrincipal } from '../../src/risk/kyc/changes.ts';
import type { KycPrincipal } from '../../src/risk/kyc/record.ts';
import { readKycRecord } from '../../src/risk/kyc/store.ts';
import { protocolFixture, secretClient, type ProtocolFixture } from '../endpoints/fixture.ts';
import { backendPid, nextWaiter } from '../helpers/lock-waits.ts';
import { testDialects } from '../helpers/storage.ts';

/**
 * An apply (POST /admin/apply, `clearance apply`) that declares a principal's KYC record while an
 * administrator freezes that principal. The freeze takes the principal's KYC lock first and then
 * writes what the principal owns: a legal entity's clients (and the `clients` generation), a
 * person's row. An apply that wrote those before it took the KYC lock held them in the other order:
 * PostgreSQL aborted one of the two (40P01), a 500 or a failed apply. PostgreSQL only: it runs the
 * transactions side by side; SQLite has one writer, so the two never interleave there.
 */
const postgres = testDialects().find((d) => d.name === 'postgres');
const firm = '5493001KJTIIGC8Y1R12';
const entity = (kyc: Record<string, unknown>) => ({ lei: firm, name: 'Broker Ltd', jurisdiction: 'GB', home_region: 'uk', roles: ['broker'], desks: [{ id: 'fx-spot' }], kyc });

async function scene(t: Parameters<typeof protocolFixture>[0]) {
  const f = await protocolFixture(t, { dialect: postgres!, risk: 'off' });
  await f.apply({
    regions: [{ id: 'uk' }],
    legal_entities: [entity({ status: 'verified' })],
    clients: [secretClient('firm-pricing', 'order:create', { owner_lei: firm })],
    users: [{ username: 'alice', name: 'Alice', desks: ['fx-spot'], kyc: { status: 'verified' } }],
  });
  const admin = await f.accessToken('admin-ops', { resource: adminAudience(f.issuer) });
  const alice = (await f.ctx.storage.db.selectFrom('users').select('id').where('username', '=', 'alice').executeTakeFirstOrThrow()).id;
  const request = (method: 'POST' | 'PUT', url: string, body: unknown) => () =>
    f.inject({ method, url, headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' }, payload: JSON.stringify(body) });
  return { f, alice, request };
}

/**
 * Holds `principal`'s KYC lock in a transaction of its own while `changes` start one after the
 * other, each once the one before waits on a lock; then lets go, and answers their responses. The
 * first change is the first given the lock.
 */
async function kycLockHeldWhile(f: ProtocolFixture, principal: KycPrincipal, changes: (() => Promise<LightMyRequestResponse>)[]): Promise<LightMyRequestResponse[]> {
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let holding!: (pid: number) => void;
  const held = new Promise<number>((resolve) => (holding = resolve));
  const holder = f.ctx.storage.db.transaction().execute(async (trx) => {
    await lockKycPrincipal(trx, principal);
    holding(await backendPid(trx));
    await released;
  });
  const pids = [await held];
  const started: Promise<LightMyRequestResponse>[] = [];
  for (const change of changes) {
    started.push(change());
    pids.push(await nextWaiter(f.ctx.storage.db, pids));
  }
  release();
  await holder;
  return Promise.all(started);
}

describe('an apply declaring KYC records against a freeze of the same principal, on postgres', { skip: postgres ? false : 'PostgreSQL only (TEST_DATABASE_URL)' }, () => {
  test("an apply that writes clients and a firm's KYC record, while an administrator freezes the firm, both complete: the apply takes the KYC lock before it writes a client", async (t) => {
    const { f, request } = await scene(t);
    // The freeze waits for the firm's KYC lock; the apply comes after. Given the lock, the freeze
    // ends the firm's clients' tokens (the clients generation); an apply that had written a client
    // first held that generation while it waited for the firm's lock the freeze holds: a deadlock.
    const [frozen, applied] = await kycLockHeldWhile(f, { type: 'LegalEntity', id: firm }, [
      request('PUT', `/admin/kyc/legal-entities/${firm}`, { status: 'frozen', reason: 'sanctions hit confirmed' }),
      request('POST', '/admin/apply', {
        clients: [secretClient('firm-reporting', 'order:create', { owner_lei: firm })],
        legal_entities: [entity({ status: 'verified', level: 'enhanced' })],
      }),
    ]);
    assert.equal(frozen!.statusCode, 200, `the freeze: ${frozen!.body}`);
    assert.equal(applied!.statusCode, 200, `the apply: ${applied!.body}`);
    const record = (await readKycRecord(f.ctx.storage.db, { type: 'LegalEntity', id: firm }))!;
    assert.equal(record.status, 'frozen', 'the freeze stays');
    assert.equal(record.level, 'enhanced', 'the declaration the apply wrote after it');
    assert.ok(await f.ctx.clients.get('firm-reporting'), 'the client the apply declared');
  });

  test("an apply that changes a person and their KYC record, while an administrator freezes them, both complete: the apply takes the KYC lock before it writes the person", async (t) => {
    const { f, alice, request } = await scene(t);
    // Given the lock, the freeze moves the person's cut-off (their row); an apply that had read
    // the row for update first held it while it waited for the person's lock: a deadlock.
    const [frozen, applied] = await kycLockHeldWhile(f, { type: 'User', id: alice }, [
      request('PUT', '/admin/kyc/users/alice', { status: 'frozen', reason: 'investigation' }),
      request('POST', '/admin/apply', { users: [{ username: 'alice', name: 'Alice Trader', desks: ['fx-spot'], kyc: { status: 'verified', level: 'enhanced' } }] }),
    ]);
    assert.equal(frozen!.statusCode, 200, `the freeze: ${frozen!.body}`);
    assert.equal(applied!.statusCode, 200, `the apply: ${applied!.body}`);
    const record = (await readKycRecord(f.ctx.storage.db, { type: 'User', id: alice }))!;
    assert.equal(record.status, 'frozen');
    assert.equal(record.level, 'enhanced');
  });
});
