import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { adminAudience } from '../../../src/admin/authorize.ts';
import type { ScreeningHit } from '../../../src/risk/screening/matcher.ts';
import { recordScreeningHit } from '../../../src/risk/screening/matches.ts';
import { codeFlowFixture, type CodeFlowFixture } from '../../authorization/fixture.ts';
import { assertOAuthError, ordersApi, secretClient } from '../../endpoints/fixture.ts';
import { testDialects } from '../../helpers/storage.ts';

/**
 * A legal entity's freeze (src/risk/kyc/changes.ts, docs/risk.md "KYC/AML lifecycle") ends the
 * live tokens of every client it owns (`owner_lei`), in the freeze's transaction, by the clients'
 * cut-off and their refresh tokens revoked; lifting the freeze brings none of them back.
 */

const firm = '5493001KJTIIGC8Y1R12';
const otherFirm = '529900T8BM49AURSDO55';

/** Firm F and firm G, each with a service and a desk app; alice sits on F's desk. */
async function twoFirms(f: CodeFlowFixture): Promise<void> {
  const entity = (lei: string, name: string, desk: string) => ({ lei, name, jurisdiction: 'GB', home_region: 'emea', roles: ['broker'], desks: [{ id: desk, product_classes: ['fx'] }] });
  const deskApp = (client_id: string, owner_lei: string) => ({
    client_id,
    kind: 'app',
    owner_lei,
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['authorization_code', 'refresh_token'],
    redirect_uris: ['https://app.example.com/cb'],
    scope: 'openid order:create',
  });
  await f.apply({
    regions: [{ id: 'emea' }],
    legal_entities: [entity(firm, 'Frozen Broker Ltd', 'f-fx'), entity(otherFirm, 'Other Broker AG', 'g-fx')],
    clients: [
      secretClient('f-pricing', 'order:create', { owner_lei: firm }),
      secretClient('g-pricing', 'order:create', { owner_lei: otherFirm }),
      deskApp('f-desk-app', firm),
      deskApp('g-desk-app', otherFirm),
    ],
    users: [{ username: 'alice', name: 'Alice Trader', desks: ['f-fx'] }],
  });
}

async function active(f: CodeFlowFixture, token: string): Promise<boolean> {
  return (await f.introspect('orders-gateway', token)).active === true;
}

/** Alice's code flow through `client`: its access and refresh tokens. */
async function aliceThrough(f: CodeFlowFixture, client: string): Promise<{ access: string; refresh: string }> {
  const { code, pkce } = await f.authorizeAndApprove({ client, person: await f.signIn('alice') });
  const redeemed = await f.redeem(client, code, pkce.verifier);
  assert.equal(redeemed.statusCode, 200, redeemed.body);
  const body = redeemed.json() as { access_token: string; refresh_token: string };
  assert.ok(body.refresh_token, 'a refresh token');
  return { access: body.access_token, refresh: body.refresh_token };
}

for (const dialect of testDialects()) {
  describe(`a legal entity's freeze on ${dialect.name}`, () => {
    test("ends its clients' live tokens at once on this node (introspection inactive, refresh revoked), names them on kyc.updated, leaves other firms' clients alone, and lifting it brings none back", async (t) => {
      const f = await codeFlowFixture(t, { dialect, risk: 'off' });
      await twoFirms(f);
      const admin = await f.accessToken('admin-ops', { resource: adminAudience(f.issuer) });
      const service = await f.accessToken('f-pricing', { resource: ordersApi });
      const otherService = await f.accessToken('g-pricing', { resource: ordersApi });
      const throughFirm = await aliceThrough(f, 'f-desk-app');
      // Alice is of firm F, but this token is held through firm G's client: not F's to end.
      const throughOther = await aliceThrough(f, 'g-desk-app');
      // Read just before the freeze: this node's client registry is fresh, and is not read again for a second unless told.
      f.clock.advance(1000);
      for (const token of [service, otherService, throughFirm.access, throughOther.access]) assert.equal(await active(f, token), true, 'live before the freeze');

      const frozen = await f.inject({ method: 'PUT', url: `/admin/kyc/legal-entities/${firm}`, headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' }, payload: JSON.stringify({ status: 'frozen', reason: 'sanctions hit confirmed' }) });
      assert.equal(frozen.statusCode, 200, frozen.body);

      assert.equal(await active(f, service), false, "the firm's service token is dead at once");
      assert.equal(await active(f, throughFirm.access), false, "a person's token held through the firm's client is dead at once");
      assert.equal(await active(f, otherService), true, "another firm's service token lives on");
      assert.equal(await active(f, throughOther.access), true, "a person of the firm, through another firm's client: not ended by the firm's freeze");
      const refreshedElsewhere = await f.refresh('g-desk-app', throughOther.refresh);
      assert.equal(refreshedElsewhere.statusCode, 200, `nor refused a new one: ${refreshedElsewhere.body}`);
      const [updated] = (await f.auditEvents('kyc.updated')).filter((e) => e.subject === firm);
      assert.deepEqual(updated?.details?.tokens_ended, {
        clients: [
          { client_id: 'f-desk-app', refresh_tokens_revoked: 1 },
          { client_id: 'f-pricing', refresh_tokens_revoked: 0 },
        ],
        access_tokens: 'dead (cut-off)',
      });

      // Lifted: the firm's clients get new tokens; what the freeze ended stays dead.
      f.clock.advance(2000);
      const lifted = await f.inject({ method: 'PUT', url: `/admin/kyc/legal-entities/${firm}`, headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' }, payload: JSON.stringify({ status: 'verified' }) });
      assert.equal(lifted.statusCode, 200, lifted.body);
      const fresh = await f.accessToken('f-pricing', { resource: ordersApi });
      assert.equal(await active(f, fresh), true, 'a token issued after the lift is live');
      assert.equal(await active(f, service), false, 'the token the freeze ended stays dead');
      assertOAuthError(await f.refresh('f-desk-app', throughFirm.refresh), 400, 'invalid_grant', 'the refresh token the freeze revoked');
      assert.equal((await f.refresh('g-desk-app', refreshedElsewhere.json().refresh_token)).statusCode, 200, "another firm's client refreshes");
    });

    test("a sanctions hit on a legal entity ends its clients' live tokens in the hit's transaction, dead everywhere within a second", async (t) => {
      const f = await codeFlowFixture(t, { dialect, risk: 'off' });
      await twoFirms(f);
      const service = await f.accessToken('f-pricing', { resource: ordersApi });
      const otherService = await f.accessToken('g-pricing', { resource: ordersApi });
      f.clock.advance(1000);
      assert.equal(await active(f, service), true, 'live before the hit');
      const hit: ScreeningHit = { entry: { id: 'SANC-1', type: 'entity', name: 'Frozen Broker Ltd', aliases: [], list: 'sanctions', digest: 'digest-SANC-1' }, matchedOn: ['name'] };
      assert.ok(await recordScreeningHit(f.ctx, { type: 'LegalEntity', id: firm }, hit, 'list-1', 'list_change'));
      const [updated] = (await f.auditEvents('kyc.updated')).filter((e) => e.subject === firm);
      assert.deepEqual(updated?.details?.tokens_ended, { clients: [{ client_id: 'f-desk-app', refresh_tokens_revoked: 0 }, { client_id: 'f-pricing', refresh_tokens_revoked: 0 }], access_tokens: 'dead (cut-off)' });
      // Screening holds no client registry to invalidate: this node reloads it on its generation, as every other node does.
      f.clock.advance(1000);
      assert.equal(await active(f, service), false, "the firm's service token is dead");
      assert.equal(await active(f, otherService), true, "another firm's lives on");
    });
  });
}
