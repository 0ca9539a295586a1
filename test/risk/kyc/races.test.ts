import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { executeApply, planApply } from '../../../src/apply/index.ts';
import { ManualClock } from '../../../src/clock.ts';
import { loadConfig } from '../../../src/config.ts';
import type { Context } from '../../../src/context.ts';
import { createLogger } from '../../../src/log.ts';
import { OAuthError } from '../../../src/oauth-error.ts';
import { authorizeIssuance } from '../../../src/policy/issuance.ts';
import { changeKycByAdmin, KycChangeRefused } from '../../../src/risk/kyc/admin.ts';
import type { KycPrincipal } from '../../../src/risk/kyc/record.ts';
import { readKycRecord } from '../../../src/risk/kyc/store.ts';
import { decideScreeningMatch } from '../../../src/risk/screening/decisions.ts';
import { recordScreeningHit } from '../../../src/risk/screening/matches.ts';
import { openContext } from '../../../src/server.ts';
import { formatProblem } from '../../../src/validation.ts';
import { testDialects } from '../../helpers/storage.ts';

/** The example list, and a second entry the same person matches (a PEP listing). */
const list = readFileSync(new URL('../../../examples/screening/list.csv', import.meta.url), 'utf8').trimEnd() + '\nPEP-0099,person,Ivan Petrov,,,1961,pep,Deputy Minister (fictitious)\n';
const postgres = testDialects().find((d) => d.name === 'postgres');

/** Two nodes on one PostgreSQL database, each its own context and pool, and Ivan, verified, on the list twice. */
async function twoNodes(t: TestContext) {
  const dir = mkdtempSync(join(tmpdir(), 'clearance-kyc-race-'));
  writeFileSync(join(dir, 'list.csv'), list);
  const database = await postgres!.create();
  const config = loadConfig({ CLEARANCE_DATA_DIR: dir, CLEARANCE_SCREENING_LIST: join(dir, 'list.csv') });
  const clock = new ManualClock();
  const a = await openContext(config, { clock, log: createLogger('silent'), storage: database.storage });
  const b = await openContext(config, { clock, log: createLogger('silent'), storage: database.connect() });
  t.after(async () => {
    for (const ctx of [a, b]) await (ctx.audit as { close?: () => Promise<void> }).close?.();
    await database.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });
  const { plan, problems } = await planApply(a, {
    regions: [{ id: 'uk' }],
    legal_entities: [{ lei: '5493001KJTIIGC8Y1R12', name: 'Example Broker Ltd', jurisdiction: 'GB', home_region: 'uk', roles: ['broker'], desks: [{ id: 'fx-spot', product_classes: ['fx'] }] }],
    users: [
      { username: 'ivan', name: 'Someone Else', desks: ['fx-spot'], attributes: { date_of_birth: '1961-07-14' }, kyc: { status: 'verified' } },
      { username: 'bob', name: 'Bob Without A Record', desks: ['fx-spot'] },
    ],
  });
  if (!plan) assert.fail(problems.map(formatProblem).join('\n'));
  await executeApply(a, plan, { actor: 'test', via: 'cli' });
  const principal = async (username: string): Promise<KycPrincipal> => ({ type: 'User', id: (await a.storage.db.selectFrom('users').select('id').where('username', '=', username).executeTakeFirstOrThrow()).id });
  const index = a.risk.screening.index!;
  const hits = index.match({ type: 'person', name: 'Ivan Petrov', dateOfBirth: '1961-07-14' });
  return { a, b, index, principal, sanctions: hits.find((h) => h.entry.id === 'SAN-0001')!, pep: hits.find((h) => h.entry.id === 'PEP-0099')! };
}

/** `ctx` whose next audited transaction stops after its work, before its commit, until released. */
function pausedBeforeCommit(ctx: Context) {
  let entered!: () => void;
  let release!: () => void;
  const inside = new Promise<void>((resolve) => (entered = resolve));
  const gate = new Promise<void>((resolve) => (release = resolve));
  const audit = ctx.audit;
  const paused = {
    ...ctx,
    audit: {
      ...audit,
      recordWith: (work: Parameters<Context['audit']['recordWith']>[0]) =>
        audit.recordWith(async (trx) => {
          const result = await work(trx);
          entered();
          await gate;
          return result;
        }),
    },
  } as unknown as Context;
  return { paused, inside, release };
}

/** Whether a token could be issued for `subject` now (the freeze check runs first). */
async function issuable(ctx: Context, subject: KycPrincipal): Promise<boolean> {
  ctx.risk.kyc.invalidate();
  try {
    await authorizeIssuance(ctx, { subject: { type: 'User', id: subject.id }, clientId: 'nobody', audience: `${ctx.config.issuer}/userinfo`, scopes: ['openid'], authorizationDetails: [], requestId: 'r1', grantType: 'refresh_token' });
    return true;
  } catch (error) {
    assert.ok(error instanceof OAuthError, String(error));
    return false;
  }
}

describe('KYC changes of one principal on two nodes at once (PostgreSQL)', { skip: postgres ? false : 'TEST_DATABASE_URL is not set' }, () => {
  test('compliance clearing the last match while another node records a new one leaves the person frozen', async (t) => {
    const { a, b, index, principal, sanctions, pep } = await twoNodes(t);
    const ivan = await principal('ivan');
    const first = (await recordScreeningHit(a, ivan, sanctions, index.digest, 'sign_in'))!;
    const hit = pausedBeforeCommit(b);
    const second = recordScreeningHit(hit.paused, ivan, pep, index.digest, 'list_change');
    await hit.inside;
    const cleared = decideScreeningMatch(a, first.id, 'clear', 'namesake: another passport', { actor: 'compliance-1' });
    await sleep(200); // the clearing waits for the principal, held by node B's uncommitted match
    hit.release();
    assert.ok(await second, 'node B recorded its match');
    assert.equal((await cleared).status, 'cleared');
    assert.equal((await readKycRecord(a.storage.db, ivan))!.status, 'frozen', 'the open match keeps the freeze');
    assert.equal(await issuable(b, ivan), false);
  });

  test("an administrator lifting their own freeze while another node records a match is refused, and the person stays frozen", async (t) => {
    const { a, b, index, principal, pep } = await twoNodes(t);
    const ivan = await principal('ivan');
    await changeKycByAdmin(a, ivan, { status: 'frozen' }, { actor: 'admin-1', reason: 'investigation' });
    const hit = pausedBeforeCommit(b);
    const recorded = recordScreeningHit(hit.paused, ivan, pep, index.digest, 'list_change');
    await hit.inside;
    const lifted = changeKycByAdmin(a, ivan, { status: 'verified' }, { actor: 'admin-1', reason: 'investigation closed' }).then(
      () => 'lifted',
      (error: Error) => (error instanceof KycChangeRefused ? `refused ${error.status}` : `threw ${error.message}`),
    );
    await sleep(200);
    hit.release();
    assert.ok(await recorded);
    assert.equal(await lifted, 'refused 409');
    assert.equal((await readKycRecord(a.storage.db, ivan))!.status, 'frozen');
    assert.equal(await issuable(a, ivan), false);
  });

  test("the first writes of a record-less person's record by two nodes at once both land, one after the other", async (t) => {
    const { a, b, index, principal, sanctions } = await twoNodes(t);
    const bob = await principal('bob');
    const write = pausedBeforeCommit(b);
    const admin = changeKycByAdmin(write.paused, bob, { status: 'verified' }, { actor: 'admin-1' });
    await write.inside;
    const screening = recordScreeningHit(a, bob, sanctions, index.digest, 'list_change');
    await sleep(200);
    write.release();
    await admin;
    assert.ok(await screening, 'the hit is recorded, not lost to a duplicate key');
    const record = (await readKycRecord(a.storage.db, bob))!;
    assert.equal(record.status, 'frozen');
    assert.equal(record.version, 2);
  });

  test('confirming a match freezes a principal the record no longer shows frozen', async (t) => {
    const { a, index, principal, sanctions } = await twoNodes(t);
    const ivan = await principal('ivan');
    const match = (await recordScreeningHit(a, ivan, sanctions, index.digest, 'sign_in'))!;
    // As a freeze lifted by a path that skipped the rules would leave it.
    await a.storage.db.updateTable('kyc_records').set({ status: 'verified' }).where('principal_id', '=', ivan.id).execute();
    await decideScreeningMatch(a, match.id, 'confirm', 'true match', { actor: 'compliance-1' });
    assert.equal((await readKycRecord(a.storage.db, ivan))!.status, 'frozen');
  });
});
