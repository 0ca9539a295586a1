import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { sql } from 'kysely';
import type { LightMyRequestResponse } from 'fastify';
import { adminAudience } from '../../../src/admin/authorize.ts';
import { lockKycPrincipal, lockKycPrincipals } from '../../../src/risk/kyc/changes.ts';
import { readKycRecord } from '../../../src/risk/kyc/store.ts';
import { protocolFixture, secretClient, type ProtocolFixture } from '../../endpoints/fixture.ts';
import { backendPid, nextWaiter } from '../../helpers/lock-waits.ts';
import { testDialects } from '../../helpers/storage.ts';

/**
 * A legal entity's freeze ends the tokens of every client the firm owns (src/risk/kyc/changes.ts
 * `endFrozenTokens`): it writes each client's row and the `clients` generation. When every writer
 * of a client wrote its row before the generation, a freeze that had written its first client and
 * the generation came to the row of a client another writer had just changed, and waited for that
 * writer, which waited for the generation: PostgreSQL aborted one (40P01). Now the generation comes
 * first for every writer (src/clients/store.ts). PostgreSQL only: SQLite has one writer at a time.
 */
const postgres = testDialects().find((d) => d.name === 'postgres');
const firm = '5493001KJTIIGC8Y1R12';

/**
 * Holds the `clients` generation in a transaction of its own while `changes` start one after the
 * other, each once the one before waits on a lock; then lets go, and answers their responses. The
 * first change is the first given the generation.
 */
async function clientsGenerationHeldWhile(f: ProtocolFixture, changes: (() => Promise<LightMyRequestResponse>)[]): Promise<LightMyRequestResponse[]> {
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let holding!: (pid: number) => void;
  const held = new Promise<number>((resolve) => (holding = resolve));
  const holder = f.ctx.storage.db.transaction().execute(async (trx) => {
    // Locked, not written: its waiters then queue in the order they came (a row written by a
    // transaction still open is waited for by every upsert at once, in no order).
    await sql`select value from generations where name = 'clients' for update`.execute(trx);
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

describe("a legal entity's freeze against a change of one of its clients, on postgres", { skip: postgres ? false : 'PostgreSQL only (TEST_DATABASE_URL)' }, () => {
  for (const [what, change] of [
    ['a rotation of its second client’s secret', (id: string) => ({ method: 'POST' as const, url: `/admin/clients/${id}/rotate-secret`, body: { overlap_seconds: 0 } })],
    ['an apply that changes its second client', (id: string) => ({ method: 'POST' as const, url: '/admin/apply', body: { clients: [secretClient(id, 'order:create', { owner_lei: firm, client_name: 'Renamed' })] } })],
  ] as const) {
    test(`the freeze and ${what} both complete: each takes the clients generation before a client's row`, async (t) => {
      const f = await protocolFixture(t, { dialect: postgres!, risk: 'off' });
      await f.apply({
        regions: [{ id: 'uk' }],
        legal_entities: [{ lei: firm, name: 'Broker Ltd', jurisdiction: 'GB', home_region: 'uk', roles: ['broker'], desks: [{ id: 'fx-spot' }], kyc: { status: 'verified' } }],
        clients: [secretClient('firm-a', 'order:create', { owner_lei: firm }), secretClient('firm-b', 'order:create', { owner_lei: firm })],
      });
      const admin = await f.accessToken('admin-ops', { resource: adminAudience(f.issuer) });
      const call = (r: { method: 'POST' | 'PUT'; url: string; body: unknown }) => () =>
        f.inject({ method: r.method, url: r.url, headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' }, payload: JSON.stringify(r.body) });
      // The freeze waits for the generation, the other change behind it. Had each written its row
      // first, the freeze would hold firm-a's and the other firm-b's: given the generation, the
      // freeze would come to firm-b's row, held by a change that waits for the generation.
      const [frozen, changed] = await clientsGenerationHeldWhile(f, [
        call({ method: 'PUT', url: `/admin/kyc/legal-entities/${firm}`, body: { status: 'frozen', reason: 'sanctions hit confirmed' } }),
        call(change('firm-b')),
      ]);
      assert.equal(frozen!.statusCode, 200, `the freeze: ${frozen!.body}`);
      assert.equal(changed!.statusCode, 200, `${what}: ${changed!.body}`);
      assert.equal((await readKycRecord(f.ctx.storage.db, { type: 'LegalEntity', id: firm }))!.status, 'frozen');
      f.ctx.clients.invalidate();
      for (const id of ['firm-a', 'firm-b']) assert.ok((await f.ctx.clients.get(id))?.tokensValidAfter, `${id}'s tokens ended`);
    });
  }
});

describe('lockKycPrincipals, on postgres', { skip: postgres ? false : 'PostgreSQL only (TEST_DATABASE_URL)' }, () => {
  test('takes the locks in one sorted order, whatever order it is given: waiting for the first, it holds none of the others', async (t) => {
    const database = await postgres!.create(t);
    const db = database.storage.db;
    // By name, LegalEntity:5299… comes before LegalEntity:5493….
    const [first, second] = [{ type: 'LegalEntity', id: '529900T8BM49AURSDO55' }, { type: 'LegalEntity', id: '5493001KJTIIGC8Y1R12' }] as const;
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let holding!: (pid: number) => void;
    const held = new Promise<number>((resolve) => (holding = resolve));
    const holder = db.transaction().execute(async (trx) => {
      await lockKycPrincipal(trx, first);
      holding(await backendPid(trx));
      await released;
    });
    const holderPid = await held;
    // Given the second first: in the order given, it would hold the second while it waits for the first.
    const both = db.transaction().execute((trx) => lockKycPrincipals(trx, [second, first, second]));
    await nextWaiter(db, [holderPid]);
    const secondFree = await db.transaction().execute(async (trx) => {
      const name = `${second.type}:${second.id}`;
      const { rows } = await sql<{ free: boolean }>`select pg_try_advisory_xact_lock(hashtextextended('clearance.kyc:' || current_schema() || ':' || ${name}, 0)) as free`.execute(trx);
      return rows[0]!.free;
    });
    release();
    await holder;
    await both;
    assert.equal(secondFree, true, 'waiting for the first, it held the second');
  });
});
