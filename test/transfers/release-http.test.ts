import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { decodeJwt } from 'jose';
import { buildApp } from '../../src/http/app.ts';
import { parseAmount } from '../../src/transfers/amounts.ts';
import { totalScope, transferTotals } from '../../src/transfers/totals.ts';
import { usedBefore } from '../../src/transfers/destination-uses.ts';
import { assertOAuthError, basicAuthorization, formBody } from '../endpoints/fixture.ts';
import { testDialects, type TestDialect } from '../helpers/storage.ts';
import { brokerLei, custodyApi, iban, seedDestination, transfer, transferContext } from './enforcement-fixture.ts';

// A transfer's daily-limit reservation is taken back whenever its token is not issued after all
// (docs/transfers.md "What is counted"): refused by the grant after enforcement (a txn already
// started), failing to sign, failing to record its events — never kept for 24 hours.

type Json = Record<string, unknown>;
const ibanDestination = { kind: 'iban' as const, iban, bic: 'COBADEFFXXX' };

async function server(t: TestContext, dialect: TestDialect) {
  const base = await transferContext(t, { dialect });
  const app = buildApp(base.ctx);
  t.after(() => app.close());
  await app.ready();
  await seedDestination(base.ctx, { destination: ibanDestination, state: 'usable' });
  const token = (amount: string, form: Record<string, string> = {}) =>
    app.inject({
      method: 'POST',
      url: '/token',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuthorization('treasury-app', base.secrets['treasury-app']!) },
      payload: formBody({ grant_type: 'client_credentials', resource: custodyApi, authorization_details: JSON.stringify([transfer({ amount })]), ...form }),
    });
  const total = () => transferTotals(base.ctx).total(totalScope(brokerLei, 'TRE-001', 'USD'), base.ctx.clock.now());
  return { ...base, app, token, total };
}

for (const dialect of testDialects()) {
  describe(`daily-limit reservations of tokens never issued, on ${dialect.name}`, () => {
    test('retries of a started txn are refused and reserve nothing: a fresh transfer still fits the limit', async (t) => {
      const { token, total } = await server(t, dialect);
      assert.equal((await token('1000', { txn: 'T-1' })).statusCode, 200);
      for (const amount of ['900000', '900000.5', '600000']) {
        const body = assertOAuthError(await token(amount, { txn: 'T-1' }), 400, 'invalid_request', amount);
        assert.match(String(body.error_description), /this txn already started a transaction of this client/);
      }
      assert.equal(await total(), parseAmount('1000', 'exact'), 'only the issued token is counted');
      // 1,000 + 200,000 is well within 2,500,000 (with the retries kept it was 2,601,000.5: refused).
      const fresh = await token('200000', { txn: 'T-2' });
      assert.equal(fresh.statusCode, 200, fresh.body);
      assert.equal(await total(), parseAmount('201000', 'exact'));
    });

    test('two identical requests with one chosen txn at once: one token, its transfer counted once', async (t) => {
      const { token, total } = await server(t, dialect);
      const answers = await Promise.all([token('700000', { txn: 'T-9' }), token('700000', { txn: 'T-9' })]);
      assert.deepEqual(answers.map((r) => r.statusCode).sort(), [200, 400]);
      assert.equal(await total(), parseAmount('700000', 'exact'));
    });

    test('a transfer refused with a chosen txn leaves the txn free: the same txn is issued once the request is fixed', async (t) => {
      const { token, total } = await server(t, dialect);
      assertOAuthError(await token('1500000', { txn: 'T-3' }), 400, 'invalid_authorization_details');
      const issued = await token('15000', { txn: 'T-3' });
      assert.equal(issued.statusCode, 200, issued.body);
      assert.equal(decodeJwt(String((issued.json() as Json).access_token)).txn, 'T-3');
      assert.equal(await total(), parseAmount('15000', 'exact'));
    });

    test('a token that cannot be signed counts toward no limit, and its destination stays unused', async (t) => {
      const { ctx, token, total } = await server(t, dialect);
      const signJwt = ctx.keys.signJwt.bind(ctx.keys);
      ctx.keys.signJwt = async () => {
        throw new Error('the signing key is unavailable');
      };
      assert.equal((await token('900000')).statusCode, 500);
      ctx.keys.signJwt = signJwt;
      assert.equal(await total(), 0n);
      assert.equal(await usedBefore(ctx.storage.db, 'TRE-001', `iban:${iban}`, ctx.clock.now()), false, 'the first use is forgotten');
      assert.equal((await token('900000')).statusCode, 200);
    });

    test('a token whose events cannot be recorded counts toward no limit (with a txn and without)', async (t) => {
      const { ctx, token, total } = await server(t, dialect);
      const record = ctx.audit.record.bind(ctx.audit);
      const commit = ctx.audit.commit.bind(ctx.audit);
      ctx.audit.record = async (event) => {
        if (event.type === 'token.issued') throw new Error('the audit log does not answer');
        return record(event);
      };
      ctx.audit.commit = async () => {
        throw new Error('the audit log does not answer');
      };
      assert.equal((await token('900000')).statusCode, 500);
      assert.equal((await token('900000', { txn: 'new' })).statusCode, 500);
      assert.equal((await token('900000', { txn: 'T-4' })).statusCode, 500);
      ctx.audit.record = record;
      ctx.audit.commit = commit;
      assert.equal(await total(), 0n);
      const issued = await token('900000', { txn: 'T-4' });
      assert.equal(issued.statusCode, 200, issued.body);
    });
  });
}
