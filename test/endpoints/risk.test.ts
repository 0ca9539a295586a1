import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { adminAudience } from '../../src/admin/authorize.ts';
import type { StoredAuditEvent } from '../../src/audit/events.ts';
import { codeFlowFixture, type CodeFlowFixture } from '../authorization/fixture.ts';
import { closeWindow } from '../risk/anomalies/fixture.ts';
import { testDialects } from '../helpers/storage.ts';
import { acr } from '../../src/identity/acr.ts';
import { adminPersonToken } from '../admin/admin-person.ts';
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

async function audited(f: ProtocolFixture, type: 'risk.suspended' | 'risk.reinstated' | 'risk.reinstate_refused' | 'risk.anomaly_resolved' | 'user.login_failed'): Promise<StoredAuditEvent[]> {
  return f.auditEvents(type);
}

/** A suspension in force, as an anomaly's `suspend` reaction leaves it (the reaction itself is tested above). */
async function suspend(f: ProtocolFixture, id: string, principal: { type: 'User' | 'Client'; id: string }) {
  await f.ctx.storage.db
    .insertInto('risk_suspensions')
    .values({ id, principal_type: principal.type, principal_id: principal.id, anomaly_id: `anomaly-of-${id}`, suspended_at: f.clock.now(), reinstated_at: null, reinstated_by: null, note: null })
    .execute();
  f.ctx.risk.reactions.invalidate();
}

/** Whether the suspension is still in force. */
async function inForce(f: ProtocolFixture, id: string): Promise<boolean> {
  const row = await f.ctx.storage.db.selectFrom('risk_suspensions').select('reinstated_at').where('id', '=', id).executeTakeFirstOrThrow();
  return row.reinstated_at === null;
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

      // Lifting the suspension is a person's act, with a passkey sign-in of the last 5 minutes.
      const adaId = await f.user('ada');
      const ada = await adminPersonToken(f, 'ada');
      const reinstated = await call(f, ada, 'POST', `/admin/risk/suspensions/${suspension.id}/reinstate`, { note: 'reviewed' });
      assert.equal(reinstated.statusCode, 200, reinstated.body);
      assert.equal(reinstated.json().reinstated_by, adaId);
      await clientTokens(f, 'broker-3', 1);
      assertOAuthError(await call(f, ada, 'POST', `/admin/risk/suspensions/${suspension.id}/reinstate`), 409, 'invalid_request');
      assert.deepEqual((await audited(f, 'risk.anomaly_resolved')).map((e) => [e.actor, e.client, e.details?.anomaly_id]), [['admin-ops', 'broker-3', anomaly.id]]);
      assert.deepEqual((await audited(f, 'risk.reinstated')).map((e) => [e.actor, e.client, e.details?.suspension_id, e.details?.note]), [[adaId, 'broker-3', suspension.id, 'reviewed']]);
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
      // The suspension ended her tokens as "sign out everywhere" does (test/risk/anomalies/store.test.ts).
      assertOAuthError(await f.refresh('web-app', refreshToken), 400, 'invalid_grant');

      const ops = await admin(f, 'admin-ops');
      const [suspension] = (await call(f, ops, 'GET', `/admin/risk/suspensions?principal=User:${aliceId}`)).json().suspensions;
      await f.user('ada');
      assert.equal((await call(f, await adminPersonToken(f, 'ada'), 'POST', `/admin/risk/suspensions/${suspension.id}/reinstate`)).statusCode, 200);
      const signedIn = await signIn(f);
      assert.equal(signedIn.statusCode, 303);
      assert.notEqual(locationPath(f, signedIn), undefined);
      assertOAuthError(await f.refresh('web-app', refreshToken), 400, 'invalid_grant', 'reinstating brings no token back: she signs in again');
    });

    test("lifting a suspension needs a person's own passkey sign-in of the last 5 minutes: a client's own token or a delegate's is refused 403, a password or six-minute-old sign-in 401 insufficient_user_authentication with acr_values and max_age (RFC 9470 §3); each refusal is recorded and the suspension stays", async (t) => {
      const f = await codeFlowFixture(t, { dialect });
      const adaId = await f.user('ada');
      await suspend(f, 'suspension-1', { type: 'Client', id: 'broker-3' });
      const reinstate = (token: string) => call(f, token, 'POST', '/admin/risk/suspensions/suspension-1/reinstate', { note: 'reviewed' });

      const service = assertOAuthError(await reinstate(await admin(f, 'admin-ops')), 403, 'access_denied');
      assert.match(String(service.error_description), /lifted by a person/);
      assertOAuthError(await reinstate(await adminPersonToken(f, 'ada', { extra: { act: { sub: 'agent-1' } } })), 403, 'access_denied');
      const weak = await reinstate(await adminPersonToken(f, 'ada', { acr: acr.multiFactor }));
      const weakBody = assertOAuthError(weak, 401, 'insufficient_user_authentication');
      assert.deepEqual([weakBody.acr_values, weakBody.max_age], [acr.phishingResistant, 300]);
      assert.match(String(weak.headers['www-authenticate']), /^Bearer realm="clearance", error="insufficient_user_authentication", .*acr_values="urn:clearance:acr:phr", max_age=300$/);
      // A token minted now over a sign-in of six minutes ago, as the console renews its token silently.
      const stale = await reinstate(await adminPersonToken(f, 'ada', { signedInSecondsAgo: 301 }));
      const staleBody = assertOAuthError(stale, 401, 'insufficient_user_authentication');
      assert.deepEqual([staleBody.acr_values, staleBody.max_age], [acr.phishingResistant, 300]);
      assert.match(String(staleBody.error_description), /last 5 minutes/);
      assert.equal(await inForce(f, 'suspension-1'), true, 'nothing lifted');
      assert.equal((await audited(f, 'risk.reinstated')).length, 0);

      const refused = await audited(f, 'risk.reinstate_refused');
      assert.deepEqual(
        refused.map((e) => [e.actor, e.client, e.decision?.reasons, e.details?.suspension_id, e.details?.outcome]),
        [
          ['admin-ops', 'broker-3', ['client_token'], 'suspension-1', 'refused'],
          [adaId, 'broker-3', ['delegated_token'], 'suspension-1', 'refused'],
          [adaId, 'broker-3', ['insufficient_authentication'], 'suspension-1', 'challenged'],
          [adaId, 'broker-3', ['stale_authentication'], 'suspension-1', 'challenged'],
        ],
      );
      assert.deepEqual([refused[3]!.details?.acr_values, refused[3]!.details?.max_age, refused[3]!.details?.admin_client], [acr.phishingResistant, 300, 'trading-ui']);

      // Exactly five minutes old is still fresh.
      const lifted = await reinstate(await adminPersonToken(f, 'ada', { signedInSecondsAgo: 300 }));
      assert.equal(lifted.statusCode, 200, lifted.body);
      assert.equal(lifted.json().reinstated_by, adaId);
      assert.equal(await inForce(f, 'suspension-1'), false);
    });

    test('a suspended principal never lifts its own suspension: neither the person suspended (their tokens run to their expiry) nor a token issued to the suspended client', async (t) => {
      const f = await codeFlowFixture(t, { dialect });
      const adaId = await f.user('ada');
      await f.user('bea');
      // A fresh passkey token of hers from before the suspension still runs to its expiry.
      const ada = await adminPersonToken(f, 'ada');
      await suspend(f, 'suspension-person', { type: 'User', id: adaId });
      await suspend(f, 'suspension-client', { type: 'Client', id: 'trading-ui' });

      const own = assertOAuthError(await call(f, ada, 'POST', '/admin/risk/suspensions/suspension-person/reinstate'), 403, 'access_denied');
      assert.match(String(own.error_description), /own suspension/);
      const bea = await adminPersonToken(f, 'bea');
      assertOAuthError(await call(f, bea, 'POST', '/admin/risk/suspensions/suspension-client/reinstate'), 403, 'access_denied', "a token of the suspended client (trading-ui's)");
      assert.deepEqual([await inForce(f, 'suspension-person'), await inForce(f, 'suspension-client')], [true, true]);
      assert.deepEqual((await audited(f, 'risk.reinstate_refused')).map((e) => [e.details?.suspension_id, e.decision?.reasons]), [
        ['suspension-person', ['own_suspension']],
        ['suspension-client', ['own_suspension']],
      ]);

      // Another person lifts it.
      const lifted = await call(f, bea, 'POST', '/admin/risk/suspensions/suspension-person/reinstate');
      assert.equal(lifted.statusCode, 200, lifted.body);
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
