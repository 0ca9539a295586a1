import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, test } from 'node:test';
import { adminAudience } from '../../../src/admin/authorize.ts';
import { executeApply, planApply } from '../../../src/apply/index.ts';
import { userinfoAudience } from '../../../src/authorization/scopes.ts';
import type { Context } from '../../../src/context.ts';
import { upsertUser } from '../../../src/identity/users.ts';
import { windowStartOf } from '../../../src/risk/anomalies/activity.ts';
import { closeAfterMs, evaluateClosedWindows } from '../../../src/risk/anomalies/evaluate.ts';
import { newJti } from '../../../src/tokens/access-token.ts';
import type { AccessTokenClaims } from '../../../src/tokens/claims.ts';
import { isTokenLive } from '../../../src/tokens/liveness.ts';
import { formatProblem } from '../../../src/validation.ts';
import { adminPersonToken } from '../../admin/admin-person.ts';
import { codeFlowFixture, type CodeFlowFixture } from '../../authorization/fixture.ts';
import { assertOAuthError } from '../../endpoints/fixture.ts';
import { testDialects } from '../../helpers/storage.ts';
import { anomalyNodes, client, closeWindow, logins, tokens, user, windowMs, type Nodes } from './fixture.ts';

/**
 * A suspension on a suspected compromise (src/risk/anomalies/store.ts `suspendIn`, docs/risk.md
 * "Reactions") ends the suspended principal's live tokens at once, on every node, in the
 * evaluation's transaction — a person's as "sign out everywhere" does, a client's by its cut-off —
 * and reinstating does not bring them back: the principal signs in, or authenticates, again.
 */

const alicePassword = 'alice-correct-horse-42';

/** Closes the fixture's current window and evaluates it (the anomaly fixture's clock steps). */
async function close(f: CodeFlowFixture) {
  return closeWindow({ ctx: f.ctx, clock: f.clock, nodes: [f.ctx] });
}

/** `count` closed windows in which `traffic` ran: the principal's history. */
async function history(f: CodeFlowFixture, count: number, traffic: () => Promise<void> | void) {
  for (let w = 0; w < count; w++) {
    await traffic();
    await close(f);
  }
}

/** The clock moved to 10 s before the current window ends: tokens minted now outlive its evaluation. */
function lateInWindow(f: CodeFlowFixture) {
  f.clock.set(windowStartOf(f.clock.now(), windowMs) + windowMs - 10_000);
}

function bearer(token: string) {
  return { authorization: `Bearer ${token}` };
}

/** Lifts the suspension of `principal` through the admin API, as another person (ada) does. */
async function reinstate(f: CodeFlowFixture, principal: string) {
  await f.user('ada');
  const ada = await adminPersonToken(f, 'ada');
  const listed = await f.inject({ method: 'GET', url: `/admin/risk/suspensions?active=true&principal=${principal}`, headers: bearer(ada) });
  const [suspension] = listed.json().suspensions;
  assert.ok(suspension, listed.body);
  const lifted = await f.inject({ method: 'POST', url: `/admin/risk/suspensions/${suspension.id}/reinstate`, headers: bearer(ada) });
  assert.equal(lifted.statusCode, 200, lifted.body);
}

for (const dialect of testDialects()) {
  describe(`a suspension ends the suspended principal's tokens on ${dialect.name}`, () => {
    test("a person suspended by a sign-in burst loses their live tokens at once (introspection inactive, userinfo 401, refresh invalid_grant), and reinstating does not bring them back", async (t) => {
      const f = await codeFlowFixture(t, { dialect });
      await f.apply({
        users: [{ username: 'alice', password: alicePassword }],
        anomalies: { reactions: { login_rate: 'suspend' } },
        risk: { weights: { new_device: 0, new_network: 0, off_hours: 0 } },
      });
      const aliceId = await f.user('alice');
      await history(f, 12, () => logins(f.ctx, aliceId, 1));
      logins(f.ctx, aliceId, 20);
      lateInWindow(f);

      // Alice's tokens, live before the suspension: an Order API token, a userinfo token, a refresh token.
      const { code, pkce, person } = await f.authorizeAndApprove({ person: await f.signIn('alice') });
      const redeemed = await f.redeem('web-app', code, pkce.verifier);
      assert.equal(redeemed.statusCode, 200, redeemed.body);
      const ordersToken = redeemed.json().access_token as string;
      const toUserinfo = await f.refresh('web-app', redeemed.json().refresh_token, { resource: userinfoAudience(f.issuer) });
      assert.equal(toUserinfo.statusCode, 200, toUserinfo.body);
      const userinfoToken = toUserinfo.json().access_token as string;
      const refreshToken = toUserinfo.json().refresh_token as string;
      const userinfo = () => f.inject({ method: 'GET', url: '/userinfo', headers: bearer(userinfoToken) });
      assert.equal((await f.introspect('web-app', ordersToken)).active, true);
      assert.equal((await userinfo()).statusCode, 200);

      const [window] = await close(f);
      assert.deepEqual(window!.raised.map((a) => [a.principal, a.reaction]), [[user(aliceId), 'suspend']]);

      const ended = async (when: string) => {
        assert.deepEqual(await f.introspect('web-app', ordersToken), { active: false }, `${when}: introspection`);
        assertOAuthError(await userinfo(), 401, 'invalid_token', `${when}: userinfo`);
        assertOAuthError(await f.refresh('web-app', refreshToken), 400, 'invalid_grant', `${when}: refresh`);
      };
      await ended('suspended');
      // In the suspension's transaction: "sign out everywhere", for the reason `suspended`.
      const [signedOut] = await f.auditEvents('user.signed_out_everywhere');
      assert.equal(signedOut?.subject, aliceId);
      assert.equal(signedOut?.actor, 'clearance');
      assert.deepEqual(signedOut?.decision?.reasons, ['suspended']);
      const [suspended] = await f.auditEvents('risk.suspended');
      assert.deepEqual([signedOut?.details?.via, signedOut?.details?.suspension_id, signedOut?.details?.refresh_tokens_revoked], ['risk-suspension', suspended!.details?.suspension_id, 1]);
      const sessions = await f.ctx.storage.db.selectFrom('sessions').select('end_reason').where('user_id', '=', aliceId).execute();
      assert.deepEqual(sessions.map((s) => s.end_reason), ['suspended'], 'her browser session ended too');

      f.clock.advance(2000);
      await reinstate(f, `User:${aliceId}`);
      await ended('reinstated');
      // Her old browser session is over: authorizing with its cookie asks her to sign in again.
      const resumed = await f.authorize(f.request('web-app'), { cookie: person.cookie });
      assert.equal(resumed.response.statusCode, 303);
      assert.equal(resumed.location?.searchParams.get('code'), null, 'no code from the session the suspension ended');
      // Signed in again, she gets live tokens.
      const again = await f.authorizeAndApprove({ person: await f.signIn('alice') });
      const fresh = await f.redeem('web-app', again.code, again.pkce.verifier);
      assert.equal(fresh.statusCode, 200, fresh.body);
      assert.equal((await f.introspect('web-app', fresh.json().access_token)).active, true);
      assert.equal((await f.refresh('web-app', fresh.json().refresh_token)).statusCode, 200);
    });

    test("a client suspended by a token burst loses its live client_credentials tokens at once (introspection inactive, the admin API 401), and reinstating does not bring them back", async (t) => {
      const f = await codeFlowFixture(t, { dialect });
      await f.apply({ anomalies: { reactions: { token_rate: 'suspend' } } });
      const viewerToken = () => f.accessToken('admin-viewer', { resource: adminAudience(f.issuer) });
      await history(f, 12, async () => {
        await viewerToken();
        await viewerToken();
      });
      for (let i = 0; i < 20; i++) await viewerToken();
      lateInWindow(f);
      const token = await viewerToken();
      const read = () => f.inject({ method: 'GET', url: '/admin/risk/anomalies', headers: bearer(token) });
      assert.equal((await f.introspect('admin-viewer', token)).active, true);
      assert.equal((await read()).statusCode, 200);
      // Another client's token, issued at the same moment, is not the suspended client's.
      const other = await f.accessToken('admin-ops', { resource: adminAudience(f.issuer) });

      const [window] = await close(f);
      assert.deepEqual(window!.raised.map((a) => [a.principal, a.reaction]), [[client('admin-viewer'), 'suspend']]);

      const ended = async (when: string) => {
        assert.deepEqual(await f.introspect('admin-viewer', token), { active: false }, `${when}: introspection`);
        assertOAuthError(await read(), 401, 'invalid_token', `${when}: admin API`);
      };
      await ended('suspended');
      assert.equal((await f.inject({ method: 'GET', url: '/admin/risk/anomalies', headers: bearer(other) })).statusCode, 200, "admin-ops' token lives on");
      const [suspended] = await f.auditEvents('risk.suspended');
      assert.deepEqual([suspended?.client, suspended?.details?.refresh_tokens_revoked, suspended?.details?.access_tokens], ['admin-viewer', 0, 'dead (cut-off)']);

      f.clock.advance(2000);
      await reinstate(f, 'Client:admin-viewer');
      await ended('reinstated');
      // Authenticated again, it gets a live token.
      const fresh = await viewerToken();
      assert.equal((await f.introspect('admin-viewer', fresh)).active, true);
      assert.equal((await f.inject({ method: 'GET', url: '/admin/risk/anomalies', headers: bearer(fresh) })).statusCode, 200);
    });

    test("a client suspended pending review loses the refresh tokens issued to it, which stay revoked once it is reinstated", async (t) => {
      const f = await codeFlowFixture(t, { dialect });
      await f.apply({ anomalies: { reactions: { token_rate: 'suspend' } } });
      await f.user('alice');
      const { code, pkce } = await f.authorizeAndApprove({});
      const redeemed = await f.redeem('web-app', code, pkce.verifier);
      assert.equal(redeemed.statusCode, 200, redeemed.body);
      const refreshToken = redeemed.json().refresh_token as string;
      await history(f, 12, () => tokens(f.ctx, 'web-app', 2));
      tokens(f.ctx, 'web-app', 40);
      await close(f);
      const [suspended] = await f.auditEvents('risk.suspended');
      assert.deepEqual([suspended?.client, suspended?.details?.refresh_tokens_revoked], ['web-app', 1]);

      f.clock.advance(2000);
      await reinstate(f, 'Client:web-app');
      assertOAuthError(await f.refresh('web-app', refreshToken), 400, 'invalid_grant', 'the refresh token issued before the suspension');
    });

    test('on every node: another node finds the suspended person\'s token dead at once, and the suspended client\'s within a second', async (t) => {
      const f = await anomalyNodes(t, dialect, 2);
      const [a, b] = f.nodes as [Context, Context];
      await apply(f, {
        resource_servers: [{ identifier: 'https://orders.example.com/api', scopes: ['order:create'] }],
        clients: [{ client_id: 'oms', kind: 'service', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], scope: 'order:create' }],
        anomalies: { reactions: { token_rate: 'suspend', login_rate: 'suspend' } },
      });
      const aliceId = await a.storage.db.transaction().execute(async (trx) => (await upsertUser(trx, a.clock.now(), { username: 'alice' }, { keep: true })).id);
      const grantId = randomUUID();
      const now = a.clock.now();
      await a.storage.db
        .insertInto('grants')
        .values({ id: grantId, user_id: aliceId, client_id: 'web-app', resources: '{}', oidc_scopes: '["openid"]', authorization_details: '[]', created_at: now, updated_at: now, revoked_at: null, revoked_by: null, revoke_reason: null })
        .execute();
      for (let w = 0; w < 12; w++) {
        tokens(a, 'oms', 2);
        logins(b, aliceId, 1);
        await closeWindow(f);
      }
      tokens(a, 'oms', 20);
      logins(b, aliceId, 20);
      const iat = Math.floor(f.clock.now() / 1000);
      const claims = (over: Partial<AccessTokenClaims>): AccessTokenClaims => ({ iss: f.ctx.config.issuer, aud: userinfoAudience(f.ctx.config.issuer), iat, exp: iat + 3600, jti: newJti(), sub: 'oms', client_id: 'oms', ...over });
      const clientToken = claims({});
      const personToken = claims({ sub: aliceId, client_id: 'web-app', grant_id: grantId });
      // The window closes; the other node has just read its caches when the first node evaluates it.
      for (const node of f.nodes) await node.risk.activity.flush();
      f.clock.set(windowStartOf(f.clock.now(), windowMs) + windowMs + closeAfterMs);
      assert.deepEqual([await isTokenLive(b, clientToken), await isTokenLive(b, personToken)], [true, true]);

      const [window] = await evaluateClosedWindows(a);
      assert.deepEqual(window!.raised.map((x) => x.principal).sort((x, y) => x.type.localeCompare(y.type)), [client('oms'), user(aliceId)]);
      assert.equal(await isTokenLive(b, personToken), false, "the person's standing is read with the token: at once");
      assert.equal(await isTokenLive(a, clientToken), false, 'the node that suspended knows at once');
      f.clock.advance(1001);
      assert.equal(await isTokenLive(b, clientToken), false, 'the other node within a second');
    });
  });
}

async function apply(f: Nodes, document: Record<string, unknown>) {
  const { plan, problems } = await planApply(f.ctx, document);
  if (!plan) assert.fail(problems.map(formatProblem).join('\n'));
  return executeApply(f.ctx, plan, { actor: 'test', via: 'cli' });
}
