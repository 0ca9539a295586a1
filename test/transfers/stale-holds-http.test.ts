import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { Redis } from 'iovalkey';
import { authorizationPruningSettled, maybePruneAuthorizationState } from '../../src/authorization/pruning.ts';
import { buildApp } from '../../src/http/app.ts';
import { parseAmount } from '../../src/transfers/amounts.ts';
import { pruneTransferLedger } from '../../src/transfers/totals-database.ts';
import { holdGraceMs, newHolder, totalScope, transferTotals } from '../../src/transfers/totals.ts';
import { assertOAuthError, basicAuthorization, formBody } from '../endpoints/fixture.ts';
import { deleteKeys, redisSkip, testRedisUrl, uniquePrefix } from '../helpers/redis.ts';
import { testDialects, type TestDialect } from '../helpers/storage.ts';
import { brokerLei, custodyApi, iban, seedDestination, transfer, transferContext } from './enforcement-fixture.ts';

// A node that dies while an issuance holds a daily-limit reservation leaves the attempt's holder
// behind — a ledger row, or a name in Redis's holders' list (docs/transfers.md "Holds left by a node
// that died"). Once the grace an issuance may take has passed, the next reservation of the account
// and asset, or the pruning, settles it: a hold whose token was never issued is taken back; one
// whose token was issued (its events committed, the node gone before `keep`) becomes the
// reservation's lasting hold — never taken back.

const ibanDestination = { kind: 'iban' as const, iban, bic: 'COBADEFFXXX' };
const scope = totalScope(brokerLei, 'TRE-001', 'USD');

async function server(t: TestContext, dialect?: TestDialect, env?: NodeJS.ProcessEnv) {
  const base = await transferContext(t, { ...(dialect ? { dialect } : {}), ...(env ? { env } : {}) });
  const app = buildApp(base.ctx);
  t.after(() => app.close());
  await app.ready();
  await seedDestination(base.ctx, { destination: ibanDestination, state: 'usable' });
  const token = (amount: string, txn: string) =>
    app.inject({
      method: 'POST',
      url: '/token',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuthorization('treasury-app', base.secrets['treasury-app']!) },
      payload: formBody({ grant_type: 'client_credentials', resource: custodyApi, authorization_details: JSON.stringify([transfer({ amount })]), txn }),
    });
  const totals = transferTotals(base.ctx);
  const total = () => totals.total(scope, base.ctx.clock.now());
  const rows = async () => (await base.ctx.storage.db.selectFrom('transfer_ledger').select('id').where('scope', '=', scope).execute()).map((r) => r.id);
  /** An issuance that reserved and died before its token was issued: its holder, and nothing more. */
  const diedDeciding = async (amount: string) => {
    const reserved = await totals.reserve({ scope, id: 'died-deciding', holder: newHolder('request-of-a-dead-node'), amount: parseAmount(amount, 'exact')!, limit: parseAmount('2500000', 'exact')!, now: base.ctx.clock.now() });
    assert.equal(reserved.created, true);
  };
  return { ...base, token, totals, total, rows, diedDeciding };
}

for (const dialect of testDialects()) {
  describe(`holds left by a node that died while issuing, totals in the database on ${dialect.name}`, () => {
    test('a hold whose token was never issued counts while the issuance might still be deciding, and is taken back by the next reservation once the grace has passed', async (t) => {
      const { clock, token, total, rows, diedDeciding } = await server(t, dialect);
      await diedDeciding('1800000');
      assertOAuthError(await token('900000', 'T-1'), 400, 'invalid_authorization_details', 'within the grace');
      clock.advance(holdGraceMs + 1);
      const fits = await token('900000', 'T-2');
      assert.equal(fits.statusCode, 200, fits.body);
      assert.equal(await total(), parseAmount('900000', 'exact'), 'the dead issuance counts no more');
      assert.equal((await rows()).length, 1, JSON.stringify(await rows()));
    });

    test('a hold whose token was never issued is taken back by the pruning once the grace has passed, not before', async (t) => {
      const { ctx, total, rows, diedDeciding } = await server(t, dialect);
      await diedDeciding('1800000');
      await pruneTransferLedger(ctx.storage.db, ctx.clock.now() + holdGraceMs - 1);
      assert.equal(await total(), parseAmount('1800000', 'exact'), 'within the grace: kept');
      await pruneTransferLedger(ctx.storage.db, ctx.clock.now() + holdGraceMs + 1);
      assert.deepEqual(await rows(), []);
      assert.equal(await total(), 0n);
    });

    test('a hold whose token was issued, the node gone before making it lasting, becomes the lasting hold: its transfer stays counted', async (t) => {
      const { ctx, clock, token, totals, total, rows } = await server(t, dialect);
      const keep = totals.keep.bind(totals);
      // The events are committed; the node dies before `keep`.
      totals.keep = async () => {};
      const issued = await token('900000', 'T-1');
      assert.equal(issued.statusCode, 200, issued.body);
      totals.keep = keep;
      assert.ok((await rows()).every((id) => id.includes('/')), 'left as a holder');
      clock.advance(holdGraceMs + 1);
      assert.equal((await token('900000', 'T-2')).statusCode, 200);
      assert.equal(await total(), parseAmount('1800000', 'exact'));
      assertOAuthError(await token('900000', 'T-3'), 400, 'invalid_authorization_details', 'the issued token still counts');
      await pruneTransferLedger(ctx.storage.db, ctx.clock.now() + holdGraceMs + 1);
      assert.equal((await rows()).filter((id) => !id.includes('/')).length, 2, `both issued tokens' lasting holds: ${JSON.stringify(await rows())}`);
      assert.equal(await total(), parseAmount('1800000', 'exact'));
    });
  });
}

/** The node's totals in Redis (under a prefix of the test's own), and each reservation's holds as its holders' list names them. */
async function redisServer(t: TestContext) {
  const prefix = uniquePrefix();
  t.after(() => deleteKeys(testRedisUrl, prefix));
  const f = await server(t, undefined, { REDIS_URL: testRedisUrl, CLEARANCE_REDIS_PREFIX: prefix });
  await f.ctx.risk.limits.connect();
  t.after(() => f.ctx.risk.limits.close());
  assert.equal(f.totals.kind, 'redis');
  const client = new Redis(testRedisUrl);
  t.after(() => client.disconnect());
  const holds = async () => Object.values(await client.hgetall(`${prefix}transfer-total:{${scope}}:holders`)).map((list) => list.trim().split(' '));
  return { ...f, holds };
}

describe('holds left by a node that died while issuing, totals in Redis', { skip: redisSkip }, () => {
  test('a hold whose token was never issued counts while the issuance might still be deciding, and is taken back by the next reservation once the grace has passed', async (t) => {
    const { clock, token, total, holds, diedDeciding } = await redisServer(t);
    await diedDeciding('1800000');
    assertOAuthError(await token('900000', 'T-1'), 400, 'invalid_authorization_details', 'within the grace');
    clock.advance(holdGraceMs + 1);
    const fits = await token('900000', 'T-2');
    assert.equal(fits.statusCode, 200, fits.body);
    assert.equal(await total(), parseAmount('900000', 'exact'), 'the dead issuance counts no more');
    assert.deepEqual(await holds(), [['*']], 'the issued token\'s lasting hold alone');
  });

  test('a hold whose token was never issued is taken back by the pruning once the grace has passed, not before', async (t) => {
    const { ctx, clock, total, holds, diedDeciding } = await redisServer(t);
    await diedDeciding('1800000');
    clock.advance(holdGraceMs - 1);
    maybePruneAuthorizationState(ctx);
    await authorizationPruningSettled(ctx);
    assert.equal(await total(), parseAmount('1800000', 'exact'), 'within the grace: kept');
    // The next pruning, 10 minutes on.
    clock.advance(10 * 60_000);
    maybePruneAuthorizationState(ctx);
    await authorizationPruningSettled(ctx);
    assert.deepEqual(await holds(), []);
    assert.equal(await total(), 0n);
  });

  test('a hold whose token was issued, the node gone before making it lasting, becomes the lasting hold: its transfer stays counted', async (t) => {
    const { clock, token, totals, total, holds } = await redisServer(t);
    const keep = totals.keep.bind(totals);
    // The events are committed; the node dies before `keep`.
    totals.keep = async () => {};
    const issued = await token('900000', 'T-1');
    assert.equal(issued.statusCode, 200, issued.body);
    totals.keep = keep;
    assert.ok((await holds()).every((list) => list.length === 1 && list[0] !== '*'), 'left as a holder');
    clock.advance(holdGraceMs + 1);
    assert.equal((await token('900000', 'T-2')).statusCode, 200);
    assert.equal(await total(), parseAmount('1800000', 'exact'));
    assertOAuthError(await token('900000', 'T-3'), 400, 'invalid_authorization_details', 'the issued token still counts');
    assert.deepEqual(await holds(), [['*'], ['*']], "both issued tokens' lasting holds");
  });
});
