import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { adminAudience } from '../../src/admin/authorize.ts';
import { driftView } from '../../src/federation/drift/view.ts';
import { acr } from '../../src/identity/acr.ts';
import { findUserByUsername } from '../../src/identity/users.ts';
import { startSignalService } from '../../src/signals/service.ts';
import { assertOAuthError, ordersApi, protocolFixture, type ProtocolFixture } from '../endpoints/fixture.ts';
import { partnerKey } from '../federation/fixture.ts';
import { servePartner, type PartnerServer } from '../federation/partner-server.ts';
import { adminPersonToken } from './admin-person.ts';

// POST /admin/partners/{id}/approve (src/endpoints/admin/partners.ts): a re-approval makes the
// partner's keys as they are now the trusted baseline and ends a suspension — trusting new keys,
// which a person decides with their own fresh, phishing-resistant sign-in.

/** Our server, partner acme (key k1) baselined by a first check, and bob, who may use the admin API. */
async function fixture(t: TestContext): Promise<ProtocolFixture & { partner: PartnerServer; bob: string }> {
  const f = await protocolFixture(t, { risk: 'off' });
  const partner = await servePartner(t);
  partner.keys = [(await partnerKey('k1')).jwk as Record<string, unknown>];
  await f.apply({
    partners: [{ id: 'acme', issuer: partner.issuer, jwks_uri: partner.jwksUri, allow_private_network: true, algorithms: ['ES256'], allowed_audiences: [ordersApi], allowed_scopes: ['order:create'], drift_check_interval: 60 }],
    users: [{ username: 'bob', password: 'a-long-enough-password-1', name: 'Bob Operator' }],
  });
  const service = startSignalService(f.ctx, { intervalMs: 3_600_000 });
  t.after(() => service.stop());
  await service.runOnce();
  return Object.assign(f, { partner, bob: (await findUserByUsername(f.ctx, 'bob'))!.id });
}

const approve = (f: ProtocolFixture, token: string) => f.inject({ method: 'POST', url: '/admin/partners/acme/approve', headers: { authorization: `Bearer ${token}` } });
const baselineKids = async (f: ProtocolFixture) => (await driftView(f.ctx, 'acme'))!.keys?.map((k) => k.kid).sort();

describe('re-approving a partner through the admin API', () => {
  test('needs a person’s own phishing-resistant sign-in of the last 5 minutes: else 401 insufficient_user_authentication with acr_values and max_age, or 403 for a client or a delegate; each refusal audited, nothing trusted', async (t) => {
    const f = await fixture(t);
    assert.deepEqual(await baselineKids(f), ['k1']);
    // The partner publishes a new key: re-approving would trust it.
    f.partner.keys = [...f.partner.keys, (await partnerKey('k2')).jwk as Record<string, unknown>];

    const weak = await approve(f, await adminPersonToken(f, 'bob', { acr: acr.multiFactor }));
    const weakBody = assertOAuthError(weak, 401, 'insufficient_user_authentication');
    assert.deepEqual([weakBody.acr_values, weakBody.max_age], [acr.phishingResistant, 300]);
    assert.match(String(weak.headers['www-authenticate']), /^Bearer realm="clearance", error="insufficient_user_authentication", .*acr_values="urn:clearance:acr:phr", max_age=300$/);

    const stale = await approve(f, await adminPersonToken(f, 'bob', { signedInSecondsAgo: 301 }));
    const staleBody = assertOAuthError(stale, 401, 'insufficient_user_authentication');
    assert.match(String(staleBody.error_description), /last 5 minutes/);
    assert.equal(staleBody.max_age, 300);

    assertOAuthError(await approve(f, await f.accessToken('admin-ops', { resource: adminAudience(f.issuer) })), 403, 'access_denied');
    assertOAuthError(await approve(f, await adminPersonToken(f, 'bob', { extra: { act: { sub: 'agent-1' } } })), 403, 'access_denied');
    assert.deepEqual(await baselineKids(f), ['k1'], 'the new key is not trusted');
    assert.deepEqual(await f.auditEvents('partner.reapproved'), []);

    const refused = await f.auditEvents('partner.reapproval_refused');
    assert.deepEqual(
      refused.map((e) => [e.actor, e.decision?.reasons, e.details?.partner]),
      [
        [f.bob, ['insufficient_authentication'], 'acme'],
        [f.bob, ['stale_authentication'], 'acme'],
        ['admin-ops', ['client_token'], 'acme'],
        [f.bob, ['delegated_token'], 'acme'],
      ],
    );
    assert.deepEqual([refused[0]!.details?.acr_values, refused[0]!.details?.max_age, refused[0]!.details?.acr_before], [acr.phishingResistant, 300, acr.multiFactor]);

    // Fresh and phishing-resistant: the keys as they are now become the baseline, in bob's name.
    const approved = await approve(f, await adminPersonToken(f, 'bob'));
    assert.equal(approved.statusCode, 200, approved.body);
    assert.deepEqual(await baselineKids(f), ['k1', 'k2']);
    assert.equal((await f.auditEvents('partner.reapproved'))[0]!.actor, f.bob);
  });

  test('names no partner nobody stored in its refusal: an unknown id is refused for the sign-in all the same', async (t) => {
    const f = await fixture(t);
    const stale = await f.inject({ method: 'POST', url: '/admin/partners/nobody/approve', headers: { authorization: `Bearer ${await adminPersonToken(f, 'bob', { signedInSecondsAgo: 3600 })}` } });
    assertOAuthError(stale, 401, 'insufficient_user_authentication');
    const [refused] = await f.auditEvents('partner.reapproval_refused');
    assert.deepEqual([refused!.decision?.reasons, refused!.details?.partner], [['stale_authentication'], undefined]);
    assertOAuthError(await f.inject({ method: 'POST', url: '/admin/partners/nobody/approve', headers: { authorization: `Bearer ${await adminPersonToken(f, 'bob')}` } }), 404, 'not_found');
  });
});
