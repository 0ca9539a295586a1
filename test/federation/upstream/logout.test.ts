import assert from 'node:assert/strict';
import { test } from 'node:test';
import { importJWK, SignJWT, generateKeyPair, type CryptoKey } from 'jose';
import * as client from 'openid-client';
import { HttpBrowser } from '../../helpers/http-browser.ts';
import { approve, authorizationRequest, followAll, form, signInThroughOrganisation, startBrokering, upstreamAcr, type BrokeringHarness } from './fixture.ts';

// Logout across the federation (docs/identity-brokering.md "Logout"): the fund's OpenID Provider
// (node-oidc-provider) ends its session and tells Clearance over the back channel (OpenID Connect
// Back-Channel Logout 1.0); a relying party's sign-out at Clearance goes on to the fund's own
// sign-out (RP-Initiated Logout 1.0) and back.

const backChannelEvent = 'http://schemas.openid.net/event/backchannel-logout';

/** Petra signs in through the fund (in a browser of her own) and gets her tokens; returns her browser, Clearance's sub, her ID token and her refresh token (when the desk may have one). */
async function signedInThroughFund(h: BrokeringHarness) {
  h.upstream.nextSignIn = { sub: 'pm-001', claims: { email: 'petra@fund-a.example' }, acr: upstreamAcr.mfa, amr: ['pwd', 'otp', 'mfa'] };
  const browser = new HttpBrowser();
  const request = authorizationRequest(h);
  const callback = await approve(browser, await signInThroughOrganisation(h, browser, await request.url(), 'petra@fund-a.example'));
  const tokens = await client.authorizationCodeGrant(h.config, callback, { pkceCodeVerifier: request.verifier, expectedState: request.state, expectedNonce: request.nonce });
  return { browser, sub: tokens.claims()!.sub, idToken: tokens.id_token!, refreshToken: tokens.refresh_token };
}

/** Signs out at Clearance (RP-initiated, from the desk): the Clearance session ends; the browser is not taken on to the fund, so the fund's session stays. */
async function signOutAtClearance(h: BrokeringHarness, browser: HttpBrowser, idToken: string): Promise<void> {
  const out = await browser.fetch(`${h.server.issuer}/logout?id_token_hint=${idToken}`);
  assert.equal(out.status, 303, 'on to the fund, which the browser does not follow');
}

const refused = (error: { error?: string }) => error.error === 'invalid_grant';

async function eventsOf(h: BrokeringHarness, type: string) {
  const rows = await h.server.running.ctx.storage.db.selectFrom('audit_events').select(['event']).where('type', '=', type).orderBy('seq').execute();
  return rows.map((row) => JSON.parse(row.event) as { actor?: string; subject?: string; details: Record<string, unknown> });
}

/** Signs out at the fund's own OpenID Provider in this browser (its confirmation form), as the person would there. */
async function signOutAtTheFund(h: BrokeringHarness, browser: HttpBrowser): Promise<void> {
  const page = await browser.fetch(`${h.upstream.issuer}/session/end?client_id=${h.upstream.clientId}`);
  assert.equal(page.status, 200, 'the fund asks to confirm');
  const html = await page.text();
  const action = /action="([^"]+)"/.exec(html)![1]!;
  const xsrf = /name="xsrf" value="([^"]+)"/.exec(html)![1]!;
  const done = await browser.fetch(new URL(action, h.upstream.issuer), form({ xsrf, logout: 'yes' }));
  assert.ok(done.status === 303 || done.status === 302 || done.status === 200, `the fund signed out: ${done.status}`);
}

async function logoutToken(h: BrokeringHarness, claims: Record<string, unknown>, options: { key?: CryptoKey; typ?: string } = {}): Promise<string> {
  const key = options.key ?? ((await importJWK(h.upstream.signingJwk, 'ES256')) as CryptoKey);
  return new SignJWT({ events: { [backChannelEvent]: {} }, jti: crypto.randomUUID(), ...claims })
    .setProtectedHeader({ alg: 'ES256', kid: 'upstream-1', typ: options.typ ?? 'logout+jwt' })
    .setIssuer(h.upstream.issuer)
    .setAudience(h.upstream.clientId)
    .setIssuedAt(typeof claims.iat === 'number' ? claims.iat : undefined)
    .sign(key);
}

function postLogout(h: BrokeringHarness, token: string): Promise<Response> {
  return fetch(`${h.server.issuer}/broker/oidc/backchannel-logout`, form({ logout_token: token }));
}

test('the fund’s sign-out reaches Clearance over the back channel: the person’s sessions end and their tokens with them', async (t) => {
  const h = await startBrokering(t);
  const { browser, sub } = await signedInThroughFund(h);
  const db = h.server.running.ctx.storage.db;
  const before = await db.selectFrom('sessions').selectAll().where('user_id', '=', sub).executeTakeFirstOrThrow();
  assert.ok(before.upstream_sid, 'the session keeps the fund’s session id');
  await signOutAtTheFund(h, browser);
  // node-oidc-provider posts the logout token, and waits for Clearance's answer, before it answers the browser.
  const after = await db.selectFrom('sessions').selectAll().where('id', '=', before.id).executeTakeFirstOrThrow();
  assert.equal(after.end_reason, 'signed_out_everywhere');
  const person = await db.selectFrom('users').select('tokens_valid_after').where('id', '=', sub).executeTakeFirstOrThrow();
  assert.ok(person.tokens_valid_after !== null, 'every access token issued until now is dead');
  const [event] = await eventsOf(h, 'user.signed_out_everywhere');
  assert.equal(event?.subject, sub);
  assert.equal(event?.actor, 'provider:fund-a');
  assert.equal(event?.details.via, 'upstream-logout');
  assert.equal(event?.details.upstream_sid, before.upstream_sid);
});

test('a logout token by sub alone ends that person’s sessions through the fund', async (t) => {
  const h = await startBrokering(t);
  const { sub } = await signedInThroughFund(h);
  const answer = await postLogout(h, await logoutToken(h, { sub: 'pm-001' }));
  assert.equal(answer.status, 200);
  assert.equal(answer.headers.get('cache-control'), 'no-store');
  const session = await h.server.running.ctx.storage.db.selectFrom('sessions').select('end_reason').where('user_id', '=', sub).executeTakeFirstOrThrow();
  assert.equal(session.end_reason, 'signed_out_everywhere');
});

test('a logout token by sub alone reaches a person whose Clearance session already ended: the refresh token from that sign-in stops working', async (t) => {
  const h = await startBrokering(t, { refreshTokens: true });
  const { browser, sub, idToken, refreshToken } = await signedInThroughFund(h);
  assert.ok(refreshToken, 'the desk holds a refresh token');
  await signOutAtClearance(h, browser, idToken);
  const db = h.server.running.ctx.storage.db;
  assert.equal((await db.selectFrom('sessions').select('end_reason').where('user_id', '=', sub).executeTakeFirstOrThrow()).end_reason, 'logout', 'no Clearance session of hers is live');
  const answer = await postLogout(h, await logoutToken(h, { sub: 'pm-001' }));
  assert.equal(answer.status, 200);
  // Back-Channel Logout 1.0 §2.4: without sid, every session of the End-User; §2.7: their refresh tokens.
  await assert.rejects(client.refreshTokenGrant(h.config, refreshToken!), refused);
  const [event] = await eventsOf(h, 'user.signed_out_everywhere');
  assert.equal(event?.subject, sub);
  assert.equal(event?.actor, 'provider:fund-a');
  assert.equal(event?.details.provider, 'fund-a');
  assert.equal(event?.details.via, 'upstream-logout');
  assert.equal(event?.details.refresh_tokens_revoked, 1);
});

test('a logout token whose sid is longer than a session keeps matches the part the session kept', async (t) => {
  const h = await startBrokering(t);
  const { sub } = await signedInThroughFund(h);
  const db = h.server.running.ctx.storage.db;
  const session = await db.selectFrom('sessions').selectAll().where('user_id', '=', sub).executeTakeFirstOrThrow();
  // As a sign-in whose ID token carried a 300-character sid leaves it: its first 255 characters.
  const long = `${session.upstream_sid}${'s'.repeat(300)}`;
  await db.updateTable('sessions').set({ upstream_sid: long.slice(0, 255) }).where('id', '=', session.id).execute();
  assert.equal((await postLogout(h, await logoutToken(h, { sid: long }))).status, 200);
  assert.equal((await db.selectFrom('sessions').select('end_reason').where('id', '=', session.id).executeTakeFirstOrThrow()).end_reason, 'signed_out_everywhere');
});

test('a logout token by sid alone naming a session that already ended (the echo of her own sign-out) ends nothing, not even her other session through the fund', async (t) => {
  const h = await startBrokering(t, { refreshTokens: true });
  const first = await signedInThroughFund(h);
  const db = h.server.running.ctx.storage.db;
  const ended = await db.selectFrom('sessions').selectAll().where('user_id', '=', first.sub).executeTakeFirstOrThrow();
  await signOutAtClearance(h, first.browser, first.idToken);
  // Petra signs in again, in another browser: another session at the fund, another one here.
  const second = await signedInThroughFund(h);
  const live = await db.selectFrom('sessions').selectAll().where('user_id', '=', second.sub).where('ended_at', 'is', null).executeTakeFirstOrThrow();
  assert.notEqual(live.upstream_sid, ended.upstream_sid, 'two sessions at the fund');
  const answer = await postLogout(h, await logoutToken(h, { sid: ended.upstream_sid }));
  assert.equal(answer.status, 200);
  assert.equal((await db.selectFrom('sessions').select('ended_at').where('id', '=', live.id).executeTakeFirstOrThrow()).ended_at, null, 'the live session stays');
  assert.ok((await client.refreshTokenGrant(h.config, second.refreshToken!)).access_token, 'and its refresh token works');
  assert.deepEqual(await eventsOf(h, 'user.signed_out_everywhere'), []);
});

test('a logout token by a sid or a sub the fund never gave here is answered 200 and ends nothing', async (t) => {
  const h = await startBrokering(t, { refreshTokens: true });
  const { sub, refreshToken } = await signedInThroughFund(h);
  const db = h.server.running.ctx.storage.db;
  for (const claims of [{ sid: 'sid-unknown' }, { sub: 'pm-unknown' }]) {
    const answer = await postLogout(h, await logoutToken(h, claims));
    assert.equal(answer.status, 200, JSON.stringify(claims));
    assert.equal(answer.headers.get('cache-control'), 'no-store');
    assert.equal((await db.selectFrom('sessions').select('ended_at').where('user_id', '=', sub).executeTakeFirstOrThrow()).ended_at, null);
    assert.ok((await client.refreshTokenGrant(h.config, refreshToken!)).access_token, 'Petra’s refresh token works');
  }
  assert.deepEqual(await eventsOf(h, 'user.signed_out_everywhere'), []);
  assert.deepEqual(await eventsOf(h, 'upstream.logout_refused'), []);
});

test('a logout token that is forged, replayed, not a logout, carries a nonce, names nobody or is stale is refused with 400 and audited', async (t) => {
  const h = await startBrokering(t);
  const { sub } = await signedInThroughFund(h);
  const { privateKey: stranger } = await generateKeyPair('ES256');
  const replayed = await logoutToken(h, { sub: 'someone-else' });
  assert.equal((await postLogout(h, replayed)).status, 200, 'first use');
  const cases: [string, string][] = [
    ['forged', await logoutToken(h, { sub: 'pm-001' }, { key: stranger })],
    ['replayed', replayed],
    ['not a logout', await new SignJWT({ sub: 'pm-001', jti: crypto.randomUUID(), events: { 'https://example.com/other': {} } }).setProtectedHeader({ alg: 'ES256', kid: 'upstream-1', typ: 'logout+jwt' }).setIssuer(h.upstream.issuer).setAudience(h.upstream.clientId).setIssuedAt().sign((await importJWK(h.upstream.signingJwk, 'ES256')) as CryptoKey)],
    ['with a nonce', await logoutToken(h, { sub: 'pm-001', nonce: 'n' })],
    ['naming nobody', await logoutToken(h, {})],
    ['stale', await logoutToken(h, { sub: 'pm-001', iat: Math.floor(Date.now() / 1000) - 3600 })],
    ['an ID token', await logoutToken(h, { sub: 'pm-001' }, { typ: 'JWT+id' })],
    ['not a JWT', 'not-a-jwt'],
  ];
  for (const [what, token] of cases) {
    const answer = await postLogout(h, token);
    assert.equal(answer.status, 400, what);
    assert.equal(((await answer.json()) as { error?: string }).error, 'invalid_request', what);
  }
  assert.equal((await fetch(`${h.server.issuer}/broker/oidc/backchannel-logout`, form({}))).status, 400, 'no logout_token');
  assert.equal((await eventsOf(h, 'upstream.logout_refused')).length, cases.length + 1);
  const session = await h.server.running.ctx.storage.db.selectFrom('sessions').select('ended_at').where('user_id', '=', sub).executeTakeFirstOrThrow();
  assert.equal(session.ended_at, null, 'nothing refused ended anything');
});

test('signing out at Clearance from a session the fund started goes on to the fund’s sign-out, then back to Clearance', async (t) => {
  const h = await startBrokering(t);
  const { browser, idToken } = await signedInThroughFund(h);
  const out = await browser.fetch(`${h.server.issuer}/logout?id_token_hint=${idToken}`);
  assert.equal(out.status, 303);
  const onward = new URL(out.headers.get('location')!);
  assert.equal(onward.origin, new URL(h.upstream.issuer).origin, 'on to the fund');
  assert.equal(onward.searchParams.get('post_logout_redirect_uri'), `${h.server.issuer}/broker/oidc/logged-out`);
  const db = h.server.running.ctx.storage.db;
  assert.equal((await db.selectFrom('sessions').select('end_reason').executeTakeFirstOrThrow()).end_reason, 'logout', 'the Clearance session ended first');
  // At the fund: its confirmation, then back to Clearance's landing.
  const page = await browser.fetch(onward);
  const html = await page.text();
  const action = /action="([^"]+)"/.exec(html)![1]!;
  const xsrf = /name="xsrf" value="([^"]+)"/.exec(html)![1]!;
  const back = await followAll(browser, new URL(action, h.upstream.issuer).href, form({ xsrf, logout: 'yes' }), () => false);
  assert.equal(back.url.href.split('?')[0], `${h.server.issuer}/broker/oidc/logged-out`);
  assert.equal(back.response.status, 200);
  assert.match(await back.response.text(), /signed out of Clearance and of your organisation/);
  // A landing whose state was not made here is refused.
  const forged = await browser.fetch(`${h.server.issuer}/broker/oidc/logged-out?state=e30.AAAA`);
  assert.equal(forged.status, 400);
});
