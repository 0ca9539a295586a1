import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import parsePrometheusTextFormat, { type PrometheusFamily } from 'parse-prometheus-text-format';
import { Counter } from 'prom-client';
import { adminAudience } from '../../src/admin/authorize.ts';
import { metricsRegistry } from '../../src/metrics.ts';
import { closeWindow } from '../risk/anomalies/fixture.ts';
import { testDialects } from '../helpers/storage.ts';
import { assertOAuthError, protocolFixture } from './fixture.ts';
import { requestCertificate } from '../../src/pki/issuance.ts';
import { applyDocument, initTestCa, opensslCsr, scratch, tradingAgentProfile } from '../pki/fixture.ts';

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

    test("counts each profile's valid certificates that expire within a week, and the soonest expiry", async (t) => {
      const f = await protocolFixture(t, { dialect });
      await f.apply({ clients: [{ client_id: 'prometheus', kind: 'service', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], scope: 'metrics:read' }] });
      await initTestCa(f.ctx);
      await applyDocument(f.ctx, { certificate_profiles: [tradingAgentProfile] });
      const files = scratch(t);
      for (const holder of ['algo-7', 'algo-8']) {
        await requestCertificate(f.ctx, { profile: 'trading-agent', csr: opensslCsr(files, holder).csrPem, holder, requestedBy: 'pipeline', requesterType: 'client' });
      }
      const token = await f.accessToken('prometheus', { resource: adminAudience(f.issuer) });
      const body = (await f.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${token}` } })).body;
      assert.match(body, /^clearance_certificates_expiring_7d\{profile="trading-agent"\} 2$/m, 'two 8-hour certificates');
      const soonest = Number(/^clearance_certificate_expiry_seconds\{profile="trading-agent"\} (\S+)$/m.exec(body)?.[1]);
      assert.ok(soonest > 0 && soonest <= 8 * 3600, String(soonest));
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
    test('parses as the Prometheus text format, and counts tokens, refusals, requests, decisions, the audit log, batches, caches and what expires', async (t) => {
      const f = await protocolFixture(t, { dialect });
      await f.apply({ clients: [{ client_id: 'prometheus', kind: 'service', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], scope: 'metrics:read' }] });
      let last = '';
      const scrape = async () => {
        const token = await f.accessToken('prometheus', { resource: adminAudience(f.issuer) });
        const response = await f.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${token}` } });
        assert.equal(response.statusCode, 200, response.body);
        last = response.body;
        return new Map(parsePrometheusTextFormat(response.body).map((family) => [family.name, family]));
      };
      const value = (families: Map<string, PrometheusFamily>, name: string, labels: Record<string, string> = {}) => {
        const family = families.get(name);
        const sample = family?.metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v));
        return Number(sample?.value ?? sample?.count ?? 0);
      };
      const before = await scrape();
      for (let i = 0; i < 3; i++) await f.accessToken('broker-3', { scope: 'order:create' });
      const refused = await f.inject({ method: 'POST', url: '/token', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: 'grant_type=client_credentials&client_id=nobody&client_secret=wrong' });
      assert.equal(refused.statusCode, 401);
      const after = await scrape();

      for (const family of after.values()) assert.ok(family.help !== '' && family.type !== 'UNTYPED', `${family.name} has its help and type`);
      // Each scrape takes a token too: `prometheus`'s client_credentials, counted like any other.
      assert.equal(value(after, 'clearance_tokens_issued_total', { grant_type: 'client_credentials' }) - value(before, 'clearance_tokens_issued_total', { grant_type: 'client_credentials' }), 3 + 1);
      assert.equal(value(after, 'clearance_token_denials_total', { grant_type: 'client_credentials', error: 'invalid_client' }) - value(before, 'clearance_token_denials_total', { grant_type: 'client_credentials', error: 'invalid_client' }), 1);
      assert.equal(value(after, 'clearance_http_requests_total', { route: '/token', method: 'POST', status: '2xx' }) - value(before, 'clearance_http_requests_total', { route: '/token', method: 'POST', status: '2xx' }), 4);
      assert.equal(value(after, 'clearance_http_requests_total', { route: '/token', method: 'POST', status: '4xx' }) - value(before, 'clearance_http_requests_total', { route: '/token', method: 'POST', status: '4xx' }), 1);
      assert.equal(after.get('clearance_http_request_duration_seconds')?.type, 'HISTOGRAM');
      // The parser folds a labelled histogram's series together: its count is read from the text.
      assert.match(last, /^clearance_http_request_duration_seconds_count\{route="\/metrics",method="GET"\} [1-9]\d*$/m, 'the first scrape is in the second');
      assert.ok(after.get('clearance_http_requests_total')!.metrics.every((m) => !m.labels?.route?.includes('?')), 'routes as registered, never a URL');
      assert.ok(value(after, 'clearance_audit_events_appended_total') > value(before, 'clearance_audit_events_appended_total'), 'the issuances were audited');
      assert.ok(after.has('clearance_audit_seal_lag_events') && after.has('clearance_audit_seal_lag_seconds') && after.has('clearance_audit_tree_size'));
      assert.equal(after.get('clearance_group_commit_batch_size')?.type, 'HISTOGRAM');
      assert.ok(value(after, 'clearance_cache_reads_total', { cache: 'clients', outcome: 'hit' }) > value(before, 'clearance_cache_reads_total', { cache: 'clients', outcome: 'hit' }));
      assert.equal(after.get('clearance_policy_decision_seconds')?.type, 'HISTOGRAM');
      assert.ok(after.has('clearance_signing_key_age_seconds') && after.has('clearance_mandates_expiring_7d') && after.has('clearance_rate_limit_rejections_total'));
      assert.equal(after.get('clearance_signing_key_age_seconds')!.metrics.length, 1, 'one signing key in use');
    });
    test('exposes every metric the Grafana dashboard in docs/grafana/clearance.json queries', async (t) => {
      const f = await protocolFixture(t, { dialect });
      await f.apply({ clients: [{ client_id: 'prometheus', kind: 'service', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], scope: 'metrics:read' }] });
      const token = await f.accessToken('prometheus', { resource: adminAudience(f.issuer) });
      const body = (await f.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${token}` } })).body;
      const exposed = new Set(parsePrometheusTextFormat(body).map((family) => family.name));
      const dashboard = JSON.parse(readFileSync(new URL('../../docs/grafana/clearance.json', import.meta.url), 'utf8')) as { panels: { title: string; targets: { expr: string }[] }[] };
      const queried = new Set(dashboard.panels.flatMap((panel) => panel.targets.flatMap((target) => target.expr.match(/\b(?:clearance|process|nodejs)_[a-z0-9_]+/g) ?? [])));
      assert.ok(queried.size >= 15, [...queried].join(', '));
      // A histogram is queried through its series: `_bucket` is the family's.
      const missing = [...queried].map((name) => name.replace(/_bucket$/, '')).filter((name) => !exposed.has(name));
      assert.deepEqual(missing, [], 'the dashboard queries only what /metrics exposes');
    });
  });
}
