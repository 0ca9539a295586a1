import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { adminAudience } from '../../src/admin/authorize.ts';
import { acr } from '../../src/identity/acr.ts';
import { findUserByUsername } from '../../src/identity/users.ts';
import { assertOAuthError, ordersApi, protocolFixture, type ProtocolFixture } from '../endpoints/fixture.ts';
import { adminPersonToken } from './admin-person.ts';

const permitAll = '@id("all") permit (principal, action, resource);';
const noOrders = `${permitAll}\n@id("no-orders") forbid (principal, action == Action::"order:create", resource);`;

async function withPolicies(f: ProtocolFixture): Promise<void> {
  await f.apply({
    policies: [
      { version: 'v1', text: permitAll, change_ref: 'CHG-1', author: 'alice.author', approver: 'bob.approver', active: true },
      { version: 'v2', text: noOrders, change_ref: 'CHG-2', author: 'alice.author' },
    ],
  });
}

const call = (f: ProtocolFixture, method: 'GET' | 'POST', url: string, token?: string) => f.inject({ method, url, headers: token ? { authorization: `Bearer ${token}` } : {} });

describe('the policy set versions in the admin API', () => {
  test('a version is replayed against the recorded decisions: which it would flip, each way', async (t) => {
    const f = await protocolFixture(t);
    await withPolicies(f);
    // Two decisions under v1: an order token (v2 would refuse it) and a cancel token (v2 leaves it).
    await f.accessToken('broker-1', { resource: ordersApi, scope: 'order:create' });
    await f.accessToken('broker-1', { resource: ordersApi, scope: 'order:cancel' });
    const token = await f.accessToken('admin-viewer', { resource: adminAudience(f.issuer) });

    const response = await call(f, 'GET', '/admin/policies/v2/simulation', token);
    assert.equal(response.statusCode, 200, response.body);
    const simulation = response.json() as { version: string; replayed: number; flips: number; allow_to_deny: number; deny_to_allow: number; listed: { request: { action?: string }; was: { allow: boolean; policyVersion: string }; now: { allow: boolean; reasons: string[] } }[] };
    assert.equal(simulation.version, 'v2');
    assert.ok(simulation.replayed >= 2, JSON.stringify(simulation));
    assert.equal(simulation.flips, 1);
    assert.equal(simulation.allow_to_deny, 1);
    assert.equal(simulation.deny_to_allow, 0);
    assert.match(String(simulation.listed[0]!.request.action), /order:create/);
    assert.deepEqual([simulation.listed[0]!.was.allow, simulation.listed[0]!.was.policyVersion, simulation.listed[0]!.now.allow], [true, 'v1', false]);

    const same = (await call(f, 'GET', '/admin/policies/v1/simulation?last=10', token)).json() as { flips: number };
    assert.equal(same.flips, 0, 'the active version flips nothing');
    assertOAuthError(await call(f, 'GET', '/admin/policies/v9/simulation', token), 404, 'not_found');
    assertOAuthError(await call(f, 'GET', '/admin/policies/v2/simulation?last=0', token), 400, 'invalid_request');
    assertOAuthError(await call(f, 'GET', '/admin/policies/v2/simulation?last=many', token), 400, 'invalid_request');
  });

  test('a client’s own token activates nothing: a version is activated by a person, never its author', async (t) => {
    const f = await protocolFixture(t);
    await withPolicies(f);
    assertOAuthError(await call(f, 'POST', '/admin/policies/v2/activate'), 401, 'invalid_token');
    const reader = await f.accessToken('admin-viewer', { resource: adminAudience(f.issuer) });
    assertOAuthError(await call(f, 'POST', '/admin/policies/v2/activate', reader), 403, 'insufficient_scope');
    const service = await f.accessToken('admin-ops', { resource: adminAudience(f.issuer) });
    const refused = assertOAuthError(await call(f, 'POST', '/admin/policies/v2/activate', service), 403, 'access_denied');
    assert.match(String(refused.error_description), /activated by a person/);
    assert.equal((await f.ctx.policies.list()).find((p) => p.active)?.version, 'v1', 'v1 is still the active set');
    assert.equal((await f.auditEvents('policy.activated')).filter((e) => e.details?.version === 'v2').length, 0);
  });

  test('a person activates with a phishing-resistant sign-in of the last 5 minutes: else 401 insufficient_user_authentication with acr_values and max_age (RFC 9470 §3), audited, nothing activated', async (t) => {
    const f = await protocolFixture(t);
    await withPolicies(f);
    await f.apply({ users: [{ username: 'bob', password: 'a-long-enough-password-1', name: 'Bob Approver' }] });
    const bob = (await findUserByUsername(f.ctx, 'bob'))!.id;
    const activeNow = async () => (await f.ctx.policies.list()).find((p) => p.active)?.version;

    // Below the level: the challenge names the level and the age.
    const weak = await call(f, 'POST', '/admin/policies/v2/activate', await adminPersonToken(f, 'bob', { acr: acr.multiFactor }));
    const weakBody = assertOAuthError(weak, 401, 'insufficient_user_authentication');
    assert.deepEqual([weakBody.acr_values, weakBody.max_age], [acr.phishingResistant, 300]);
    assert.match(String(weak.headers['www-authenticate']), /^Bearer realm="clearance", error="insufficient_user_authentication", .*acr_values="urn:clearance:acr:phr", max_age=300$/);
    assert.equal(weak.headers['cache-control'], 'no-store');

    // A token minted now over a sign-in of six minutes ago (as the console renews its token): too old.
    const stale = await call(f, 'POST', '/admin/policies/v2/activate', await adminPersonToken(f, 'bob', { signedInSecondsAgo: 301 }));
    const staleBody = assertOAuthError(stale, 401, 'insufficient_user_authentication');
    assert.deepEqual([staleBody.acr_values, staleBody.max_age], [acr.phishingResistant, 300]);
    assert.match(String(staleBody.error_description), /last 5 minutes/);

    // A delegate never activates for the person; a client's own token activates nothing.
    assertOAuthError(await call(f, 'POST', '/admin/policies/v2/activate', await adminPersonToken(f, 'bob', { extra: { act: { sub: 'agent-1' } } })), 403, 'access_denied');
    assertOAuthError(await call(f, 'POST', '/admin/policies/v2/activate', await f.accessToken('admin-ops', { resource: adminAudience(f.issuer) })), 403, 'access_denied');
    assert.equal(await activeNow(), 'v1', 'nothing was activated');

    const refused = await f.auditEvents('policy.activation_refused');
    assert.deepEqual(
      refused.map((e) => [e.actor, e.decision?.reasons, e.details?.version]),
      [
        [bob, ['insufficient_authentication'], 'v2'],
        [bob, ['stale_authentication'], 'v2'],
        [bob, ['delegated_token'], 'v2'],
        ['admin-ops', ['client_token'], 'v2'],
      ],
    );
    assert.deepEqual([refused[1]!.details?.acr_values, refused[1]!.details?.max_age, refused[1]!.details?.outcome], [acr.phishingResistant, 300, 'challenged']);

    // Exactly five minutes old is still fresh; the person is the approver.
    const activated = await call(f, 'POST', '/admin/policies/v2/activate', await adminPersonToken(f, 'bob', { signedInSecondsAgo: 300 }));
    assert.equal(activated.statusCode, 200, activated.body);
    assert.deepEqual([activated.json().approver, await activeNow()], ['bob', 'v2']);
  });
});
