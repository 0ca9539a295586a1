import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import * as client from 'openid-client';
import { startDeskApp, type DeskApp } from '../../helpers/desk-app.ts';
import { csrfOf, HttpBrowser } from '../../helpers/http-browser.ts';
import { brokerLei, followAll, form, fundLei } from './fixture.ts';
import { startFakeUpstream, type FakeMode, type FakeUpstream } from './fake-upstream.ts';

// What Clearance does with a bad answer from an upstream OpenID Provider: a fake provider
// (./fake-upstream.ts) answers the way each test says — a forged, unsigned, misdirected, stale or
// foreign ID token, a mixed-up authorization response, an error from either endpoint —
// and every time the person gets a plain 401 page (not cached, no session), the refusal is in the
// audit log with why, and nobody is provisioned.

const realm = 'pat@fund-x.example';

interface Harness extends DeskApp {
  upstream: FakeUpstream;
}

async function startHarness(t: TestContext, mode: FakeMode): Promise<Harness> {
  const desk = await startDeskApp(t);
  const upstream = await startFakeUpstream({ redirectUri: `${desk.server.issuer}/broker/oidc/callback` });
  t.after(() => upstream.close());
  upstream.mode = mode;
  upstream.person = { sub: 'fx-001', claims: { name: 'Pat Manager', email: realm, email_verified: true, preferred_username: 'pat' } };
  await desk.server.apply({
    regions: [{ id: 'eu', name: 'Europe' }],
    legal_entities: [
      { lei: brokerLei, name: 'Example Broker Ltd', jurisdiction: 'GB', home_region: 'eu', roles: ['broker'] },
      { lei: fundLei, name: 'Fund X Asset Management', jurisdiction: 'GB', home_region: 'eu', roles: ['asset_manager'], desks: [{ id: 'fund-x-pm', name: 'Portfolio management', product_classes: ['bond'] }] },
    ],
    identity_providers: [
      {
        id: 'fund-x',
        name: 'Fund X',
        issuer: upstream.issuer,
        client_id: upstream.clientId,
        client_secret: upstream.clientSecret,
        token_endpoint_auth_method: 'client_secret_basic',
        legal_entity: fundLei,
        desks: ['fund-x-pm'],
        domains: ['fund-x.example'],
        claims: { name: 'name', email: 'email', username: 'preferred_username' },
        allow_private_network: true,
      },
    ],
  });
  return { ...desk, upstream };
}

/**
 * The desk application's authorization request, Clearance's sign-in page, "Sign in through your
 * organisation", the fake upstream and back to Clearance's callback; returns where that ends.
 */
async function signIn(h: Harness, browser = new HttpBrowser(), extra: Record<string, string> = {}) {
  const url = client.buildAuthorizationUrl(h.config, {
    redirect_uri: h.app.redirectUri,
    scope: 'openid order:create',
    code_challenge: await client.calculatePKCECodeChallenge(client.randomPKCECodeVerifier()),
    code_challenge_method: 'S256',
    state: client.randomState(),
    nonce: client.randomNonce(),
    ...extra,
  });
  const page = await browser.follow(url, h.server.issuer);
  assert.equal(page.response.status, 200, 'the sign-in page');
  const html = await page.response.text();
  assert.match(html, /Sign in through your organisation/);
  const back = await followAll(browser, `${page.url.href}/upstream`, form({ csrf_token: csrfOf(html), realm }), (u) => u.href.startsWith(h.app.redirectUri));
  assert.ok(back.visited.some((u) => u.href.startsWith(`${h.upstream.issuer}/authorize`)), 'the browser went to the upstream');
  return back;
}

async function refusals(h: Harness) {
  const rows = await h.server.running.ctx.storage.db.selectFrom('audit_events').select(['event']).where('type', '=', 'upstream.sign_in_refused').orderBy('seq').execute();
  return rows.map((row) => JSON.parse(row.event) as { client?: string; decision?: { allow: boolean; reasons: string[] }; details: Record<string, unknown> });
}

/** The sign-in ended on Clearance's callback with the 401 page, no session, one refusal audited for `reason`, nobody provisioned. */
async function assertRefused(h: Harness, back: Awaited<ReturnType<typeof signIn>>, reason: string, detail?: RegExp) {
  assert.equal(back.url.pathname, '/broker/oidc/callback', 'it ends at Clearance’s callback');
  assert.equal(back.url.origin, new URL(h.server.issuer).origin);
  assert.equal(back.response.status, 401);
  assert.equal(back.response.headers.get('cache-control'), 'no-store');
  assert.match(back.response.headers.get('content-type') ?? '', /^text\/html/);
  assert.ok(!back.response.headers.getSetCookie().some((c) => c.startsWith('clearance_session=')), 'no session cookie');
  const html = await back.response.text();
  assert.match(html, /Your organisation’s sign-in could not be used/);
  assert.match(html, /could not be verified, so you are not signed in/);

  const events = await refusals(h);
  assert.equal(events.length, 1, 'one refusal audited');
  const [event] = events;
  assert.equal(event?.details.reason, reason);
  assert.ok(['invalid_id_token', 'invalid_response', 'upstream_error', 'token_request_failed'].includes(String(event?.details.reason)));
  assert.deepEqual(event?.decision, { allow: false, reasons: [reason] });
  assert.equal(event?.client, 'desk-app');
  assert.equal(event?.details.provider, 'fund-x');
  assert.equal(event?.details.issuer, h.upstream.issuer);
  if (detail) assert.match(String(event?.details.detail), detail);

  const db = h.server.running.ctx.storage.db;
  assert.equal((await db.selectFrom('user_links').select('user_id').execute()).length, 0, 'no link');
  assert.equal(await db.selectFrom('users').select('id').where('email', '=', realm).executeTakeFirst(), undefined, 'nobody provisioned');
  assert.equal((await db.selectFrom('audit_events').select('seq').where('type', '=', 'user.provisioned').execute()).length, 0);
  assert.equal((await db.selectFrom('audit_events').select('seq').where('type', '=', 'user.login_succeeded').execute()).length, 0);
  assert.deepEqual(h.upstream.problems, [], 'Clearance’s requests to the upstream were right');
}

test('an ID token signed by a key that is not in the upstream’s JWKS, under the published key’s kid, is refused', async (t) => {
  const h = await startHarness(t, 'foreign_key');
  const back = await signIn(h);
  assert.equal(h.upstream.tokenRequests, 1, 'the code was exchanged');
  await assertRefused(h, back, 'invalid_id_token', /JWT signature verification failed/);
});

test('an ID token signed by a key that is not in the upstream’s JWKS, under a kid it does not publish, is refused', async (t) => {
  const h = await startHarness(t, 'unknown_kid');
  await assertRefused(h, await signIn(h), 'invalid_id_token', /no applicable keys found/);
});

test('an unsigned ID token (alg none) is refused', async (t) => {
  const h = await startHarness(t, 'alg_none');
  const back = await signIn(h);
  assert.equal(h.upstream.tokenRequests, 1);
  await assertRefused(h, back, 'invalid_id_token', /unexpected JWT "alg" header parameter/);
});

test('an ID token for another audience than Clearance’s client is refused', async (t) => {
  const h = await startHarness(t, 'wrong_audience');
  await assertRefused(h, await signIn(h), 'invalid_id_token', /unexpected JWT "aud" \(audience\) claim value/);
});

test('an ID token with another nonce than the sign-in’s is refused', async (t) => {
  const h = await startHarness(t, 'wrong_nonce');
  await assertRefused(h, await signIn(h), 'invalid_id_token', /unexpected ID Token "nonce" claim value/);
});

test('an expired ID token is refused', async (t) => {
  const h = await startHarness(t, 'expired');
  await assertRefused(h, await signIn(h), 'invalid_id_token', /unexpected JWT "exp" \(expiration time\) claim value/);
});

test('an ID token issued 20 seconds in the future is accepted: the upstream’s clock may be a little ahead', async (t) => {
  const h = await startHarness(t, 'issued_in_future');
  const back = await signIn(h);
  assert.deepEqual(h.upstream.problems, []);
  if (back.response.status === 303) {
    assert.ok(back.response.headers.get('location')!.startsWith(h.app.redirectUri), 'on to the client');
  } else {
    assert.equal(back.response.status, 200, `the consent page at ${back.url.href}`);
    assert.match(await back.response.text(), /Approve/);
    assert.equal(back.url.origin, new URL(h.server.issuer).origin);
  }
  assert.equal((await refusals(h)).length, 0);
  const db = h.server.running.ctx.storage.db;
  const link = await db.selectFrom('user_links').selectAll().executeTakeFirstOrThrow();
  assert.deepEqual([link.issuer, link.subject, link.provider_id], [h.upstream.issuer, 'fx-001', 'fund-x']);
});

test('an ID token issued an hour in the future is refused: the skew allowed is bounded', async (t) => {
  const h = await startHarness(t, 'issued_far_in_future');
  await assertRefused(h, await signIn(h), 'invalid_id_token', /iat/);
});

test('an ID token whose iss is not the upstream’s declared issuer is refused', async (t) => {
  const h = await startHarness(t, 'wrong_issuer');
  await assertRefused(h, await signIn(h), 'invalid_id_token', /unexpected JWT "iss" \(issuer\) claim value/);
});

test('an ID token whose at_hash does not match the access token is refused', async (t) => {
  const h = await startHarness(t, 'wrong_at_hash');
  await assertRefused(h, await signIn(h), 'invalid_id_token', /at_hash does not match the access token/);
});

test('an authorization response naming another issuer (a mix-up, RFC 9207) is refused before the code is sent anywhere', async (t) => {
  const h = await startHarness(t, 'mixed_up_issuer');
  const back = await signIn(h);
  assert.equal(h.upstream.tokenRequests, 0, 'the code was not exchanged');
  await assertRefused(h, back, 'invalid_response', /unexpected "iss" \(issuer\) response parameter value/);
});

test('an authorization response without iss, from an upstream that declares it sends one (RFC 9207), is refused', async (t) => {
  const h = await startHarness(t, 'missing_response_iss');
  const back = await signIn(h);
  assert.equal(h.upstream.tokenRequests, 0, 'the code was not exchanged');
  await assertRefused(h, back, 'invalid_response', /"iss"/);
});

test('an upstream answering the authorization with access_denied is refused with a page', async (t) => {
  const h = await startHarness(t, 'access_denied');
  const back = await signIn(h);
  assert.equal(h.upstream.tokenRequests, 0);
  await assertRefused(h, back, 'upstream_error', /answered access_denied/);
});

test('an error_description shaped like a JWT is refused with a page, and the refusal is recorded without it', async (t) => {
  const h = await startHarness(t, 'token_shaped_error');
  await assertRefused(h, await signIn(h), 'upstream_error', /left out/);
});

test('an ID token whose sub is shaped like a JWT is refused: it could never be recorded as the person’s link', async (t) => {
  const h = await startHarness(t, 'token_shaped_sub');
  await assertRefused(h, await signIn(h), 'invalid_id_token', /sub is not/);
});

test('a token endpoint answering 400 invalid_grant is refused', async (t) => {
  const h = await startHarness(t, 'invalid_grant');
  const back = await signIn(h);
  assert.equal(h.upstream.tokenRequests, 1);
  await assertRefused(h, back, 'token_request_failed', /token endpoint answered invalid_grant/);
});

test('a relying party’s max_age is passed on, and the session’s auth_time is when the upstream says the person authenticated', async (t) => {
  const h = await startHarness(t, 'earlier_sign_in');
  const before = Math.floor(Date.now() / 1000);
  await signIn(h, new HttpBrowser(), { max_age: '300' });
  assert.equal(h.upstream.lastAuthorization?.get('max_age'), '300');
  assert.equal(h.upstream.lastAuthorization?.get('prompt'), null, 'max_age alone asks no prompt=login');
  const session = await h.server.running.ctx.storage.db.selectFrom('sessions').select(['auth_time']).where('assurance_provider', '=', 'fund-x').executeTakeFirstOrThrow();
  // Two minutes before this request, as the upstream said: not "now".
  assert.ok(Number(session.auth_time) <= before - 115 && Number(session.auth_time) >= before - 125, String(session.auth_time));
});

/** The sign-in ended on Clearance's callback with the "too long ago" page, no session, one `upstream.sign_in_refused` for `reason`. */
async function assertNotFresh(h: Harness, back: Awaited<ReturnType<typeof signIn>>, reason: string) {
  assert.equal(back.url.pathname, '/broker/oidc/callback', 'it ends at Clearance’s callback, not at the application');
  assert.equal(back.response.status, 401);
  assert.equal(back.response.headers.get('cache-control'), 'no-store');
  assert.ok(!back.response.headers.getSetCookie().some((c) => c.startsWith('clearance_session=')), 'no session cookie');
  assert.match(await back.response.text(), /sign in again/i);
  const events = await refusals(h);
  assert.equal(events.length, 1, 'one refusal audited');
  assert.deepEqual(events[0]?.decision, { allow: false, reasons: [reason] });
  assert.equal(events[0]?.details.provider, 'fund-x');
  const db = h.server.running.ctx.storage.db;
  assert.equal(await db.selectFrom('sessions').select('id').where('assurance_provider', '=', 'fund-x').executeTakeFirst(), undefined, 'no session');
  assert.equal((await db.selectFrom('audit_events').select('seq').where('type', '=', 'user.login_succeeded').execute()).length, 0);
  assert.deepEqual(h.upstream.problems, [], 'Clearance’s requests to the upstream were right');
}

test('an upstream sign-in older than the relying party’s max_age is refused: the upstream’s old session does not pass for a recent authentication', async (t) => {
  const h = await startHarness(t, 'earlier_sign_in');
  const back = await signIn(h, new HttpBrowser(), { max_age: '60' });
  assert.equal(h.upstream.lastAuthorization?.get('max_age'), '60', 'max_age was passed on');
  await assertNotFresh(h, back, 'authentication_too_old');
  const [event] = await refusals(h);
  assert.equal(event?.details.max_age, 60);
  assert.ok(Number(event?.details.upstream_auth_age) >= 115, 'the refusal says how old the upstream’s authentication was');
});

test('an upstream that says nothing of when the person authenticated is refused when max_age was asked (fail closed)', async (t) => {
  const h = await startHarness(t, 'no_auth_time');
  await assertNotFresh(h, await signIn(h, new HttpBrowser(), { max_age: '600' }), 'auth_time_missing');
});

test('an upstream sign-in within max_age goes on; one without auth_time is accepted when no max_age was asked', async (t) => {
  const h = await startHarness(t, 'earlier_sign_in');
  const back = await signIn(h, new HttpBrowser(), { max_age: '300' });
  assert.notEqual(back.url.pathname, '/broker/oidc/callback');
  assert.equal((await refusals(h)).length, 0);
  const other = await startHarness(t, 'no_auth_time');
  const signedIn = await signIn(other, new HttpBrowser());
  assert.notEqual(signedIn.url.pathname, '/broker/oidc/callback');
  assert.equal((await refusals(other)).length, 0);
});

test('max_age=0 is passed on with prompt=login (OIDC Core §3.1.2.1: the two are equivalent), and a sign-in just made at the upstream meets it', async (t) => {
  const h = await startHarness(t, 'good');
  const back = await signIn(h, new HttpBrowser(), { max_age: '0' });
  assert.equal(h.upstream.lastAuthorization?.get('max_age'), '0');
  assert.equal(h.upstream.lastAuthorization?.get('prompt'), 'login');
  assert.notEqual(back.url.pathname, '/broker/oidc/callback');
  assert.equal((await refusals(h)).length, 0);
});

test('a relying party’s prompt=login is passed on, and an upstream that answers from its own earlier session is refused: the fresh sign-in asked for is not an old one', async (t) => {
  const h = await startHarness(t, 'earlier_sign_in');
  const back = await signIn(h, new HttpBrowser(), { prompt: 'login' });
  assert.equal(h.upstream.lastAuthorization?.get('prompt'), 'login', 'prompt=login was passed on');
  assert.equal(h.upstream.lastAuthorization?.get('max_age'), null, 'no max_age was asked, none is made up');
  await assertNotFresh(h, back, 'authentication_not_renewed');
  const [event] = await refusals(h);
  assert.equal(event?.details.prompt, 'login');
  assert.equal(event?.details.max_age, undefined);
  assert.ok(Number(event?.details.upstream_auth_age) >= 115, 'the refusal says how old the upstream’s authentication was');
  assert.ok(Number(event?.details.upstream_auth_age) > Number(event?.details.sent_upstream_age), 'and that it was before the person was sent there');
});

test('an upstream that says nothing of when the person authenticated is refused when prompt=login was asked (fail closed)', async (t) => {
  const h = await startHarness(t, 'no_auth_time');
  await assertNotFresh(h, await signIn(h, new HttpBrowser(), { prompt: 'login' }), 'auth_time_missing');
  const [event] = await refusals(h);
  assert.equal(event?.details.prompt, 'login');
});

test('with prompt=login an authentication the upstream made after Clearance sent the person there goes on', async (t) => {
  const h = await startHarness(t, 'good');
  const back = await signIn(h, new HttpBrowser(), { prompt: 'login' });
  assert.equal(h.upstream.lastAuthorization?.get('prompt'), 'login');
  assert.notEqual(back.url.pathname, '/broker/oidc/callback');
  assert.equal((await refusals(h)).length, 0);
  assert.deepEqual(h.upstream.problems, []);
});

test('a person signed in here whom the relying party asks to sign in again (prompt=login) and who goes to the upstream is refused when the upstream answers from its earlier session', async (t) => {
  const h = await startHarness(t, 'earlier_sign_in');
  const browser = new HttpBrowser();
  // The first sign-in asks no freshness: the upstream's session stands, the person is signed in here.
  const first = await signIn(h, browser);
  assert.notEqual(first.url.pathname, '/broker/oidc/callback');
  const db = h.server.running.ctx.storage.db;
  const sessions = async () => (await db.selectFrom('sessions').select('id').where('assurance_provider', '=', 'fund-x').execute()).length;
  assert.equal(await sessions(), 1);
  // Clearance's own prompt=login shows its sign-in page again; the person takes their organisation's way.
  const url = client.buildAuthorizationUrl(h.config, {
    redirect_uri: h.app.redirectUri,
    scope: 'openid order:create',
    code_challenge: await client.calculatePKCECodeChallenge(client.randomPKCECodeVerifier()),
    code_challenge_method: 'S256',
    state: client.randomState(),
    nonce: client.randomNonce(),
    prompt: 'login',
  });
  const page = await browser.follow(url, h.server.issuer);
  assert.equal(page.response.status, 200);
  const html = await page.response.text();
  assert.match(html, /asks you to sign in again/);
  const back = await followAll(browser, `${page.url.href}/upstream`, form({ csrf_token: csrfOf(html), realm }), (u) => u.href.startsWith(h.app.redirectUri));
  assert.equal(h.upstream.lastAuthorization?.get('prompt'), 'login', 'the upstream was asked to sign the person in again');
  assert.equal(back.url.pathname, '/broker/oidc/callback');
  assert.equal(back.response.status, 401);
  assert.equal(back.response.headers.get('cache-control'), 'no-store');
  assert.match(await back.response.text(), /sign in again/i);
  const events = await refusals(h);
  assert.deepEqual(events.map((e) => e.details.reason), ['authentication_not_renewed']);
  assert.equal(await sessions(), 1, 'no second session');
  assert.equal((await db.selectFrom('audit_events').select('seq').where('type', '=', 'user.login_succeeded').execute()).length, 1, 'only the first sign-in succeeded');
});
