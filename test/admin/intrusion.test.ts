import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, test, type TestContext } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { adminAudience } from '../../src/admin/authorize.ts';
import { acr } from '../../src/identity/acr.ts';
import { findUserByUsername } from '../../src/identity/users.ts';
import { mintAccessToken, newJti } from '../../src/tokens/access-token.ts';
import { assertOAuthError, protocolFixture, type ProtocolFixture } from '../endpoints/fixture.ts';
import { testDialects, type TestDialect } from '../helpers/storage.ts';
import { nextUtc, useRiskSettings } from '../risk/fixture.ts';

// Intrusion signals on the admin API (issue 16 item 5): every write is assessed; an unusual one —
// from a new network, off hours, in a burst — is audited as risk.admin_unusual and alerted, and
// still carried out (alerted, not refused). Reads are not assessed.

const office = '192.0.2.10';
const elsewhere = '203.0.113.9';

const service = (name: string) => ({
  kind: 'service',
  client_name: name,
  token_endpoint_auth_method: 'client_secret_basic',
  grant_types: ['client_credentials'],
  scope: 'order:cancel',
});

/** A call of the admin API from `address` (the server trusts X-Forwarded-For from loopback), with a fresh admin token. */
async function call(f: ProtocolFixture, method: 'GET' | 'PUT', url: string, address: string, body?: unknown): Promise<LightMyRequestResponse> {
  const token = await f.accessToken('admin-ops', { resource: adminAudience(f.issuer) });
  return f.inject({
    method,
    url,
    headers: { authorization: `Bearer ${token}`, 'x-forwarded-for': address, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
  });
}

/** A call of the admin API with `token` from `address`. */
async function callWith(f: ProtocolFixture, token: string, method: 'POST' | 'PUT', url: string, address: string, body?: unknown): Promise<LightMyRequestResponse> {
  return f.inject({
    method,
    url,
    headers: { authorization: `Bearer ${token}`, 'x-forwarded-for': address, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
  });
}

const permitAll = '@id("all") permit (principal, action, resource);';

/**
 * Policy set versions stored at `at` (epoch ms, the clock set there): v1 active, v2 by alice.author,
 * v3 by bob — a person who may use the admin API (personToken), the approver of an activation.
 */
async function activationFixture(t: TestContext, dialect: TestDialect, at: (now: number) => number): Promise<ProtocolFixture & { bob: string; personToken(): Promise<string> }> {
  const f = await protocolFixture(t, { env: { CLEARANCE_TRUSTED_PROXIES: '127.0.0.1' }, dialect });
  f.clock.set(at(f.clock.now()));
  await f.apply({
    users: [{ username: 'bob', password: 'a-long-enough-password-1', name: 'Bob Approver' }],
    policies: [
      { version: 'v1', text: permitAll, change_ref: 'CHG-1', author: 'alice.author', approver: 'carl.approver', active: true },
      { version: 'v2', text: `${permitAll}\n@id("no-orders") forbid (principal, action == Action::"order:create", resource);`, change_ref: 'CHG-2', author: 'alice.author' },
      { version: 'v3', text: permitAll, change_ref: 'CHG-3', author: 'bob' },
    ],
  });
  const bob = (await findUserByUsername(f.ctx, 'bob'))!.id;
  /** Bob's admin-API token under a consent grant of his (as break-glass-fixture.ts personToken), fresh. */
  const personToken = async () => {
    const now = f.clock.now();
    const grantId = randomUUID();
    await f.ctx.storage.db
      .insertInto('grants')
      .values({ id: grantId, user_id: bob, client_id: 'trading-ui', resources: JSON.stringify({ [adminAudience(f.issuer)]: ['admin:write'] }), oidc_scopes: '[]', authorization_details: '[]', created_at: now, updated_at: now, revoked_at: null, revoked_by: null, revoke_reason: null })
      .execute();
    const iat = Math.floor(now / 1000);
    return mintAccessToken(f.ctx.keys, { iss: f.issuer, aud: adminAudience(f.issuer), iat, exp: iat + 300, jti: newJti(), client_id: 'trading-ui', scope: 'admin:write', sub: bob, grant_id: grantId, acr: acr.phishingResistant, auth_time: iat, amr: ['hwk', 'user'] });
  };
  return Object.assign(f, { bob, personToken });
}

/** The write actions the intrusion signals counted for `admin` (risk_admin_actions), oldest first. */
async function countedActions(f: ProtocolFixture, admin: string): Promise<string[]> {
  return (await f.ctx.storage.db.selectFrom('risk_admin_actions').select(['action', 'at']).where('admin_id', '=', admin).orderBy('at').execute()).map((row) => row.action);
}

async function unusualAlerts(f: ProtocolFixture): Promise<Record<string, unknown>[]> {
  return (await f.ctx.storage.db.selectFrom('alerts').select('data').where('type', '=', 'risk.admin_unusual').orderBy('created_at').execute()).map((row) => JSON.parse(row.data) as Record<string, unknown>);
}

for (const dialect of testDialects()) {
  describe(`intrusion signals on the admin API on ${dialect.name}`, () => {
    test('a change from a new address off hours is made, audited as risk.admin_unusual and alerted, naming the action, the administrator and the signals', async (t) => {
      const f = await protocolFixture(t, { env: { CLEARANCE_TRUSTED_PROXIES: '127.0.0.1' }, dialect });
      const tuesday = nextUtc(f.clock.now(), 2, 10);
      f.clock.set(tuesday);
      useRiskSettings(f.ctx);

      // From the office, in hours: a new network alone is a low score, nothing raised.
      assert.equal((await call(f, 'PUT', '/admin/clients/reconciler-1', office, service('Reconciler'))).statusCode, 200);
      assert.deepEqual(await f.auditEvents('risk.admin_unusual'), []);
      // Reads are not admin actions.
      f.clock.set(tuesday + 4 * 86_400_000); // Saturday
      assert.equal((await call(f, 'GET', '/admin/clients', elsewhere)).statusCode, 200);
      assert.deepEqual(await f.auditEvents('risk.admin_unusual'), []);
      assert.equal((await f.ctx.storage.db.selectFrom('risk_admin_actions').selectAll().execute()).length, 1);

      // Saturday, from a network this administrator never used: made all the same, and raised.
      const changed = await call(f, 'PUT', '/admin/clients/reconciler-2', elsewhere, service('Reconciler 2'));
      assert.equal(changed.statusCode, 200, changed.body);
      const [event] = await f.auditEvents('risk.admin_unusual');
      assert.equal(event!.actor, 'admin-ops');
      assert.equal(event!.client, 'admin-ops');
      assert.deepEqual(event!.decision, { allow: true, reasons: ['admin_new_network', 'admin_off_hours'] });
      assert.equal(event!.details!.action, 'PUT /admin/clients/:id');
      assert.equal(event!.details!.source_address, elsewhere);
      assert.deepEqual(event!.details!.risk, {
        score: 45,
        level: 'medium',
        outcome: 'allow',
        signals: [
          { signal: 'admin_new_network', points: 25, detail: 'network 203.0.113.0/24 never used by this administrator' },
          { signal: 'admin_off_hours', points: 20, detail: '10:00 UTC on ISO weekday 6' },
        ],
      });
      const alerts = await f.ctx.storage.db.selectFrom('alerts').selectAll().where('type', '=', 'risk.admin_unusual').execute();
      assert.equal(alerts.length, 1);
      assert.deepEqual(JSON.parse(alerts[0]!.data), {
        action: 'PUT /admin/clients/:id',
        admin: 'admin-ops',
        score: 45,
        level: 'medium',
        signals: ['admin_new_network', 'admin_off_hours'],
        source_address: elsewhere,
        client: 'admin-ops',
      });
    });

    test('a burst of changes by one administrator is raised, whichever admin endpoint it goes to', async (t) => {
      const f = await protocolFixture(t, { env: { CLEARANCE_TRUSTED_PROXIES: '127.0.0.1' }, dialect });
      f.clock.set(nextUtc(f.clock.now(), 2, 10));
      useRiskSettings(f.ctx, { adminBurstCount: 3, adminBurstWindowSeconds: 60 });
      assert.equal((await call(f, 'PUT', '/admin/clients/burst-1', office, service('Burst 1'))).statusCode, 200);
      assert.equal((await call(f, 'PUT', '/admin/users/carol', office, { name: 'Carol', email: null, desks: [], roles: [], attributes: {}, status: 'active' })).statusCode, 200);
      assert.deepEqual(await f.auditEvents('risk.admin_unusual'), []);
      // The third change within the minute: admin_burst (30) alone is medium.
      assert.equal((await call(f, 'PUT', '/admin/clients/burst-2', office, service('Burst 2'))).statusCode, 200);
      const [event] = await f.auditEvents('risk.admin_unusual');
      assert.deepEqual(event!.decision!.reasons, ['admin_burst']);
      assert.equal(event!.details!.action, 'PUT /admin/clients/:id');
    });

    // POST /admin/policies/{version}/activate is assessed once per attempt, as the CLI's `policy
    // activate` (src/endpoints/admin/policies.ts activationAssessment): not once by requireAdmin and
    // again by the route.
    test('a policy set version activated through the admin API soon after it was stored is assessed once: one risk.admin_unusual event and one alert, naming quick_activation; activating it again is no quick activation', async (t) => {
      const f = await activationFixture(t, dialect, (now) => nextUtc(now, 6, 10)); // Saturday
      useRiskSettings(f.ctx);
      f.clock.advance(60_000);
      const token = await f.personToken();

      const activated = await callWith(f, token, 'POST', '/admin/policies/v2/activate', elsewhere);
      assert.equal(activated.statusCode, 200, activated.body);
      const events = await f.auditEvents('risk.admin_unusual');
      assert.equal(events.length, 1, JSON.stringify(events.map((e) => e.details)));
      assert.equal(events[0]!.actor, f.bob);
      assert.deepEqual(events[0]!.decision, { allow: true, reasons: ['admin_new_network', 'admin_off_hours', 'quick_activation'] });
      assert.equal(events[0]!.details!.action, 'policy.activate v2');
      const alerts = await unusualAlerts(f);
      assert.equal(alerts.length, 1);
      assert.deepEqual([alerts[0]!.action, alerts[0]!.signals], ['policy.activate v2', ['admin_new_network', 'admin_off_hours', 'quick_activation']]);
      assert.deepEqual(await countedActions(f, f.bob), ['policy.activate v2'], 'counted once toward admin_burst');

      // v2 is now the active version: activating it again changes nothing. Assessed (a write
      // attempt), off hours alone (20: low), not as a quick activation (30 more: medium).
      const again = await callWith(f, token, 'POST', '/admin/policies/v2/activate', elsewhere);
      assert.equal(again.statusCode, 200, again.body);
      assert.equal((again.json() as { already_active: boolean }).already_active, true);
      assert.deepEqual(await countedActions(f, f.bob), ['policy.activate v2', 'policy.activate v2']);
      assert.equal((await f.auditEvents('risk.admin_unusual')).length, 1);
      assert.equal((await unusualAlerts(f)).length, 1);
    });

    test('an apply’s dry run through the admin API plans and changes nothing, so it is no admin write; the apply itself is', async (t) => {
      const f = await protocolFixture(t, { env: { CLEARANCE_TRUSTED_PROXIES: '127.0.0.1' }, dialect });
      useRiskSettings(f.ctx);
      const token = await f.accessToken('admin-ops', { resource: adminAudience(f.issuer) });
      const document = { clients: [{ client_id: 'planned-1', ...service('Planned') }] };
      for (let i = 0; i < 3; i++) {
        const planned = await callWith(f, token, 'POST', '/admin/apply?dry_run=true', office, document);
        assert.equal(planned.statusCode, 200, planned.body);
      }
      assert.deepEqual(await countedActions(f, 'admin-ops'), [], 'three plans, no write counted');
      const applied = await callWith(f, token, 'POST', '/admin/apply', office, document);
      assert.equal(applied.statusCode, 200, applied.body);
      assert.deepEqual(await countedActions(f, 'admin-ops'), ['POST /admin/apply']);
    });

    test('an activation through the admin API counts once toward admin_burst: the burst is raised at the threshold’s write, not earlier', async (t) => {
      const f = await activationFixture(t, dialect, (now) => nextUtc(now, 2, 10)); // Tuesday, in hours
      useRiskSettings(f.ctx, { adminBurstCount: 3, adminBurstWindowSeconds: 60 });
      f.clock.advance(20 * 60_000); // v2 was stored long enough ago: no quick_activation
      const token = await f.personToken();

      assert.equal((await callWith(f, token, 'PUT', '/admin/clients/burst-1', office, service('Burst 1'))).statusCode, 200);
      const activated = await callWith(f, token, 'POST', '/admin/policies/v2/activate', office);
      assert.equal(activated.statusCode, 200, activated.body);
      // Two writes of three: no burst yet.
      assert.deepEqual(await f.auditEvents('risk.admin_unusual'), []);
      assert.deepEqual(await countedActions(f, f.bob), ['PUT /admin/clients/:id', 'policy.activate v2']);
      // The third write within the minute: admin_burst (30) alone is medium.
      assert.equal((await callWith(f, token, 'PUT', '/admin/clients/burst-2', office, service('Burst 2'))).statusCode, 200);
      const events = await f.auditEvents('risk.admin_unusual');
      assert.equal(events.length, 1);
      assert.deepEqual(events[0]!.decision!.reasons, ['admin_burst']);
      assert.equal(events[0]!.details!.action, 'PUT /admin/clients/:id');
      assert.match(JSON.stringify(events[0]!.details!.risk), /3 changes within 60 s/);
    });

    test('a refused activation through the admin API is assessed too, once: an unknown version, the author approving their own fresh version (quick_activation), a client’s own token', async (t) => {
      const f = await activationFixture(t, dialect, (now) => nextUtc(now, 2, 10)); // Tuesday, in hours
      useRiskSettings(f.ctx);
      f.clock.advance(60_000);
      const token = await f.personToken();

      // An unknown version: 404, assessed (a new network alone is low: nothing raised).
      assertOAuthError(await callWith(f, token, 'POST', '/admin/policies/v9/activate', office), 404, 'not_found');
      assert.equal((await countedActions(f, f.bob)).length, 1);
      assert.deepEqual(await f.auditEvents('risk.admin_unusual'), []);

      // Bob approving his own version, stored a minute ago: refused (four eyes), and an attempted
      // quick activation all the same.
      assertOAuthError(await callWith(f, token, 'POST', '/admin/policies/v3/activate', office), 403, 'access_denied');
      const events = await f.auditEvents('risk.admin_unusual');
      assert.equal(events.length, 1);
      assert.deepEqual([events[0]!.actor, events[0]!.decision!.reasons, events[0]!.details!.action], [f.bob, ['quick_activation'], 'policy.activate v3']);
      assert.equal((await unusualAlerts(f)).length, 1);
      // Each attempt counted once: a stored version named as the CLI names an activation, an
      // unknown one (the caller's text) under the route's pattern.
      assert.deepEqual(await countedActions(f, f.bob), ['POST /admin/policies/:version/activate', 'policy.activate v3']);

      // A client's own token activates nothing, and is assessed once as that client.
      const service = await f.accessToken('admin-ops', { resource: adminAudience(f.issuer) });
      assertOAuthError(await callWith(f, service, 'POST', '/admin/policies/v2/activate', office), 403, 'access_denied');
      assert.deepEqual(await countedActions(f, 'admin-ops'), ['policy.activate v2']);
      assert.equal((await f.ctx.policies.list()).find((p) => p.active)?.version, 'v1', 'nothing was activated');
      assert.deepEqual((await f.auditEvents('policy.activated')).map((e) => e.details?.version), ['v1'], 'only the apply’s');
    });
  });
}
