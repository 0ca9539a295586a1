import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { adminAudience } from '../../src/admin/authorize.ts';
import { protocolFixture, type ProtocolFixture } from '../endpoints/fixture.ts';
import { testDialects } from '../helpers/storage.ts';
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
  });
}
