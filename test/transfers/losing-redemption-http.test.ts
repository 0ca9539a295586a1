import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { Redis } from 'iovalkey';
import { parseAmount } from '../../src/transfers/amounts.ts';
import { usedBefore } from '../../src/transfers/destination-uses.ts';
import { destinationKey } from '../../src/transfers/detail.ts';
import { totalScope, transferTotals, type TransferTotals } from '../../src/transfers/totals.ts';
import { codeFlowFixture, webRedirect } from '../authorization/fixture.ts';
import { cibaFixture, cibaGrant, subjectDecides } from '../ciba/fixture.ts';
import { deleteKeys, redisSkip, testRedisUrl, uniquePrefix } from '../helpers/redis.ts';
import { testDialects, type TestDialect } from '../helpers/storage.ts';
import { brokerLei, controls, custodyApi, events, iban, seedDestination, transfer, transferDocument, transferEntities } from './enforcement-fixture.ts';

// Two redemptions of one CIBA request race (docs/transfers.md "What is counted"): both pass the
// checks and reserve the transfer under its txn, one wins the single-use write and is issued, the
// other loses and is refused. The loser's hold is let go on the way to its refusal: the reservation
// is held once, by the winner's lasting hold — not by it and the loser's holder until the window ends.
// Two redemptions of one code under no txn race the same way: the loser keeps the destination's
// first use it recorded, which the winner's transfer is (the reuse then revokes the grant, RFC 9700
// §4.5, but the token was issued: what it authorised stays counted and recorded).

type Json = Record<string, unknown>;
const ibanDestination = { kind: 'iban' as const, iban, bic: 'COBADEFFXXX' };
const scope = totalScope(brokerLei, 'TRE-001', 'USD');

/**
 * Holds every reservation until `count` have arrived: both redemptions have then passed every check
 * before reading whether the request was redeemed can tell them apart, so the race is the same on every run.
 */
function reservationsMeetAt(totals: TransferTotals, count: number): void {
  const reserve = totals.reserve.bind(totals);
  let arrived = 0;
  let open!: () => void;
  const all = new Promise<void>((resolve) => (open = resolve));
  totals.reserve = async (request) => {
    if (++arrived === count) open();
    await all;
    return reserve(request);
  };
}

async function raceFixture(t: TestContext, options: { dialect?: TestDialect; env?: NodeJS.ProcessEnv } = {}) {
  const f = await cibaFixture(t, options);
  await f.apply({
    ...transferDocument,
    users: [{ username: 'trader', name: 'Tina Trader', desks: ['treasury'], roles: ['trader'] }],
    clients: [
      ...transferDocument.clients,
      { client_id: 'treasury-ciba', kind: 'app', token_endpoint_auth_method: 'client_secret_basic', grant_types: [cibaGrant], backchannel_token_delivery_mode: 'poll', scope: 'openid transfer:withdrawal' },
    ],
    transfer_controls: controls,
    policies: [{ version: 'v1', text: '@id("all") permit (principal, action, resource);', change_ref: 'CHG-1', author: 'alice.author', approver: 'bob.approver', active: true }],
  });
  await seedDestination(f.ctx, { destination: ibanDestination, state: 'usable' });
  /** The trader's approved CIBA request for a transfer below its threshold, redeemed twice at once. */
  const racedRedemptions = async (amount: string) => {
    const started = await f.bcAuthorize({ scope: 'openid transfer:withdrawal', login_hint: 'trader', binding_message: 'Withdrawal W-1', resource: custodyApi, authorization_details: JSON.stringify([transfer({ amount })]) }, 'treasury-ciba');
    assert.equal(started.statusCode, 200, started.body);
    await subjectDecides(f.ctx, await f.pending());
    f.clock.advance(5_000);
    reservationsMeetAt(transferTotals(f.ctx), 2);
    const authReqId = String((started.json() as Json).auth_req_id);
    return Promise.all([f.poll(authReqId, 'treasury-ciba'), f.poll(authReqId, 'treasury-ciba')]);
  };
  const total = () => transferTotals(f.ctx).total(scope, f.clock.now());
  return { f, racedRedemptions, total };
}

/** One redemption issued, the other refused as already redeemed. */
function oneWinsOneLoses(answers: { statusCode: number; body: string }[]): void {
  assert.deepEqual(answers.map((a) => a.statusCode).sort(), [200, 400], answers.map((a) => a.body).join('\n'));
  const lost = answers.find((a) => a.statusCode === 400)!;
  assert.equal((JSON.parse(lost.body) as Json).error, 'invalid_grant', lost.body);
}

/**
 * A person's authorization code for a transfer that names no txn (the authorization request started
 * none, and a transfer is no order a passkey approves), to a destination the account never used.
 */
async function codeRaceFixture(t: TestContext, dialect: TestDialect) {
  const f = await codeFlowFixture(t, { dialect, risk: 'off' });
  await f.apply({
    ...transferEntities,
    resource_servers: transferDocument.resource_servers,
    users: [{ username: 'alice', desks: ['treasury'] }],
    clients: [{ client_id: 'treasury-web', kind: 'app', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['authorization_code'], redirect_uris: [webRedirect], scope: 'transfer:withdrawal' }],
    transfer_controls: controls,
    policies: [{ version: 'v1', text: '@id("all") permit (principal, action, resource);', change_ref: 'CHG-1', author: 'alice.author', approver: 'bob.approver', active: true }],
  });
  await seedDestination(f.ctx, { destination: ibanDestination, state: 'usable' });
  /** The code redeemed twice at once, both redemptions past every check before either writes. */
  const racedRedemptions = async (amount: string) => {
    const { code, pkce } = await f.authorizeAndApprove({ client: 'treasury-web', query: { scope: 'transfer:withdrawal', resource: custodyApi, authorization_details: JSON.stringify([transfer({ amount })]) } });
    reservationsMeetAt(transferTotals(f.ctx), 2);
    return Promise.all([f.redeem('treasury-web', code, pkce.verifier), f.redeem('treasury-web', code, pkce.verifier)]);
  };
  return { f, racedRedemptions };
}

for (const dialect of testDialects()) {
  describe(`two redemptions of one transfer code without a txn racing, on ${dialect.name}`, () => {
    test("the losing redemption keeps the destination's first use the winner's issued token counts on", async (t) => {
      const { f, racedRedemptions } = await codeRaceFixture(t, dialect);
      const answers = await racedRedemptions('2500');
      oneWinsOneLoses(answers);
      const winner = answers.find((a) => a.statusCode === 200)!;
      const issued = await events(f.ctx, 'token.issued');
      assert.equal(issued.length, 1, 'the winner\'s token was issued');
      assert.equal(issued[0]!.txn, undefined, 'under no txn');
      assert.ok(typeof (JSON.parse(winner.body) as Json).access_token === 'string');
      const rows = (await f.ctx.storage.db.selectFrom('transfer_ledger').select('id').execute()).map((r) => r.id);
      assert.equal(rows.length, 1, `the winner's transfer, counted by its lasting hold; the loser's own reservation taken back: ${JSON.stringify(rows)}`);
      assert.ok(!rows[0]!.includes('/'), rows[0]);
      assert.equal(await usedBefore(f.ctx.storage.db, 'TRE-001', destinationKey(ibanDestination), f.clock.now()), true, "the destination's first use, which the winner's transfer is, stays recorded");
    });
  });

  describe(`two redemptions of one transfer token racing, totals in the database on ${dialect.name}`, () => {
    test('the losing redemption lets go of its hold when it is refused: the reservation is held by one row, the winner’s', async (t) => {
      const { f, racedRedemptions, total } = await raceFixture(t, { dialect });
      oneWinsOneLoses(await racedRedemptions('2500'));
      const rows = (await f.ctx.storage.db.selectFrom('transfer_ledger').select('id').where('scope', '=', scope).execute()).map((r) => r.id);
      assert.equal(rows.length, 1, `one hold, not the winner's and the loser's: ${JSON.stringify(rows)}`);
      assert.ok(!rows[0]!.includes('/'), `the winner's lasting hold: ${rows[0]}`);
      assert.equal(await total(), parseAmount('2500', 'exact'), 'counted once');
    });
  });
}

describe('two redemptions of one transfer token racing, totals in Redis', { skip: redisSkip }, () => {
  test('the losing redemption lets go of its hold when it is refused: the holders’ list holds the lasting hold only', async (t) => {
    const prefix = uniquePrefix();
    t.after(() => deleteKeys(testRedisUrl, prefix));
    const { f, racedRedemptions, total } = await raceFixture(t, { env: { REDIS_URL: testRedisUrl, CLEARANCE_REDIS_PREFIX: prefix } });
    await f.ctx.risk.limits.connect();
    t.after(() => f.ctx.risk.limits.close());
    assert.equal(transferTotals(f.ctx).kind, 'redis');
    const client = new Redis(testRedisUrl);
    t.after(() => client.disconnect());
    oneWinsOneLoses(await racedRedemptions('2500'));
    const lists = Object.values(await client.hgetall(`${prefix}transfer-total:{${scope}}:holders`)).map((list) => list.trim().split(' '));
    assert.deepEqual(lists, [['*']], 'one reservation, held by the winner’s lasting hold alone');
    assert.equal(await total(), parseAmount('2500', 'exact'), 'counted once');
  });
});
