import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, test } from 'node:test';
import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { approveRequest, getGrant, listGrants, revokeGrant } from '../../src/authorization/consent.ts';
import { buildApp } from '../../src/http/app.ts';
import { readSession, startSession } from '../../src/identity/sessions.ts';
import { findUserByUsername } from '../../src/identity/users.ts';
import { pageCsp } from '../../src/ui/respond.ts';
import { assertOnlyPasskeyScripts, passkeyPageCsp } from '../helpers/pages.ts';
import { codeFlowFixture, orderDetail, type CodeFlowFixture, type Person } from '../authorization/fixture.ts';
import { peopleFixture } from '../identity/fixture.ts';
import { assertOAuthError } from './fixture.ts';
import { Jar } from './people-browser.ts';

interface Tokens {
  accessToken: string;
  refreshToken: string;
  grantId: string;
}

/** A code flow for `person` at `client`, redeemed: the tokens and the grant they came from. */
async function approvedWithTokens(f: CodeFlowFixture, person: Person, client = 'web-app', query: Record<string, string> = {}): Promise<Tokens> {
  const { code, pkce } = await f.authorizeAndApprove({ client, person, query: { scope: 'openid order:create', ...query } });
  const response = await f.redeem(client, code, pkce.verifier);
  assert.equal(response.statusCode, 200, response.body);
  const body = response.json() as { access_token: string; refresh_token?: string };
  const [grant] = await listGrants(f.ctx, { userId: person.userId, clientId: client, active: true });
  assert.ok(grant);
  return { accessToken: body.access_token, refreshToken: body.refresh_token ?? '', grantId: grant.id };
}

/** What the helpers need: a fixture, or a fastify app. */
type Injector = { inject(options: InjectOptions): Promise<LightMyRequestResponse> };

async function get(f: Injector, url: string, jar?: Jar): Promise<LightMyRequestResponse> {
  const response = await f.inject({ method: 'GET', url, headers: jar ? { cookie: jar.header() } : {} });
  jar?.update(response);
  return response;
}

async function post(f: Injector, url: string, form: string, jar?: Jar, headers: Record<string, string> = {}): Promise<LightMyRequestResponse> {
  const response = await f.inject({
    method: 'POST',
    url,
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...(jar ? { cookie: jar.header() } : {}), ...headers },
    payload: form,
  });
  jar?.update(response);
  return response;
}

/** Opens the account page in `jar`'s browser and returns the CSRF token of its forms. */
async function accountToken(f: Injector, jar: Jar, path = '/account'): Promise<string> {
  const page = await get(f, path, jar);
  assert.equal(page.statusCode, 200, page.body);
  const match = /name="csrf_token" value="([^"]+)"/.exec(page.body);
  assert.ok(match, 'the account page has a CSRF token');
  return match[1]!;
}

function assertPageHeaders(response: LightMyRequestResponse, csp: string, label: string): void {
  assert.match(String(response.headers['content-type']), /^text\/html; charset=utf-8/, label);
  assert.equal(response.headers['content-security-policy'], csp, label);
  assert.match(csp, /frame-ancestors 'none'/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
  assertCommonHeaders(response, label);
  // Scripts only on the account page of a signed-in person, and only the passkey scripts.
  if (csp === passkeyPageCsp('ownForm', 'http://localhost:9000')) assertOnlyPasskeyScripts(response.body);
  else assert.doesNotMatch(response.body, /<script|\sstyle=|\son[a-z]+=/i, `${label}: no script, no inline style or handler`);
}

function assertCommonHeaders(response: LightMyRequestResponse, label: string): void {
  assert.equal(response.headers['x-frame-options'], 'DENY', label);
  assert.equal(response.headers['referrer-policy'], 'no-referrer', label);
  assert.equal(response.headers['x-content-type-options'], 'nosniff', label);
  assert.equal(response.headers['cache-control'], 'no-store', label);
  assert.equal(response.headers['access-control-allow-origin'], undefined, label);
}

/** The grant ids whose Revoke forms a page shows. */
function revokeForms(body: string): string[] {
  return [...body.matchAll(/<form method="post" action="\/account\/grants\/([^"/]+)\/revoke">/g)].map((m) => decodeURIComponent(m[1]!));
}

describe('the account page', () => {
  test('lists only the signed-in person’s active grants, in the consent page’s words', async (t) => {
    const f = await codeFlowFixture(t);
    await f.apply({
      clients: [
        {
          client_id: 'odd-app',
          client_name: 'Desk <b>"&"</b>',
          kind: 'app',
          token_endpoint_auth_method: 'client_secret_basic',
          grant_types: ['authorization_code'],
          redirect_uris: ['https://app.example.com/cb'],
          scope: 'openid order:create',
        },
      ],
    });
    const alice = await f.signIn('alice');
    const bob = await f.signIn('bob');
    const desk = await approvedWithTokens(f, alice, 'web-app', { authorization_details: JSON.stringify([orderDetail]) });
    const odd = await approvedWithTokens(f, alice, 'odd-app');
    const gone = await approvedWithTokens(f, alice, 'native-app');
    await revokeGrant(f.ctx, gone.grantId, { actor: 'admin-ops', reason: 'test' });
    const bobs = await approvedWithTokens(f, bob, 'web-app');

    const jar = new Jar(alice.cookie);
    const page = await get(f, '/account', jar);
    assert.equal(page.statusCode, 200, page.body);
    assertPageHeaders(page, passkeyPageCsp('ownForm', f.issuer), 'account');
    assert.match(page.body, /<h1>Your account<\/h1>/);
    assert.match(page.body, /You are signed in as <strong>Alice Trader<\/strong> \(alice\)/);
    assert.deepEqual(revokeForms(page.body).sort(), [desk.grantId, odd.grantId].sort(), 'alice’s active grants only: not the revoked one, not bob’s');
    assert.ok(!page.body.includes(bobs.grantId) && !page.body.includes(gone.grantId));

    // The same sentences the consent page shows, under the client's name, with the date.
    assert.match(page.body, /<h3 id="grant-[^"]+">Trading Desk<\/h3>/);
    assert.match(page.body, /<li>Tell Trading Desk who you are \(your user identifier\) and when you signed in<\/li>/);
    assert.match(page.body, /<li>Create orders at Order API \(order:create\)<\/li>/);
    assert.match(page.body, /<li>Create buy orders in UST 10Y \(bond\) up to USD 10,000,000 on venue XNYS for account ACC-7781<\/li>/);
    assert.match(page.body, /<p>At: Order API<\/p>/);
    assert.match(page.body, /Allowed on <time datetime="\d{4}-\d\d-\d\dT[^"]+Z">\d{1,2} [A-Z][a-z]+ \d{4} at \d\d:\d\d UTC<\/time>/);
    assert.match(page.body, /Application identifier: web-app/);
    // Every value escaped.
    assert.match(page.body, /<h3 id="grant-[^"]+">Desk &lt;b&gt;&quot;&amp;&quot;&lt;\/b&gt;<\/h3>/);
    assert.doesNotMatch(page.body, /<b>/);
    assert.match(page.body, /<button type="submit" class="secondary" aria-label="Revoke Trading Desk">Revoke<\/button>/);
    assert.match(page.body, /<form method="post" action="\/account\/logout">/);
    assert.match(String(page.headers['set-cookie']), /^clearance_csrf=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Lax$/);

    const bobsPage = await get(f, '/account', new Jar(bob.cookie));
    assert.deepEqual(revokeForms(bobsPage.body), [bobs.grantId]);
  });

  test('says so when the person has allowed no application', async (t) => {
    const f = await codeFlowFixture(t);
    const page = await get(f, '/account', new Jar((await f.signIn('carol')).cookie));
    assert.equal(page.statusCode, 200);
    assert.match(page.body, /You have not allowed any application to act for you./);
    assert.deepEqual(revokeForms(page.body), []);
    assert.match(page.body, /action="\/account\/logout"/, 'signing out is still offered');
  });

  test('shows no list without a valid session: a page that says to sign in through an application, with no form and no redirect', async (t) => {
    const f = await codeFlowFixture(t);
    const alice = await f.signIn('alice');
    await approvedWithTokens(f, alice);
    const idle = await f.signIn('alice');
    f.clock.advance(31 * 60_000); // both sessions idle past their timeout…
    const fresh = await f.signIn('alice'); // …and a live one, so the test proves the cookie decides
    assert.ok(await readSession(f.ctx, fresh.cookie));
    for (const [label, cookie] of [
      ['no cookie', ''],
      ['an ended session', idle.cookie],
      ['a forged cookie', `clearance_session=${'A'.repeat(43)}`],
      ['a malformed cookie', 'clearance_session=<script>'],
    ] as const) {
      const page = await get(f, '/account', new Jar(cookie));
      assert.equal(page.statusCode, 200, label);
      assertPageHeaders(page, pageCsp.static, label);
      assert.equal(page.headers.location, undefined, label);
      assert.match(page.body, /You are not signed in to Clearance in this browser./, label);
      assert.match(page.body, /sign in through one of those applications/, label);
      assert.doesNotMatch(page.body, /<form|Trading Desk|Revoke/, label);
      assert.equal(page.headers['set-cookie'], undefined, `${label}: no CSRF secret without a session`);
    }
  });

  test('revokes the owner’s grant: 303 to /account, its refresh token then fails with invalid_grant and its access token is inactive', async (t) => {
    const f = await codeFlowFixture(t);
    const alice = await f.signIn('alice');
    const tokens = await approvedWithTokens(f, alice);
    assert.equal((await f.introspect('web-app', tokens.accessToken)).active, true);

    const jar = new Jar(alice.cookie);
    const csrf = await accountToken(f, jar);
    const response = await post(f, `/account/grants/${tokens.grantId}/revoke`, new URLSearchParams({ csrf_token: csrf }).toString(), jar, { origin: new URL(f.issuer).origin });
    assert.equal(response.statusCode, 303, response.body);
    assert.equal(response.headers.location, `${f.issuer}/account`);
    assert.equal(response.body, '');
    assertCommonHeaders(response, 'revoke 303');

    const grant = (await getGrant(f.ctx, tokens.grantId))!;
    assert.notEqual(grant.revokedAt, null);
    assert.equal(grant.revokedBy, alice.userId);
    assert.equal(grant.revokeReason, 'revoked by the user');
    assertOAuthError(await f.refresh('web-app', tokens.refreshToken), 400, 'invalid_grant');
    assert.equal((await f.introspect('web-app', tokens.accessToken)).active, false);
    const events = await f.auditEvents('consent.revoked');
    assert.equal(events.length, 1);
    assert.equal(events[0]!.actor, alice.userId);
    assert.equal(events[0]!.subject, alice.userId);
    assert.equal(events[0]!.client, 'web-app');
    assert.equal(events[0]!.requestId, response.headers['x-request-id']);
    assert.deepEqual(events[0]!.details, { grant_id: tokens.grantId, reason: 'revoked by the user' });

    const after = await get(f, '/account', jar);
    assert.deepEqual(revokeForms(after.body), []);
    assert.ok(await readSession(f.ctx, jar.header()), 'revoking a grant does not sign the person out');
    // The application has to ask again.
    const again = await f.authorize(f.request('web-app'), { cookie: alice.cookie });
    assert.ok(again.location?.pathname.startsWith('/interaction/'));
  });

  test('answers another person’s grant, an unknown, a malformed and a revoked grant id with a 404 page, and changes nothing', async (t) => {
    const f = await codeFlowFixture(t);
    const alice = await f.signIn('alice');
    const bob = await f.signIn('bob');
    const bobs = await approvedWithTokens(f, bob);
    const old = await approvedWithTokens(f, alice, 'code-only');
    await revokeGrant(f.ctx, old.grantId, { actor: 'admin-ops', reason: 'test' });
    const jar = new Jar(alice.cookie);
    const csrf_token = await accountToken(f, jar);
    for (const [label, id] of [
      ['another person’s grant', bobs.grantId],
      ['an unknown grant', randomUUID()],
      ['a revoked grant', old.grantId],
      ['a malformed id', '%3Cscript%3E'],
      ['an over-long id', 'a'.repeat(65)],
    ] as const) {
      const response = await post(f, `/account/grants/${id}/revoke`, new URLSearchParams({ csrf_token }).toString(), jar);
      assert.equal(response.statusCode, 404, label);
      assertPageHeaders(response, pageCsp.static, label);
      assert.match(response.body, /No such permission/, label);
      assert.match(response.body, /Nothing was changed./, label);
      assert.doesNotMatch(response.body, /<script/, label);
    }
    const bobsGrant = (await getGrant(f.ctx, bobs.grantId))!;
    assert.equal(bobsGrant.revokedAt, null, 'bob’s grant is unchanged');
    assert.equal((await getGrant(f.ctx, old.grantId))!.revokedBy, 'admin-ops', 'the revoked one keeps who revoked it');
    assert.equal((await f.auditEvents('consent.revoked')).length, 1, 'only the setup’s revocation');
    assert.equal((await f.introspect('web-app', bobs.accessToken)).active, true);
    assert.equal((await f.refresh('web-app', bobs.refreshToken)).statusCode, 200);
  });

  test('refuses a revoke without a session, without a valid CSRF token, or from a foreign origin: 403, nothing changes', async (t) => {
    const f = await codeFlowFixture(t);
    const alice = await f.signIn('alice');
    const tokens = await approvedWithTokens(f, alice);
    const jar = new Jar(alice.cookie);
    const token = await accountToken(f, jar);
    // The same person in another browser: another CSRF secret and another session.
    const otherBrowser = new Jar((await f.signIn('alice')).cookie);
    const otherToken = await accountToken(f, otherBrowser);
    // This browser's CSRF secret with another of the person's sessions: a token of the first session is refused.
    const sameSecretOtherSession = new Jar(jar.header());
    sameSecretOtherSession.set((await f.signIn('alice')).cookie);
    const noCsrfCookie = new Jar(alice.cookie);
    const noSession = new Jar(jar.header());
    noSession.cookies.delete('clearance_session');
    const path = `/account/grants/${tokens.grantId}/revoke`;
    const attempts: [string, string, Jar, Record<string, string>?][] = [
      ['no token', '', jar],
      ['an empty token', 'csrf_token=', jar],
      ['a forged token', `csrf_token=${'A'.repeat(43)}`, jar],
      ['a truncated token', `csrf_token=${token.slice(1)}`, jar],
      ['the token twice', `csrf_token=${token}&csrf_token=${token}`, jar],
      ['no CSRF cookie', `csrf_token=${token}`, noCsrfCookie],
      ['another browser’s token', `csrf_token=${otherToken}`, jar],
      ['a token of another session', `csrf_token=${token}`, sameSecretOtherSession],
      ['no session', `csrf_token=${token}`, noSession],
      ['a cross-site origin', `csrf_token=${token}`, jar, { origin: 'https://evil.example' }],
    ];
    for (const [label, form, browser, headers] of attempts) {
      const response = await post(f, path, form, browser, headers);
      assert.equal(response.statusCode, 403, label);
      assertPageHeaders(response, pageCsp.static, label);
      assert.match(response.body, /nothing was changed/, label);
    }
    const json = await f.inject({ method: 'POST', url: path, headers: { cookie: jar.header(), 'content-type': 'application/json' }, payload: JSON.stringify({ csrf_token: token }) });
    assert.equal(json.statusCode, 403, 'a JSON body is not a form');
    assert.equal((await getGrant(f.ctx, tokens.grantId))!.revokedAt, null);
    assert.equal((await f.auditEvents('consent.revoked')).length, 0);
    assert.equal((await f.introspect('web-app', tokens.accessToken)).active, true);
    // The same browser, with its token and Origin: null (what no-referrer pages send), succeeds.
    const ok = await post(f, path, `csrf_token=${token}`, jar, { origin: 'null' });
    assert.equal(ok.statusCode, 303);
  });

  test('signs out with the CSRF token: the session ends, the cookie is cleared, 303 to /account', async (t) => {
    const f = await codeFlowFixture(t);
    const alice = await f.signIn('alice');
    const jar = new Jar(alice.cookie);
    const token = await accountToken(f, jar);
    const refused = await post(f, '/account/logout', 'csrf_token=nope', jar);
    assert.equal(refused.statusCode, 403);
    assertPageHeaders(refused, pageCsp.static, 'refused sign-out');
    const foreign = await post(f, '/account/logout', `csrf_token=${token}`, jar, { origin: 'https://evil.example' });
    assert.equal(foreign.statusCode, 403);
    assert.ok(await readSession(f.ctx, alice.cookie), 'still signed in');

    const response = await post(f, '/account/logout', `csrf_token=${token}`, jar);
    assert.equal(response.statusCode, 303);
    assert.equal(response.headers.location, `${f.issuer}/account`);
    assertCommonHeaders(response, 'sign-out 303');
    assert.match(String(response.headers['set-cookie']), /^clearance_session=; .*Max-Age=0/);
    assert.equal(await readSession(f.ctx, alice.cookie), undefined);
    const [event] = await f.auditEvents('user.logged_out');
    assert.equal(event!.actor, alice.userId);
    const page = await get(f, '/account', jar);
    assert.match(page.body, /You are not signed in/);

    // Signing out again, with no session left, just goes back to the page.
    const again = await post(f, '/account/logout', '', new Jar(alice.cookie));
    assert.equal(again.statusCode, 303);
    assert.equal(again.headers.location, `${f.issuer}/account`);
  });

  test('lives under the issuer’s path, with __Host- CSRF cookie and absolute 303s on an https issuer', async (t) => {
    const issuer = 'https://id.broker.example/idp';
    const f = await peopleFixture(t, { env: { CLEARANCE_ISSUER: issuer } });
    await f.apply({
      resource_servers: [{ identifier: 'https://orders.example.com', name: 'Order API', scopes: ['order:create'] }],
      clients: [
        {
          client_id: 'trading-ui',
          client_name: 'Trading UI',
          kind: 'app',
          token_endpoint_auth_method: 'none',
          grant_types: ['authorization_code'],
          redirect_uris: ['https://ui.example.com/callback'],
          scope: 'openid order:create',
        },
      ],
    });
    const app = buildApp(f.ctx);
    t.after(() => app.close());
    const alice = (await findUserByUsername(f.ctx, 'alice'))!;
    const grant = await approveRequest(f.ctx, alice.id, {
      clientId: 'trading-ui',
      redirectUri: 'https://ui.example.com/callback',
      codeChallenge: 'x'.repeat(43),
      resource: 'https://orders.example.com',
      scopes: ['order:create'],
      oidcScopes: ['openid'],
      authorizationDetails: [],
      prompt: [],
      acrValues: [],
      via: 'parameters',
    });
    const started = await startSession(f.ctx, { userId: alice.id, acr: 'urn:clearance:acr:pwd', amr: ['pwd'], cookieHeader: undefined });
    assert.match(started.setCookie, /Path=\/idp;/);
    const inject: Injector = app;
    assert.equal((await get(inject, '/account')).statusCode, 404, 'not outside the issuer’s path');
    const jar = new Jar(started.setCookie.split(';')[0]!);
    const page = await get(inject, '/idp/account', jar);
    assert.equal(page.statusCode, 200);
    assert.match(String(page.headers['set-cookie']), /^__Host-clearance_csrf=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Lax; Secure$/);
    assert.match(page.body, new RegExp(`<form method="post" action="/idp/account/grants/${grant.id}/revoke">`));
    assert.match(page.body, /<form method="post" action="\/idp\/account\/logout">/);
    assert.match(page.body, /<link rel="stylesheet" href="\/idp\/assets\/clearance\.css\?v=/);
    const token = /name="csrf_token" value="([^"]+)"/.exec(page.body)![1]!;
    const revoked = await post(inject, `/idp/account/grants/${grant.id}/revoke`, `csrf_token=${token}`, jar, { origin: 'https://id.broker.example' });
    assert.equal(revoked.statusCode, 303, revoked.body);
    assert.equal(revoked.headers.location, `${issuer}/account`);
    assert.notEqual((await getGrant(f.ctx, grant.id))!.revokedAt, null);
  });
});
