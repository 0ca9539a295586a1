import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { codeFlowFixture, type CodeFlowFixture } from '../authorization/fixture.ts';
import { assertOAuthError, ordersApi } from '../endpoints/fixture.ts';

/**
 * POST /admin/users/{username}/offboard (issue 23 item 2): admin:write; ends what the person holds
 * and answers what it ended; their tokens are inactive at once.
 */

async function offboard(f: CodeFlowFixture, username: string, body: unknown, client = 'admin-ops') {
  const token = await f.accessToken(client, { resource: `${f.issuer}/admin` });
  return f.inject({ method: 'POST', url: `/admin/users/${username}/offboard`, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, payload: JSON.stringify(body) });
}

describe('offboarding through the admin API', () => {
  test('offboards a person: answers what ended; their access token is inactive at /introspect and their refresh token is refused', async (t) => {
    const f = await codeFlowFixture(t, { risk: 'off' });
    const { code, pkce, person } = await f.authorizeAndApprove({ query: { scope: 'openid offline_access order:create', resource: ordersApi } });
    const redeemed = await f.redeem('web-app', code, pkce.verifier);
    const { access_token: access, refresh_token: refresh } = redeemed.json() as { access_token: string; refresh_token: string };
    assert.equal((await f.introspect('orders-gateway', access)).active, true);

    const deadline = new Date(f.clock.now() + 5 * 86_400_000).toISOString();
    const response = await offboard(f, 'alice', { reason: 'left the firm', reassignment_deadline: deadline });
    assert.equal(response.statusCode, 200, response.body);
    assert.equal(response.headers['cache-control'], 'no-store');
    const body = response.json() as { user_id: string; status: string; ended: Record<string, unknown> };
    assert.equal(body.user_id, person.userId);
    assert.equal(body.status, 'disabled');
    assert.equal(body.ended.sessions, 1);
    assert.equal(body.ended.refresh_tokens, 1);
    assert.equal((body.ended.consent_grants as string[]).length, 1);
    assert.deepEqual(body.ended.mandates_for_reassignment, { mandates: [], reassign_by: deadline });

    assert.deepEqual(await f.introspect('orders-gateway', access), { active: false });
    assertOAuthError(await f.refresh('web-app', refresh, { resource: ordersApi }), 400, 'invalid_grant');
    const [event] = await f.auditEvents('user.offboarded');
    assert.equal(event!.details!.via, 'admin-api');
    assert.equal(event!.actor, 'admin-ops');

    // Again: already offboarded.
    assertOAuthError(await offboard(f, 'alice', {}), 404, 'not_found');
  });

  test('answers 404 for an unknown person and 400 for a bad body', async (t) => {
    const f = await codeFlowFixture(t, { risk: 'off' });
    await f.user('alice');
    assertOAuthError(await offboard(f, 'nobody', {}), 404, 'not_found');
    assertOAuthError(await offboard(f, 'alice', { reassignment_deadline: 'tomorrow' }), 400, 'invalid_request');
    assertOAuthError(await offboard(f, 'alice', { reassignment_deadline: new Date(f.clock.now() - 1000).toISOString() }), 400, 'invalid_request');
    assertOAuthError(await offboard(f, 'alice', { surprise: true }), 400, 'invalid_request');
    assert.equal((await f.auditEvents('user.offboarded')).length, 0);
  });

  test('needs admin:write: 403 with admin:read only, 401 without a token', async (t) => {
    const f = await codeFlowFixture(t, { risk: 'off' });
    await f.user('alice');
    assertOAuthError(await offboard(f, 'alice', {}, 'admin-viewer'), 403, 'insufficient_scope');
    const anonymous = await f.inject({ method: 'POST', url: '/admin/users/alice/offboard', headers: { 'content-type': 'application/json' }, payload: '{}' });
    assert.equal(anonymous.statusCode, 401);
    const row = await f.ctx.storage.db.selectFrom('users').select('status').where('username', '=', 'alice').executeTakeFirstOrThrow();
    assert.equal(row.status, 'active');
  });
});
