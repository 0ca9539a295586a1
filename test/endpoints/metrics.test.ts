import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Counter } from 'prom-client';
import { adminAudience } from '../../src/admin/authorize.ts';
import { metricsRegistry } from '../../src/metrics.ts';
import { closeWindow } from '../risk/anomalies/fixture.ts';
import { testDialects } from '../helpers/storage.ts';
import { assertOAuthError, protocolFixture } from './fixture.ts';

// GET /metrics (src/endpoints/metrics, docs/operations.md "Metrics"): the Prometheus text format,
// for a token with the metrics:read scope only.

for (const dialect of testDialects()) {
  describe(`the metrics endpoint on ${dialect.name}`, () => {
    test('answers only a token with metrics:read, in the Prometheus text format, with the anomalies and suspensions of the cluster', async (t) => {
      const f = await protocolFixture(t, { dialect });
      await f.apply({
        clients: [{ client_id: 'prometheus', kind: 'service', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], scope: 'metrics:read' }],
        anomalies: { reactions: { token_rate: 'suspend' } },
      });
      const scrape = (token?: string) => f.inject({ method: 'GET', url: '/metrics', headers: token ? { authorization: `Bearer ${token}` } : {} });
      assert.equal((await scrape()).statusCode, 401);
      assertOAuthError(await scrape(await f.accessToken('admin-viewer', { resource: adminAudience(f.issuer) })), 403, 'insufficient_scope');
      const prometheus = await f.accessToken('prometheus', { resource: adminAudience(f.issuer) });

      const before = await scrape(prometheus);
      assert.equal(before.statusCode, 200, before.body);
      assert.match(String(before.headers['content-type']), /^text\/plain; version=0\.0\.4/);
      assert.equal(before.headers['cache-control'], 'no-store');
      assert.match(before.body, /^clearance_risk_anomalies_total\{class="token_rate",reaction="suspend"\} 0$/m);
      assert.match(before.body, /^clearance_risk_anomalies_open\{class="login_rate",reaction="step_up"\} 0$/m);
      assert.match(before.body, /^clearance_risk_suspensions_active\{principal_type="Client"\} 0$/m);
      assert.match(before.body, /^process_cpu_user_seconds_total /m, "the process's own metrics");

      for (let w = 0; w < 12; w++) {
        for (let i = 0; i < 2; i++) await f.accessToken('broker-3', { scope: 'order:create' });
        await closeWindow({ ctx: f.ctx, clock: f.clock, nodes: [f.ctx] });
      }
      for (let i = 0; i < 20; i++) await f.accessToken('broker-3', { scope: 'order:create' });
      await closeWindow({ ctx: f.ctx, clock: f.clock, nodes: [f.ctx] });

      // The clock moved an hour: a fresh token, as Prometheus's oauth2 setting fetches one.
      const after = (await scrape(await f.accessToken('prometheus', { resource: adminAudience(f.issuer) }))).body;
      assert.match(after, /^# TYPE clearance_risk_anomalies_total counter$/m);
      assert.match(after, /^clearance_risk_anomalies_total\{class="token_rate",reaction="suspend"\} 1$/m);
      assert.match(after, /^clearance_risk_anomalies_open\{class="token_rate",reaction="suspend"\} 1$/m);
      assert.match(after, /^clearance_risk_suspensions_total\{principal_type="Client"\} 1$/m);
      assert.match(after, /^clearance_risk_suspensions_active\{principal_type="Client"\} 1$/m);
      assert.match(after, /^clearance_risk_suspensions_active\{principal_type="User"\} 0$/m);
    });

    test("shows what another component counts in the process's registry", async (t) => {
      const f = await protocolFixture(t, { dialect });
      await f.apply({ clients: [{ client_id: 'prometheus', kind: 'service', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], scope: 'metrics:read' }] });
      const name = `clearance_test_${dialect.name}_total`;
      const counter = new Counter({ name, help: 'A counter a component adds.', registers: [metricsRegistry] });
      t.after(() => metricsRegistry.removeSingleMetric(name));
      counter.inc(3);
      const token = await f.accessToken('prometheus', { resource: adminAudience(f.issuer) });
      const body = (await f.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${token}` } })).body;
      assert.match(body, new RegExp(`^${name} 3$`, 'm'));
    });
  });
}
