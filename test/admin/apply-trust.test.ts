import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { adminAudience } from '../../src/admin/authorize.ts';
import { acr } from '../../src/identity/acr.ts';
import { findUserByUsername } from '../../src/identity/users.ts';
import { documentDigest } from '../../src/lifecycle/plan.ts';
import { assertOAuthError, ordersApi, protocolFixture, type ProtocolFixture } from '../endpoints/fixture.ts';
import { partnerKey } from '../federation/fixture.ts';
import { makePersonPki } from '../helpers/person-pki.ts';
import { testDialects, type TestDialect } from '../helpers/storage.ts';
import { adminPersonToken } from './admin-person.ts';

// POST /admin/apply and what Clearance trusts (src/endpoints/admin/apply.ts): a document that adds
// or changes a trust item — a partner's profile, an upstream identity provider, an authority that
// signs people in with a certificate, a pipeline's or a KYC provider's keys — applied with a
// person's token asks what a partner's re-approval asks: their own token, signed in with a passkey
// in the last 5 minutes. A client's own token (a pipeline applying a reviewed document) applies it
// as before.

const lei = '5493001KJTIIGC8Y1R12';
const partnerEntry = (keys: Record<string, unknown>[]) => ({ id: 'acme', issuer: 'https://acme.example.com', jwks: { keys }, algorithms: ['ES256'], allowed_audiences: [ordersApi], allowed_scopes: ['order:create'] });

/** Our server with partner acme trusting key k1, a firm's legal entity, and bob, who may use the admin API. */
async function fixture(t: TestContext, dialect: TestDialect): Promise<ProtocolFixture & { bob: string; k1: Record<string, unknown>; k2: Record<string, unknown> }> {
  const f = await protocolFixture(t, { risk: 'off', dialect });
  const k1 = (await partnerKey('k1')).jwk as Record<string, unknown>;
  const k2 = (await partnerKey('k2')).jwk as Record<string, unknown>;
  await f.apply({
    regions: [{ id: 'eu', name: 'Europe' }],
    legal_entities: [{ lei, name: 'Fund X Asset Management', jurisdiction: 'GB', home_region: 'eu', roles: ['asset_manager'] }],
    partners: [partnerEntry([k1])],
    users: [{ username: 'bob', password: 'a-long-enough-password-1', name: 'Bob Operator' }],
  });
  return Object.assign(f, { bob: (await findUserByUsername(f.ctx, 'bob'))!.id, k1, k2 });
}

const post = (f: ProtocolFixture, token: string, document: unknown, query = '') =>
  f.inject({ method: 'POST', url: `/admin/apply${query}`, payload: JSON.stringify(document), headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' } });
const trustedKids = async (f: ProtocolFixture) => (await f.ctx.partners.get('acme'))?.jwks?.keys.map((k) => k.kid);
const clientToken = (f: ProtocolFixture) => f.accessToken('admin-ops', { resource: adminAudience(f.issuer) });

for (const dialect of testDialects()) {
  describe(`POST /admin/apply and what Clearance trusts on ${dialect.name}`, () => {
    test("refuses a person whose sign-in is stale or password-only when the document changes a partner's keys: 401 insufficient_user_authentication with acr_values and max_age, nothing trusted, each refusal recorded", async (t) => {
      const f = await fixture(t, dialect);
      const document = { partners: [partnerEntry([f.k1, f.k2])] };

      const stale = await post(f, await adminPersonToken(f, 'bob', { signedInSecondsAgo: 301 }), document);
      const staleBody = assertOAuthError(stale, 401, 'insufficient_user_authentication');
      assert.deepEqual([staleBody.acr_values, staleBody.max_age], [acr.phishingResistant, 300]);
      assert.match(String(staleBody.error_description), /partner acme.*last 5 minutes/);
      assert.match(String(stale.headers['www-authenticate']), /^Bearer realm="clearance", error="insufficient_user_authentication", .*acr_values="urn:clearance:acr:phr", max_age=300$/);
      assert.equal(stale.headers['cache-control'], 'no-store');

      const passwordOnly = await post(f, await adminPersonToken(f, 'bob', { acr: acr.password }), document);
      assert.match(String(assertOAuthError(passwordOnly, 401, 'insufficient_user_authentication').error_description), /passkey/);

      assert.deepEqual(await trustedKids(f), ['k1'], 'the new key is not trusted');
      assert.deepEqual((await f.auditEvents('config.changed')).filter((e) => e.details?.document_digest === documentDigest(JSON.stringify(document))), []);
      const refused = await f.auditEvents('config.apply_refused');
      assert.deepEqual(
        refused.map((e) => [e.actor, e.client, e.decision?.reasons, e.details?.document_digest, e.details?.changes, e.details?.outcome]),
        [
          [f.bob, 'trading-ui', ['stale_authentication'], documentDigest(JSON.stringify(document)), [{ kind: 'partner', id: 'acme', outcome: 'updated' }], 'challenged'],
          [f.bob, 'trading-ui', ['insufficient_authentication'], documentDigest(JSON.stringify(document)), [{ kind: 'partner', id: 'acme', outcome: 'updated' }], 'challenged'],
        ],
      );
      assert.deepEqual([refused[1]!.details?.acr_values, refused[1]!.details?.max_age, refused[1]!.details?.acr_before], [acr.phishingResistant, 300, acr.password]);
    });

    test("refuses a delegate's token changing a partner with 403 access_denied, recorded", async (t) => {
      const f = await fixture(t, dialect);
      const refused = await post(f, await adminPersonToken(f, 'bob', { extra: { act: { sub: 'agent-1' } } }), { partners: [partnerEntry([f.k1, f.k2])] });
      assertOAuthError(refused, 403, 'access_denied');
      assert.deepEqual(await trustedKids(f), ['k1']);
      assert.deepEqual((await f.auditEvents('config.apply_refused')).map((e) => [e.decision?.reasons, e.details?.outcome]), [[['delegated_token'], 'refused']]);
    });

    test('lets a person signed in with a passkey in the last 5 minutes change a partner, in their name', async (t) => {
      const f = await fixture(t, dialect);
      const applied = await post(f, await adminPersonToken(f, 'bob', { signedInSecondsAgo: 300 }), { partners: [partnerEntry([f.k1, f.k2])] });
      assert.equal(applied.statusCode, 200, applied.body);
      assert.deepEqual(await trustedKids(f), ['k1', 'k2']);
      assert.deepEqual(await f.auditEvents('config.apply_refused'), []);
    });

    test("keeps a client's own token applying a trust change as before: a pipeline's reviewed document needs no person", async (t) => {
      const f = await fixture(t, dialect);
      const applied = await post(f, await clientToken(f), { partners: [partnerEntry([f.k1, f.k2])] });
      assert.equal(applied.statusCode, 200, applied.body);
      assert.deepEqual(await trustedKids(f), ['k1', 'k2']);
    });

    test("asks nothing more of a person whose document changes no trust item: a partner declared as stored, a resource server added, a partner pruned", async (t) => {
      const f = await fixture(t, dialect);
      const token = await adminPersonToken(f, 'bob', { signedInSecondsAgo: 3600, acr: acr.password });
      const unchanged = await post(f, token, { partners: [partnerEntry([f.k1])], resource_servers: [{ identifier: 'https://surveillance.example.com', scopes: ['report:view'] }] });
      assert.equal(unchanged.statusCode, 200, unchanged.body);
      assert.deepEqual((unchanged.json() as { changes: unknown[] }).changes, [{ kind: 'resource_server', id: 'https://surveillance.example.com', outcome: 'created' }]);
      // Taking trust away is no trust change: pruning the partner disables it.
      const pruned = await post(f, token, { partners: [] }, '?prune=true&force=true');
      assert.equal(pruned.statusCode, 200, pruned.body);
      assert.deepEqual((pruned.json() as { changes: unknown[] }).changes, [{ kind: 'partner', id: 'acme', outcome: 'disabled' }]);
      assert.deepEqual(await f.auditEvents('config.apply_refused'), []);
    });

    test("answers a person's dry run of a trust change with the plan, refusing nothing and writing nothing", async (t) => {
      const f = await fixture(t, dialect);
      const planned = await post(f, await adminPersonToken(f, 'bob', { signedInSecondsAgo: 3600 }), { partners: [partnerEntry([f.k1, f.k2])] }, '?dry_run=true');
      assert.equal(planned.statusCode, 200, planned.body);
      assert.deepEqual((planned.json() as { changes: { kind: string; id: string; outcome: string }[] }).changes.map((c) => [c.kind, c.id, c.outcome]), [['partner', 'acme', 'updated']]);
      assert.deepEqual(await trustedKids(f), ['k1']);
      assert.deepEqual(await f.auditEvents('config.apply_refused'), []);
    });

    test('counts a new identity provider, a certificate sign-in authority, a pipeline and a KYC provider as trust changes: a stale person is asked to sign in again, a client applies them', async (t) => {
      const f = await fixture(t, dialect);
      const pki = await makePersonPki(t);
      const documents: [string, Record<string, unknown>][] = [
        ['identity_provider fund-x', { identity_providers: [{ id: 'fund-x', name: 'Fund X', issuer: 'https://login.fund-x.example', client_id: 'clearance', client_secret: 'a-client-secret-of-the-upstream', legal_entity: lei, domains: ['fund-x.example'] }] }],
        ['person_certificate_authority corporate', { person_certificates: { authorities: [{ name: 'corporate', certificates: pki.caPem, revocation: { method: 'crl' }, mapping: [{ certificate: 'san_email', person: 'email' }] }] } }],
        ['pipeline ci-main', { pipelines: [{ id: 'ci-main', jwks: { keys: [{ ...f.k2, alg: 'ES256', use: 'sig' }] } }] }],
        ['kyc_provider veriff', { kyc: { providers: [{ id: 'veriff', signing: 'jws', jwks: { keys: [{ ...f.k2, alg: 'ES256', use: 'sig' }] } }] } }],
      ];
      const stale = await adminPersonToken(f, 'bob', { signedInSecondsAgo: 301 });
      for (const [named, document] of documents) {
        const refused = assertOAuthError(await post(f, stale, document), 401, 'insufficient_user_authentication', named);
        assert.match(String(refused.error_description), new RegExp(named), named);
      }
      for (const [named, document] of documents) {
        const applied = await post(f, await clientToken(f), document);
        assert.equal(applied.statusCode, 200, `${named}: ${applied.body}`);
        assert.equal((applied.json() as { changes: { outcome: string }[] }).changes[0]?.outcome, 'created', named);
      }
    });
  });
}
