import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { Redis } from 'iovalkey';
import { decodeJwt } from 'jose';
import { parseAmount } from '../../src/transfers/amounts.ts';
import { totalScope, transferTotals } from '../../src/transfers/totals.ts';
import { cibaFixture, cibaGrant, subjectDecides } from '../ciba/fixture.ts';
import { deleteKeys, redisSkip, testRedisUrl, uniquePrefix } from '../helpers/redis.ts';
import { testDialects, type TestDialect } from '../helpers/storage.ts';
import { brokerLei, controls, custodyApi, iban, seedDestination, transfer, transferDocument } from './enforcement-fixture.ts';

// A transfer token refreshed again and again holds its daily-limit reservation once (docs/transfers.md
// "What is counted"): each refresh is one more issuance attempt, a holder while it is decided, and
// once its token is issued its hold is the reservation's lasting one — not one more row (database)
// or name in the holders' list (Redis) per refresh for the rest of the window.

type Json = Record<string, unknown>;
const ibanDestination = { kind: 'iban' as const, iban, bic: 'COBADEFFXXX' };
const scope = totalScope(brokerLei, 'TRE-001', 'USD');
const refreshes = 6;

/** CIBA with a trader on the treasury desk and a client that may refresh; a policy permitting every transfer. */
async function refreshFixture(t: TestContext, options: { dialect?: TestDialect; env?: NodeJS.ProcessEnv } = {}) {
  const f = await cibaFixture(t, options);
  await f.apply({
    ...transferDocument,
    users: [{ username: 'trader', name: 'Tina Trader', desks: ['treasury'], roles: ['trader'] }],
    clients: [
      ...transferDocument.clients,
      { client_id: 'treasury-ciba', kind: 'app', token_endpoint_auth_method: 'client_secret_basic', grant_types: [cibaGrant, 'refresh_token'], backchannel_token_delivery_mode: 'poll', scope: 'openid transfer:withdrawal' },
    ],
    transfer_controls: controls,
    policies: [{ version: 'v1', text: '@id("all") permit (principal, action, resource);', change_ref: 'CHG-1', author: 'alice.author', approver: 'bob.approver', active: true }],
  });
  await seedDestination(f.ctx, { destination: ibanDestination, state: 'usable' });
  /** The trader's CIBA token for a transfer below its threshold: no second person, so it comes with a refresh token. */
  const issued = async (amount: string): Promise<Json> => {
    const started = await f.bcAuthorize({ scope: 'openid transfer:withdrawal', login_hint: 'trader', binding_message: 'Withdrawal W-1', resource: custodyApi, authorization_details: JSON.stringify([transfer({ amount })]) }, 'treasury-ciba');
    assert.equal(started.statusCode, 200, started.body);
    const request = await f.pending();
    assert.equal(request.requiredApprovals, 0);
    await subjectDecides(f.ctx, request);
    f.clock.advance(5_000);
    const response = await f.poll(String((started.json() as Json).auth_req_id), 'treasury-ciba');
    assert.equal(response.statusCode, 200, response.body);
    return response.json() as Json;
  };
  const refresh = (refreshToken: string) => f.token({ auth: f.basic('treasury-ciba'), form: { grant_type: 'refresh_token', refresh_token: refreshToken } });
  const total = () => transferTotals(f.ctx).total(scope, f.clock.now());
  return { f, issued, refresh, total };
}

/** Refreshes `times` times, a minute apart, each with the refresh token the last one returned; every refresh keeps the txn. */
async function refreshAgainAndAgain(fixture: Awaited<ReturnType<typeof refreshFixture>>, tokens: Json, times: number): Promise<Json> {
  const txn = decodeJwt(String(tokens.access_token)).txn;
  let current = tokens;
  for (let i = 0; i < times; i++) {
    fixture.f.clock.advance(60_000);
    const response = await fixture.refresh(String(current.refresh_token));
    assert.equal(response.statusCode, 200, response.body);
    current = response.json() as Json;
    assert.equal(decodeJwt(String(current.access_token)).txn, txn, 'the same transfer, under the same txn');
  }
  return current;
}

for (const dialect of testDialects()) {
  describe(`a transfer token refreshed again and again, totals in the database on ${dialect.name}`, () => {
    test(`holds its reservation with one ledger row, not one more per refresh (${refreshes} refreshes), counted once`, async (t) => {
      const fixture = await refreshFixture(t, { dialect });
      const tokens = await fixture.issued('2500');
      const rows = async () => (await fixture.f.ctx.storage.db.selectFrom('transfer_ledger').select('id').where('scope', '=', scope).execute()).map((r) => r.id);
      assert.equal((await rows()).length, 1, 'the issued token holds it');
      await refreshAgainAndAgain(fixture, tokens, refreshes);
      assert.equal((await rows()).length, 1, `after ${refreshes} refreshes: ${JSON.stringify(await rows())}`);
      assert.equal(await fixture.total(), parseAmount('2500', 'exact'), 'counted once');
    });
  });
}

describe('a transfer token refreshed again and again, totals in Redis', { skip: redisSkip }, () => {
  test(`holds its reservation with one holder in the holders' list, not one more per refresh (${refreshes} refreshes), counted once`, async (t) => {
    const prefix = uniquePrefix();
    t.after(() => deleteKeys(testRedisUrl, prefix));
    const fixture = await refreshFixture(t, { env: { REDIS_URL: testRedisUrl, CLEARANCE_REDIS_PREFIX: prefix } });
    await fixture.f.ctx.risk.limits.connect();
    t.after(() => fixture.f.ctx.risk.limits.close());
    assert.equal(transferTotals(fixture.f.ctx).kind, 'redis');
    const client = new Redis(testRedisUrl);
    t.after(() => client.disconnect());
    const holders = async () => {
      const lists = await client.hgetall(`${prefix}transfer-total:{${scope}}:holders`);
      return Object.values(lists).map((list) => list.trim().split(' '));
    };
    const tokens = await fixture.issued('2500');
    assert.equal((await holders()).length, 1, 'one reservation');
    const before = (await holders())[0]!.length;
    await refreshAgainAndAgain(fixture, tokens, refreshes);
    const after = await holders();
    assert.equal(after.length, 1, 'one reservation still');
    assert.equal(after[0]!.length, before, `after ${refreshes} refreshes: ${JSON.stringify(after)}`);
    assert.equal(await fixture.total(), parseAmount('2500', 'exact'), 'counted once');
  });
});
