import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { adminAudience } from '../../src/admin/authorize.ts';
import type { StoredAuditEvent } from '../../src/audit/events.ts';
import { codeFlowFixture, type CodeFlowFixture } from '../authorization/fixture.ts';
import { closeWindow } from '../risk/anomalies/fixture.ts';
import { testDialects } from '../helpers/storage.ts';
import { Jar, locationPath, startAuthorization, submitPassword } from './people-browser.ts';
import { assertOAuthError, ordersApi, type ProtocolFixture } from './fixture.ts';

// Anomaly reactions and the admin API of anomalies (docs/risk.md "Baselines and anomalies"): a
// suspended client or person is refused at the token endpoint and at sign-in until reinstated.

const alicePassword = 'alice-correct-horse-42';

/** `windows` closed windows in which `traffic` ran (the anomaly fixture's clock steps). */
async function windows(f: ProtocolFixture, count: number, traffic: () => Promise<void> | void) {
  for (let w = 0; w < count; w++) {
    await traffic();
    await closeWindow({ ctx: f.ctx, clock: f.clock, nodes: [f.ctx] });
  }
}

/** The token request of each fixture client used here. */
const forms: Record<string, Record<string, string>> = { 'broker-1': { resource: ordersApi }, 'broker-3': { scope: 'order:create' }, 'orders-gateway': { scope: 'position:view' } };

async function clientTokens(f: ProtocolFixture, clientId: string, n: number) {
  for (let i = 0; i < n; i++) await f.accessToken(clientId, forms[clientId]);
}

async function admin(f: ProtocolFixture, clientId: 'admin-ops' | 'admin-viewer') {
  return f.accessToken(clientId, { resource: adminAudience(f.issuer) });
}

async function call(f: ProtocolFixture, token: string | undefined, method: 'GET' | 'POST', url: string, body?: unknown) {
  return f.inject({ method, url, headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body ? { 'content-type': 'application/json' } : {}) }, ...(body ? { payload: JSON.stringify(body) } : {}) });
}

async function audited(f: ProtocolFixture, type: 'risk.suspended' | 'risk.reinstated' | 'risk.anomaly_resolved' | 'user.login_failed'): Promise<StoredAuditEvent[]> {
  return f.auditEvents(type);
}

/** A password sign-in through the real pages; the response to the password step. */
async function signIn(f: CodeFlowFixture, password = alicePassword) {
  const jar = new Jar();
  const { id } = await startAuthorization(f, jar);
  return submitPassword(f, jar, id, 'alice', password);
}

for (const dialect of testDialects()) {
  describe(`anomaly reactions and the risk admin API on ${dialect.name}`, () => {
    test('a client suspended by a token burst is refused at the token endpoint until an administrator reinstates it, and the admin API lists and resolves', async (t) => {
      const f = await codeFlowFixture(t, { dialect });
      await f.apply({ anomalies: { reactions: { token_rate: 'suspend' } } });
      await windows(f, 12, () => clientTokens(f, 'broker-3', 2));
      await clientTokens(f, 'broker-3', 20);
      const [window] = await closeWindow({ ctx: f.ctx, clock: f.clock, nodes: [f.ctx] });
      assert.equal(window!.raised.length, 1);

      const refused = await f.token({ auth: f.basic('broker-3'), form: { grant_type: 'client_credentials', scope: 'order:create' } });
      assertOAuthError(refused, 400, 'unauthorized_client');
      assert.match(refused.json().error_description, /suspended pending review/);
      await clientTokens(f, 'broker-1', 1);
      const [suspended] = await audited(f, 'risk.suspended');
      assert.equal(suspended!.client, 'broker-3');
      assert.equal((await f.ctx.storage.db.selectFrom('alerts').select('type').where('type', '=', 'risk.suspended').execute()).length, 1);

      const viewer = await admin(f, 'admin-viewer');
      const ops = await admin(f, 'admin-ops');
      const listed = await call(f, viewer, 'GET', '/admin/risk/anomalies?status=open&principal=Client:broker-3');
      assert.equal(listed.statusCode, 200, listed.body);
      const [anomaly] = listed.json().anomalies;
      assert.deepEqual([anomaly.principal, anomaly.class, anomaly.observed, anomaly.baseline, anomaly.reaction, anomaly.status], [{ type: 'Client', id: 'broker-3' }, 'token_rate', 20, 2, 'suspend', 'open']);
      assert.equal(listed.json().next, undefined);
      assert.equal((await call(f, viewer, 'GET', `/admin/risk/anomalies/${anomaly.id}`)).json().id, anomaly.id);
      const suspensions = await call(f, viewer, 'GET', '/admin/risk/suspensions?active=true');
      const [suspension] = suspensions.json().suspensions;
      assert.deepEqual([suspension.principal, suspension.anomaly_id, suspension.reinstated_at], [{ type: 'Client', id: 'broker-3' }, anomaly.id, null]);

      // Acting needs admin:write; reading admin:read; nothing without a token.
      assertOAuthError(await call(f, viewer, 'POST', `/admin/risk/suspensions/${suspension.id}/reinstate`), 403, 'insufficient_scope');
      assertOAuthError(await call(f, viewer, 'POST', `/admin/risk/anomalies/${anomaly.id}/resolve`), 403, 'insufficient_scope');
      assert.equal((await call(f, undefined, 'GET', '/admin/risk/anomalies')).statusCode, 401);
      assertOAuthError(await f.token({ auth: f.basic('broker-3'), form: { grant_type: 'client_credentials', scope: 'order:create' } }), 400, 'unauthorized_client');

      const resolved = await call(f, ops, 'POST', `/admin/risk/anomalies/${anomaly.id}/resolve`, { note: 'a batch job rerun, agreed with the desk' });
      assert.equal(resolved.statusCode, 200, resolved.body);
      assert.deepEqual([resolved.json().status, resolved.json().resolved_by, resolved.json().resolution_note], ['resolved', 'admin-ops', 'a batch job rerun, agreed with the desk']);
      assertOAuthError(await call(f, ops, 'POST', `/admin/risk/anomalies/${anomaly.id}/resolve`), 409, 'invalid_request');
      assertOAuthError(await f.token({ auth: f.basic('broker-3'), form: { grant_type: 'client_credentials', scope: 'order:create' } }), 400, 'unauthorized_client', 'resolving is not reinstating');

      const reinstated = await call(f, ops, 'POST', `/admin/risk/suspensions/${suspension.id}/reinstate`, { note: 'reviewed' });
      assert.equal(reinstated.statusCode, 200, reinstated.body);
      assert.equal(reinstated.json().reinstated_by, 'admin-ops');
      await clientTokens(f, 'broker-3', 1);
      assertOAuthError(await call(f, ops, 'POST', `/admin/risk/suspensions/${suspension.id}/reinstate`), 409, 'invalid_request');
      assert.deepEqual((await audited(f, 'risk.anomaly_resolved')).map((e) => [e.actor, e.client, e.details?.anomaly_id]), [['admin-ops', 'broker-3', anomaly.id]]);
      assert.deepEqual((await audited(f, 'risk.reinstated')).map((e) => [e.actor, e.client, e.details?.suspension_id, e.details?.note]), [['admin-ops', 'broker-3', suspension.id, 'reviewed']]);
      assert.deepEqual((await call(f, viewer, 'GET', '/admin/risk/suspensions?active=true')).json().suspensions, []);
    });

    test('a person suspended by a sign-in burst cannot sign in nor get tokens with a grant they hold, until reinstated', async (t) => {
      const f = await codeFlowFixture(t, { dialect });
      // The sign-in's own signals are not this test's subject: each sign-in comes from a new browser,
      // at whatever hour the suite runs (docs/risk.md "Signals"), and would step up with velocity.
      await f.apply({
        users: [{ username: 'alice', password: alicePassword }],
        anomalies: { reactions: { login_rate: 'suspend' } },
        risk: { weights: { new_device: 0, new_network: 0, off_hours: 0 } },
      });
      const aliceId = await f.user('alice');
      await windows(f, 12, () => f.ctx.risk.activity.count({ type: 'User', id: aliceId }, 'login'));
      const { code, pkce } = await f.authorizeAndApprove({ person: await f.signIn('alice') });
      const redeemed = await f.redeem('web-app', code, pkce.verifier);
      assert.equal(redeemed.statusCode, 200, redeemed.body);
      const refreshToken = redeemed.json().refresh_token as string;
      for (let i = 0; i < 20; i++) assert.equal((await signIn(f)).statusCode, 303);
      await closeWindow({ ctx: f.ctx, clock: f.clock, nodes: [f.ctx] });
      const [suspended] = await audited(f, 'risk.suspended');
      assert.equal(suspended!.subject, aliceId);

      const refusedSignIn = await signIn(f);
      assert.equal(refusedSignIn.statusCode, 401, 'the sign-in page again, with the one generic message');
      const failed = (await audited(f, 'user.login_failed')).at(-1)!;
      assert.deepEqual(failed.decision?.reasons, ['suspended']);
      const refusedRefresh = await f.refresh('web-app', refreshToken);
      assertOAuthError(refusedRefresh, 400, 'invalid_grant');
      assert.match(refusedRefresh.json().error_description, /suspended pending review/);

      const ops = await admin(f, 'admin-ops');
      const [suspension] = (await call(f, ops, 'GET', `/admin/risk/suspensions?principal=User:${aliceId}`)).json().suspensions;
      assert.equal((await call(f, ops, 'POST', `/admin/risk/suspensions/${suspension.id}/reinstate`)).statusCode, 200);
      const signedIn = await signIn(f);
      assert.equal(signedIn.statusCode, 303);
      assert.notEqual(locationPath(f, signedIn), undefined);
      assert.equal((await f.refresh('web-app', refreshToken)).statusCode, 200, 'the grant works again');
    });

    test('lists anomalies newest first in pages, and refuses a repeated or malformed parameter', async (t) => {
      const f = await codeFlowFixture(t, { dialect });
      await f.apply({ anomalies: { reactions: { token_rate: 'alert' } } });
      const bursting = ['broker-1', 'orders-gateway', 'broker-3'];
      await windows(f, 12, async () => {
        for (const id of bursting) await clientTokens(f, id, 1);
      });
      for (const id of bursting) await windows(f, 1, () => clientTokens(f, id, 20));
      const viewer = await admin(f, 'admin-viewer');
      const first = await call(f, viewer, 'GET', '/admin/risk/anomalies?limit=2');
      assert.deepEqual(first.json().anomalies.map((a: { principal: { id: string } }) => a.principal.id), ['broker-3', 'orders-gateway']);
      const second = await call(f, viewer, 'GET', `/admin/risk/anomalies?limit=2&after=${first.json().next}`);
      assert.deepEqual(second.json().anomalies.map((a: { principal: { id: string } }) => a.principal.id), ['broker-1']);
      assert.equal(second.json().next, undefined);
      assert.equal((await call(f, viewer, 'GET', '/admin/risk/anomalies?status=resolved')).json().anomalies.length, 0);
      for (const query of ['status=open&status=resolved', 'status=closed', 'principal=broker-1', 'limit=0', 'limit=501', 'after=bm9wZQ', 'active=yes']) {
        const url = query.startsWith('active') ? `/admin/risk/suspensions?${query}` : `/admin/risk/anomalies?${query}`;
        assertOAuthError(await call(f, viewer, 'GET', url), 400, 'invalid_request', query);
      }
      assertOAuthError(await call(f, viewer, 'GET', '/admin/risk/anomalies/no-such-id'), 404, 'not_found');
    });
  });
}
