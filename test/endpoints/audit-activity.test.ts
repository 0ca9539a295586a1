import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { adminAudience } from '../../src/admin/authorize.ts';
import type { Activity } from '../../src/audit/activity.ts';
import { assertOAuthError, ordersApi, protocolFixture, type ProtocolFixture } from './fixture.ts';

async function auditorToken(f: ProtocolFixture): Promise<string> {
  await f.apply({
    clients: [{ client_id: 'auditor', kind: 'service', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], scope: 'audit:read' }],
  });
  return f.accessToken('auditor', { resource: adminAudience(f.issuer), scope: 'audit:read' });
}

const get = (f: ProtocolFixture, url: string, token?: string) => f.inject({ method: 'GET', url, headers: token ? { authorization: `Bearer ${token}` } : {} });

describe('GET /admin/audit/activity', () => {
  test('admits only a token with audit:read', async (t) => {
    const f = await protocolFixture(t);
    assertOAuthError(await get(f, '/admin/audit/activity'), 401, 'invalid_token');
    const adminOnly = await f.accessToken('admin-ops', { resource: adminAudience(f.issuer) });
    assertOAuthError(await get(f, '/admin/audit/activity', adminOnly), 403, 'insufficient_scope');
  });

  test('counts the last 24 hours by the hour by default, including this very moment, never cached', async (t) => {
    const f = await protocolFixture(t);
    const token = await auditorToken(f);
    await f.accessToken('broker-1', { resource: ordersApi, scope: 'order:create' });
    const refused = await f.token({ auth: f.basic('broker-1'), form: { grant_type: 'client_credentials', resource: ordersApi, scope: 'admin:write' } });
    assert.equal(refused.statusCode, 400);
    const response = await get(f, '/admin/audit/activity', token);
    assert.equal(response.statusCode, 200, response.body);
    assert.equal(response.headers['cache-control'], 'no-store');
    const activity = response.json() as Activity;
    assert.equal(activity.bucket_seconds, 3600);
    assert.equal(activity.buckets.length, 25, 'the hour 24 hours ago, aligned down, to this hour');
    assert.equal(activity.until, f.clock.now() + 1);
    const issued = (await f.auditEvents('token.issued')).length;
    assert.ok(issued >= 2, 'the fixture and the test issued tokens');
    assert.equal(activity.series.issued.reduce((a, b) => a + b), issued);
    assert.equal(activity.series.refused.at(-1), 1);
    assert.deepEqual(activity.refusals_by_reason, [{ reason: 'invalid_scope', count: 1 }]);
    assert.equal(activity.approvals_waiting, 0);
    assert.ok(activity.seal.unsealed >= issued, 'nothing sealed in this fixture');
  });

  test('takes a range and a bucket width, and refuses a width it does not offer, an empty range or too many buckets', async (t) => {
    const f = await protocolFixture(t);
    const token = await auditorToken(f);
    const now = f.clock.now();
    const response = await get(f, `/admin/audit/activity?since=${now - 3600_000}&until=${now + 1}&bucket=300`, token);
    assert.equal(response.statusCode, 200, response.body);
    assert.equal((response.json() as Activity).buckets.length, 13);
    const iso = await get(f, `/admin/audit/activity?since=${new Date(now - 86_400_000).toISOString()}&bucket=86400`, token);
    assert.equal(iso.statusCode, 200, iso.body);

    const refusals: [string, RegExp][] = [
      ['bucket=7', /bucket must be one of 60, 300, 900, 3600, 21600, 86400/],
      ['bucket=one', /^querystring\/bucket must match pattern/],
      [`since=${now}&until=${now - 1}`, /until must be after since/],
      [`since=0&until=${now}&bucket=60`, /at most 400 buckets/],
      ['since=yesterday', /since must be epoch milliseconds or an ISO 8601 time/],
      ['bucket=60&bucket=300', /^querystring\/bucket must be string/],
    ];
    for (const [query, description] of refusals) {
      const refused = assertOAuthError(await get(f, `/admin/audit/activity?${query}`, token), 400, 'invalid_request', query);
      assert.match(String(refused.error_description), description, query);
    }
  });
});

describe('GET /admin/audit/status', () => {
  test('says when the log was last verified in full, and what that found, beside its latest checkpoint, key and sealing lag', async (t) => {
    const f = await protocolFixture(t);
    const token = await auditorToken(f);
    assertOAuthError(await get(f, '/admin/audit/status'), 401, 'invalid_token');
    const before = (await get(f, '/admin/audit/status', token)).json() as Record<string, unknown>;
    assert.equal(before.last_verify, null, 'never verified');
    assert.equal(before.checkpoint, null);
    assert.ok(Number(before.unsealed) > 0);

    await f.ctx.audit.record({ type: 'audit.verified', actor: 'cli:ops', decision: { allow: false, reasons: ['failed'] }, details: { ok: false, leaves: 12, tree_size: 12, problem: { message: 'leaf 7 differs', leaf_index: 7 } } });
    f.clock.advance(1000);
    await f.ctx.audit.record({ type: 'audit.verified', actor: 'cli:ops', decision: { allow: true, reasons: ['intact'] }, details: { ok: true, leaves: 40, tree_size: 40, against_external_checkpoint: true } });
    const response = await get(f, '/admin/audit/status', token);
    assert.equal(response.statusCode, 200, response.body);
    assert.equal(response.headers['cache-control'], 'no-store');
    const status = response.json() as { last_verify: Record<string, unknown> };
    assert.deepEqual({ ...status.last_verify, time: undefined, event: undefined }, { time: undefined, event: undefined, by: 'cli:ops', ok: true, tree_size: 40, leaves: 40, against_external_checkpoint: true }, 'the latest verification');
    assert.match(String(status.last_verify.event), /^[0-9a-f-]{36}$/);
  });
});
