import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { adminAudience } from '../../src/admin/authorize.ts';
import { userinfoAudience } from '../../src/authorization/scopes.ts';
import { nextStep, recordAuthentication } from '../../src/authorization/interactions.ts';
import { verifyLogin } from '../../src/identity/login.ts';
import { startSession } from '../../src/identity/sessions.ts';
import { accessAudience } from '../../src/resource-servers/builtins.ts';
import { mintAccessToken, newJti } from '../../src/tokens/access-token.ts';
import { codeFlowFixture, type CodeFlowFixture, type Person } from '../authorization/fixture.ts';
import { assertOAuthError, decodeJwt, ordersApi, resourceServers } from '../endpoints/fixture.ts';

/**
 * A person's lifecycle ends their tokens (issue 12 item 5, RFC 9700 §4.14.2): an administrator's
 * lock, disable or deletion, a password reset and "sign out everywhere" revoke the person's refresh
 * tokens and make their access tokens inactive at introspection, userinfo, the admin API, the
 * AuthZEN API and token exchange at once; the automatic lockout after failed passwords does not.
 */

const exchange = 'urn:ietf:params:oauth:grant-type:token-exchange';
const accessTokenType = 'urn:ietf:params:oauth:token-type:access_token';
const password = 'alice-correct-horse-42';
/** Alice as the fixture creates her (codeFlowFixture's user()), for apply documents. */
const aliceEntry = { username: 'alice', name: 'Alice Trader', email: 'alice@broker.example.com' };

interface PersonTokens {
  userId: string;
  /** The newest refresh token (each check that refreshes rotates it). */
  refresh: string;
  /** An access token for the Order API, from the code. */
  orders: string;
  /** Access tokens for our own protected resources, as a grant mints them for this person. */
  userinfo: string;
  admin: string;
  authzen: string;
}

async function fixture(t: Parameters<typeof codeFlowFixture>[0]): Promise<CodeFlowFixture> {
  const f = await codeFlowFixture(t);
  await f.apply({
    resource_servers: [{ ...resourceServers[0], exchange_clients: ['desk-backend'] }],
    clients: [{ client_id: 'desk-backend', kind: 'service', token_endpoint_auth_method: 'client_secret_basic', grant_types: [exchange], scope: 'order:create' }],
  });
  return f;
}

/** A token for one of our own resources, for this person under this grant, issued now. */
async function mint(f: CodeFlowFixture, audience: string, scope: string, sub: string, grantId: string): Promise<string> {
  const iat = Math.floor(f.clock.now() / 1000);
  return mintAccessToken(f.ctx.keys, { iss: f.issuer, aud: audience, iat, exp: iat + 300, jti: newJti(), client_id: 'web-app', scope, sub, grant_id: grantId });
}

/** Everything a person holds after signing in to web-app: refresh token, Order API token, and tokens for our resources. */
async function tokensOf(f: CodeFlowFixture, person?: Person): Promise<PersonTokens> {
  const { code, pkce } = await f.authorizeAndApprove({ ...(person ? { person } : {}), query: { scope: 'openid offline_access order:create', resource: ordersApi } });
  const redeemed = await f.redeem('web-app', code, pkce.verifier);
  assert.equal(redeemed.statusCode, 200, redeemed.body);
  const body = redeemed.json() as { access_token: string; refresh_token: string };
  assert.ok(body.refresh_token, 'a refresh token');
  const { sub, grant_id: grantId } = decodeJwt(body.access_token).payload as { sub: string; grant_id: string };
  return {
    userId: sub,
    refresh: body.refresh_token,
    orders: body.access_token,
    userinfo: await mint(f, userinfoAudience(f.issuer), 'openid', sub, grantId),
    admin: await mint(f, adminAudience(f.issuer), 'admin:read', sub, grantId),
    authzen: await mint(f, accessAudience(f.issuer), 'access:evaluate', sub, grantId),
  };
}

/** Each place a person's token is used, with its answer. */
async function uses(f: CodeFlowFixture, tokens: PersonTokens): Promise<Record<string, LightMyRequestResponse | Record<string, unknown>>> {
  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
  const refreshed = await f.refresh('web-app', tokens.refresh, { resource: ordersApi });
  if (refreshed.statusCode === 200) tokens.refresh = refreshed.json().refresh_token as string;
  return {
    refresh: refreshed,
    introspection: await f.introspect('orders-gateway', tokens.orders),
    userinfo: await f.inject({ method: 'GET', url: '/userinfo', headers: bearer(tokens.userinfo) }),
    admin: await f.inject({ method: 'GET', url: '/admin/clients', headers: bearer(tokens.admin) }),
    authzen: await f.inject({
      method: 'POST',
      url: '/access/v1/evaluation',
      headers: { ...bearer(tokens.authzen), 'content-type': 'application/json' },
      payload: JSON.stringify({ subject: { type: 'client', id: 'broker-1' }, action: { name: 'order:create' }, resource: { type: 'instrument', id: 'EURUSD' } }),
    }),
    exchange: await f.post('/token', {
      auth: f.basic('desk-backend'),
      form: { grant_type: exchange, subject_token: tokens.orders, subject_token_type: accessTokenType, resource: ordersApi },
    }),
  };
}

async function assertLive(f: CodeFlowFixture, tokens: PersonTokens, label: string): Promise<void> {
  const u = await uses(f, tokens);
  assert.equal((u.refresh as LightMyRequestResponse).statusCode, 200, `${label}: refresh ${(u.refresh as LightMyRequestResponse).body}`);
  assert.equal((u.introspection as Record<string, unknown>).active, true, `${label}: introspection`);
  for (const name of ['userinfo', 'admin', 'authzen', 'exchange'] as const) {
    const response = u[name] as LightMyRequestResponse;
    assert.equal(response.statusCode, 200, `${label}: ${name} ${response.body}`);
  }
}

async function assertDead(f: CodeFlowFixture, tokens: PersonTokens, label: string): Promise<void> {
  const u = await uses(f, tokens);
  assertOAuthError(u.refresh as LightMyRequestResponse, 400, 'invalid_grant', `${label}: refresh`);
  assert.deepEqual(u.introspection, { active: false }, `${label}: introspection`);
  for (const name of ['userinfo', 'admin', 'authzen'] as const) {
    const response = u[name] as LightMyRequestResponse;
    assertOAuthError(response, 401, 'invalid_token', `${label}: ${name}`);
    assert.match(String(response.headers['www-authenticate']), /error="invalid_token"/, `${label}: ${name}`);
  }
  // RFC 8693 §2.2.2: an unacceptable subject_token is invalid_request.
  const exchanged = assertOAuthError(u.exchange as LightMyRequestResponse, 400, 'invalid_request', `${label}: token exchange`);
  assert.match(String(exchanged.error_description), /subject_token is not acceptable/, `${label}: token exchange`);
}

/** An admin-API call with admin-ops' client_credentials token. */
async function adminCall(f: CodeFlowFixture, method: 'GET' | 'PUT' | 'PATCH' | 'POST' | 'DELETE', url: string, body?: unknown): Promise<LightMyRequestResponse> {
  const token = await f.accessToken('admin-ops', { resource: adminAudience(f.issuer) });
  const type = method === 'PATCH' ? 'application/merge-patch+json' : 'application/json';
  return f.inject({
    method,
    url,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': type }) },
    ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
  });
}

/** Alice's full representation for a PUT, with these changes. */
async function fullAlice(f: CodeFlowFixture, changes: Record<string, unknown>): Promise<Record<string, unknown>> {
  const current = (await adminCall(f, 'GET', '/admin/users/alice')).json() as Record<string, unknown>;
  const { name, email, desks, roles, attributes, status } = current;
  return { name, email, desks, roles, attributes, status, ...changes };
}

/** A password login (src/identity/login.ts) that starts a session, as the login page does. */
async function passwordLogin(f: CodeFlowFixture, secret: string): Promise<Person | undefined> {
  const outcome = await verifyLogin(f.ctx, { username: 'alice', password: secret, sourceAddress: '192.0.2.7' }, (trx, login) =>
    startSession(f.ctx, { userId: login.user.id, acr: login.acr, amr: login.amr, cookieHeader: undefined }, trx),
  );
  if (!outcome.ok) return undefined;
  return { userId: outcome.user.id, cookie: outcome.value.setCookie.split(';')[0]!, authentication: outcome.value.authentication };
}

async function lifecycleEvent(f: CodeFlowFixture, type: Parameters<CodeFlowFixture['auditEvents']>[0]) {
  const events = await f.auditEvents(type);
  assert.equal(events.length, 1, `one ${type} event`);
  return events[0]!;
}

describe('a person\'s lifecycle ends their tokens at once (RFC 9700 §4.14.2)', () => {
  test('an administrator\'s lock revokes the refresh tokens and kills the access tokens everywhere, and unlocking does not revive them', async (t) => {
    const f = await fixture(t);
    const tokens = await tokensOf(f);
    await assertLive(f, tokens, 'before');

    const locked = await adminCall(f, 'PUT', '/admin/users/alice', await fullAlice(f, { status: 'locked' }));
    assert.equal(locked.statusCode, 200, locked.body);
    await assertDead(f, tokens, 'locked');
    const event = await lifecycleEvent(f, 'user.locked');
    assert.equal(event.subject, tokens.userId);
    assert.equal(event.actor, 'admin-ops');
    assert.deepEqual(event.decision, { allow: false, reasons: ['admin'] });
    assert.deepEqual(event.details, { via: 'admin-api', refresh_tokens_revoked: 1, sessions_ended: 1, codes_discarded: 0 });
    const stored = await f.ctx.storage.db.selectFrom('refresh_tokens').select('state').where('user_id', '=', tokens.userId).execute();
    assert.ok(stored.every((r) => r.state === 'revoked'), 'every refresh token of the person is revoked');
    // A refresh token that slipped through the revocation is refused by the refresh grant all the same.
    await f.ctx.storage.db.updateTable('refresh_tokens').set({ state: 'active' }).where('user_id', '=', tokens.userId).where('parent_id', 'is not', null).execute();
    assertOAuthError(await f.refresh('web-app', tokens.refresh), 400, 'invalid_grant', 'a slipped-through refresh token of a locked person');

    const unlocked = await adminCall(f, 'PATCH', '/admin/users/alice', { status: 'active' });
    assert.equal(unlocked.statusCode, 200, unlocked.body);
    await assertDead(f, tokens, 'unlocked again');
  });

  test('disabling a person kills their tokens and refuses their password', async (t) => {
    const f = await fixture(t);
    await f.apply({ users: [{ ...aliceEntry, password }] });
    const tokens = await tokensOf(f, await passwordLogin(f, password));
    const disabled = await adminCall(f, 'PATCH', '/admin/users/alice', { status: 'disabled' });
    assert.equal(disabled.statusCode, 200, disabled.body);
    assert.equal(disabled.json().status, 'disabled');
    assert.equal(disabled.json().lock_reason, 'admin');
    await assertDead(f, tokens, 'disabled');
    assert.equal((await lifecycleEvent(f, 'user.disabled')).details!.refresh_tokens_revoked, 1);
    assert.equal(await passwordLogin(f, password), undefined, 'a disabled person cannot log in');
  });

  test('deleting a person kills their tokens, revokes their consent grants and names only their id', async (t) => {
    const f = await fixture(t);
    const tokens = await tokensOf(f);
    const deleted = await adminCall(f, 'DELETE', '/admin/users/alice');
    assert.equal(deleted.statusCode, 204, deleted.body);
    assertOAuthError(await adminCall(f, 'GET', '/admin/users/alice'), 404, 'not_found');
    await assertDead(f, tokens, 'deleted');
    const event = await lifecycleEvent(f, 'user.deleted');
    assert.equal(event.subject, tokens.userId);
    assert.deepEqual(event.details, { via: 'admin-api', refresh_tokens_revoked: 1, sessions_ended: 1, codes_discarded: 0, grants_revoked: 1, passkeys_removed: 0 });
    assert.doesNotMatch(JSON.stringify(event), /alice/);
    assert.equal((await f.auditEvents('consent.revoked')).length, 1);
    assertOAuthError(await adminCall(f, 'DELETE', '/admin/users/alice'), 404, 'not_found');
  });

  test('sign out everywhere ends sessions and tokens, the person stays active, and a new sign-in gets live tokens', async (t) => {
    const f = await fixture(t);
    const tokens = await tokensOf(f);
    const session = await f.ctx.storage.db.selectFrom('sessions').select('id').where('user_id', '=', tokens.userId).executeTakeFirstOrThrow();
    const signedOut = await adminCall(f, 'POST', '/admin/users/alice/sign-out');
    assert.equal(signedOut.statusCode, 204, signedOut.body);
    await assertDead(f, tokens, 'signed out everywhere');
    const ended = await f.ctx.storage.db.selectFrom('sessions').select('end_reason').where('id', '=', session.id).executeTakeFirstOrThrow();
    assert.equal(ended.end_reason, 'signed_out_everywhere');
    assert.equal((await adminCall(f, 'GET', '/admin/users/alice')).json().status, 'active');
    assert.equal((await lifecycleEvent(f, 'user.signed_out_everywhere')).details!.refresh_tokens_revoked, 1);
    assertOAuthError(await adminCall(f, 'POST', '/admin/users/nobody/sign-out'), 404, 'not_found');

    f.clock.advance(1000); // iat has a resolution of a second: a token of the cut-off's second is dead
    const fresh = await tokensOf(f, await f.signIn('alice'));
    await assertLive(f, fresh, 'signed in again');
  });

  test('a password reset kills the tokens, and a login with the new password gets live tokens', async (t) => {
    const f = await fixture(t);
    await f.apply({ users: [{ ...aliceEntry, password }] });
    const person = await passwordLogin(f, password);
    assert.ok(person, 'alice logs in');
    const tokens = await tokensOf(f, person);
    await assertLive(f, tokens, 'before');

    const newPassword = 'alice-new-passphrase-2026';
    const reset = await adminCall(f, 'PUT', '/admin/users/alice', await fullAlice(f, { password: newPassword }));
    assert.equal(reset.statusCode, 200, reset.body);
    await assertDead(f, tokens, 'password reset');
    assert.equal((await lifecycleEvent(f, 'user.password_reset')).details!.refresh_tokens_revoked, 1);
    assert.doesNotMatch(await f.auditText(), new RegExp(newPassword));

    f.clock.advance(1000);
    assert.equal(await passwordLogin(f, password), undefined, 'the old password no longer works');
    const again = await passwordLogin(f, newPassword);
    assert.ok(again, 'the new password works');
    await assertLive(f, await tokensOf(f, again), 'after the reset');
  });

  test('the automatic lockout after failed passwords leaves the tokens working; an administrator\'s lock over it ends them', async (t) => {
    const f = await fixture(t);
    await f.apply({ users: [{ ...aliceEntry, password }] });
    const tokens = await tokensOf(f, await passwordLogin(f, password));
    f.ctx.identity.policy.lockoutThreshold = 3;
    for (const guess of ['guess-one-1234', 'guess-two-1234', 'guess-three-12']) assert.equal(await passwordLogin(f, guess), undefined);
    const user = (await adminCall(f, 'GET', '/admin/users/alice')).json() as Record<string, unknown>;
    assert.equal(user.status, 'locked');
    assert.equal(user.lock_reason, 'failed_logins');
    assert.equal(await passwordLogin(f, password), undefined, 'password logins are locked');
    await assertLive(f, tokens, 'automatically locked');
    // Editing another member is no statement about the lock: it stays the automatic one.
    const edited = await adminCall(f, 'PATCH', '/admin/users/alice', { email: 'alice.trader@broker.example.com' });
    assert.equal(edited.statusCode, 200, edited.body);
    assert.equal(edited.json().lock_reason, 'failed_logins');
    await assertLive(f, tokens, 'automatically locked, email edited');

    const locked = await adminCall(f, 'PATCH', '/admin/users/alice', { status: 'locked' });
    assert.equal(locked.statusCode, 200, locked.body);
    assert.equal(locked.json().lock_reason, 'admin');
    await assertDead(f, tokens, 'locked by an administrator');
  });

  test('locking through the users section of apply ends the tokens too', async (t) => {
    const f = await fixture(t);
    const tokens = await tokensOf(f);
    await f.apply({ users: [{ ...aliceEntry, status: 'locked' }] });
    await assertDead(f, tokens, 'locked by apply');
    const event = await lifecycleEvent(f, 'user.locked');
    assert.equal(event.details!.refresh_tokens_revoked, 1);
  });
});

describe('a sign-in waiting on the consent page when the person\'s access ends', () => {
  test('yields no code after "sign out everywhere": resuming asks for a new sign-in', async (t) => {
    const f = await fixture(t);
    const person = await f.signIn('alice');
    const started = await f.authorize(f.request('web-app', { code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', scope: 'openid order:create', resource: ordersApi }), { cookie: person.cookie });
    assert.equal(started.response.statusCode, 303, started.response.body);
    assert.match(started.location!.pathname, /^\/interaction\//);
    const id = started.location!.pathname.split('/').pop()!;
    // Whoever signed in (with the password about to be reset) now waits on the consent page.
    await recordAuthentication(f.ctx, id, person.authentication);
    assert.equal((await nextStep(f.ctx, id, person.authentication)).step, 'consent');

    assert.equal((await adminCall(f, 'POST', '/admin/users/alice/sign-out')).statusCode, 204);
    assert.equal((await nextStep(f.ctx, id, undefined)).step, 'login', 'the sign-in recorded before was forgotten');
    const resumed = await f.resume(id, started.cookie);
    assert.equal(resumed.location?.searchParams.get('code') ?? null, null, `no code: ${resumed.location?.href}`);
  });
});
