import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { StoredAuditEvent } from '../../../src/audit/events.ts';
import type { Context } from '../../../src/context.ts';
import { OAuthError } from '../../../src/oauth-error.ts';
import { decide } from '../../../src/policy/decide.ts';
import { authorizeIssuance, type Issuance } from '../../../src/policy/issuance.ts';
import { changeKycByAdmin } from '../../../src/risk/kyc/admin.ts';
import { expireKycRecords } from '../../../src/risk/kyc/expiry.ts';
import { testDialects } from '../../helpers/storage.ts';
import { applyDocument, ordersApi, policyContext, userId } from '../../policy/fixture.ts';

const day = 24 * 3600_000;

async function denials(ctx: Context): Promise<StoredAuditEvent[]> {
  const rows = await ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', 'policy.denied').orderBy('seq').execute();
  return rows.map((r) => JSON.parse(r.event) as StoredAuditEvent);
}

for (const dialect of testDialects()) {
  describe(`KYC at issuance under the example policies on ${dialect.name}`, () => {
    test('an expired KYC record denies trading scopes at the next issuance, before any sweep; reading scopes still pass', async (t) => {
      const { ctx, clock } = await policyContext(t, { dialect });
      const reviewDue = new Date(clock.now() + 10 * day).toISOString().slice(0, 10);
      await applyDocument(ctx, { users: [{ username: 'alice', desks: ['fx-spot', 'rates'], attributes: { suitability: ['fx', 'rates', 'rates_derivatives'] }, kyc: { status: 'verified', level: 'standard', review_due: reviewDue } }] });
      const alice = await userId(ctx, 'alice');
      const issuance: Issuance = { subject: { type: 'User', id: alice }, clientId: 'trading-ui', audience: ordersApi, scopes: ['order:create'], authorizationDetails: [], requestId: 'r1', grantType: 'refresh_token' };
      assert.equal((await authorizeIssuance(ctx, issuance)).allows.length, 1, 'verified: the trading scope is issued');

      clock.advance(10 * day);
      await assert.rejects(authorizeIssuance(ctx, { ...issuance, requestId: 'r2' }), (error: OAuthError) => {
        assert.equal(error.error, 'invalid_scope');
        assert.match(error.description!, /order:create is refused by policy: kyc-verified-to-trade/);
        return true;
      });
      const [denied] = await denials(ctx);
      assert.equal(denied!.requestId, 'r2');
      const request = denied!.details!.request as { context: Record<string, unknown> };
      assert.equal(request.context.kyc_status, 'expired', 'the decision saw the record as of now');
      assert.equal((await authorizeIssuance(ctx, { ...issuance, scopes: ['position:view'], requestId: 'r3' })).allows.length, 1);
      // The sweep then writes what every read already saw, once.
      assert.equal(await expireKycRecords(ctx), 1);
    });
  });
}

describe('a frozen firm at issuance', () => {
  test("a frozen legal entity's service gets no token for anyone, not even as an actor in an exchange's chain", async (t) => {
    const { ctx } = await policyContext(t);
    await applyDocument(ctx, { users: [{ username: 'alice', desks: ['fx-spot'], attributes: { suitability: ['fx'] }, kyc: { status: 'verified' } }] });
    const alice = await userId(ctx, 'alice');
    // Alice's token, exchanged by a client of no firm, with the firm's algorithm in the act chain.
    const exchanged: Issuance = {
      subject: { type: 'User', id: alice },
      clientId: 'order-gateway',
      audience: ordersApi,
      scopes: ['position:view'],
      authorizationDetails: [],
      requestId: 'r1',
      grantType: 'urn:ietf:params:oauth:grant-type:token-exchange',
      delegation: { subject: alice, actors: ['algo-fx-1'] },
    };
    assert.equal((await authorizeIssuance(ctx, exchanged)).allows.length, 1);
    await changeKycByAdmin(ctx, { type: 'LegalEntity', id: '5493001KJTIIGC8Y1R12' }, { status: 'frozen' }, { actor: 'compliance-1', reason: 'adverse media' });
    await assert.rejects(authorizeIssuance(ctx, { ...exchanged, requestId: 'r2' }), (error: OAuthError) => error.error === 'invalid_grant');
    const [denied] = await denials(ctx);
    assert.deepEqual(denied!.decision!.reasons, ['kyc-frozen']);
    assert.equal(denied!.details!.frozen, 'LegalEntity::"5493001KJTIIGC8Y1R12"');
    assert.equal((await authorizeIssuance(ctx, { ...exchanged, delegation: { subject: alice, actors: ['another-firms-service'] }, requestId: 'r3' })).allows.length, 1, 'without the frozen firm in the chain');
  });
});

describe('KYC, suitability and jurisdiction from Clearance records under the example policies', () => {
  test('a legal entity\'s KYC record reaches Cedar as LegalEntity.kyc_status: post-trade through its accounts stops when it lapses', async (t) => {
    const { ctx } = await policyContext(t);
    await applyDocument(ctx, { users: [{ username: 'alice', desks: ['fx-spot', 'rates'], attributes: { suitability: ['fx'] }, kyc: { status: 'verified' } }] });
    const alice = await userId(ctx, 'alice');
    const settle = () =>
      decide(ctx, { principal: { type: 'User', id: alice }, action: 'settlement:submit', resource: { type: 'Account', id: 'GB-FX-001' }, context: { notional: 1000, currency: 'USD' } });
    // No record of the firm: the policy does not apply.
    assert.equal((await settle()).allow, true);
    const broker = (await ctx.entities.snapshot()).legalEntities.get('5493001KJTIIGC8Y1R12')!;
    await applyDocument(ctx, { legal_entities: [{ ...broker, kyc: { status: 'expired' } }] });
    assert.deepEqual(await settle(), { allow: false, reasons: ['account-entity-kyc-verified-for-post-trade'], policyVersion: 'v1', errors: [] });
    await applyDocument(ctx, { legal_entities: [{ ...broker, kyc: { status: 'verified', level: 'kyb' } }] });
    assert.equal((await settle()).allow, true);
  });

  test('suitability must cover a complex class (MiFID II appropriateness), and a retail client of a GB desk gets no crypto derivatives', async (t) => {
    const { ctx } = await policyContext(t);
    await applyDocument(ctx, {
      users: [
        { username: 'carol', desks: ['crypto'], attributes: { suitability: ['crypto'] }, kyc: { status: 'verified' } },
        { username: 'dave', desks: ['crypto'], attributes: { suitability: ['crypto', 'crypto_derivatives'], client_category: 'professional' }, kyc: { status: 'verified' } },
        { username: 'rita', desks: ['crypto'], attributes: { suitability: ['crypto', 'crypto_derivatives'], client_category: 'retail' }, kyc: { status: 'verified' } },
      ],
    });
    const order = async (username: string, instrumentClass: string) =>
      decide(ctx, {
        principal: { type: 'User', id: await userId(ctx, username) },
        action: 'order:create',
        resource: { type: 'Instrument', id: instrumentClass === 'crypto' ? 'BTC-USD' : 'BTC-PERP', instrument_class: instrumentClass },
        context: { notional: 1000, currency: 'USD' },
      });
    assert.deepEqual((await order('carol', 'crypto_derivatives')).reasons, ['suitability-for-complex-products']);
    assert.equal((await order('carol', 'crypto')).allow, true);
    assert.equal((await order('dave', 'crypto_derivatives')).allow, true);
    assert.deepEqual((await order('rita', 'crypto_derivatives')).reasons, ['no-retail-crypto-derivatives-where-banned']);
    assert.equal((await order('rita', 'crypto')).allow, true);
  });
});
