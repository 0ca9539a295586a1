import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test, type TestContext } from 'node:test';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import type { Authentication, ConsentRequest, Interaction, NextStep } from '../../src/authorization/contract.ts';
import type { Context } from '../../src/context.ts';
import { interaction, interactionEndpoint } from '../../src/endpoints/interaction/index.ts';
import type { InteractionFlow } from '../../src/endpoints/interaction/flow.ts';
import { buildApp, endpoints } from '../../src/http/app.ts';
import { readSession } from '../../src/identity/sessions.ts';
import { findUserByUsername } from '../../src/identity/users.ts';
import { pageCsp } from '../../src/ui/respond.ts';
import { assertOnlyPasskeyScripts, passkeyPageCsp } from '../helpers/pages.ts';
import { alicePassword, bobPassword, peopleFixture, type PeopleFixture } from '../identity/fixture.ts';
import { argon2Stats } from '../../src/identity/passwords.ts';

/** The protocol side's interactions, as a test double: login until someone is present, then consent once. */
class FakeFlow implements InteractionFlow {
  readonly interactions = new Map<string, Interaction>();
  readonly recorded: { id: string; auth: Authentication }[] = [];
  readonly decisions: { id: string; userId: string; approved: boolean }[] = [];
  needsConsent = true;
  /** Ask for a login even when someone is present (as prompt=login does). */
  forceLogin = false;
  /** The interaction ends between its read and the login's record of it. */
  endsBeforeLogin = false;
  consent: ConsentRequest = {
    clientId: 'trading-ui',
    clientName: 'Trading <UI> & Co',
    resources: [{ identifier: 'https://orders.example.com', name: 'Order API', scopes: ['order:create'] }],
    authorizationDetails: [],
    lines: ['Place orders at Order API', 'Buy up to <b>1,000,000</b> EUR of "BTC-PERP"'],
  };
  #next = 0;

  create(clock: { now(): number }, clientId = 'trading-ui', ttlSeconds = 600): string {
    const id = `ia_${++this.#next}_x`;
    this.interactions.set(id, { id, clientId, expiresAt: Math.floor(clock.now() / 1000) + ttlSeconds });
    return id;
  }
  async loadInteraction(_ctx: Context, id: string) {
    return this.interactions.get(id);
  }
  async nextStep(_ctx: Context, interaction: Interaction, session: Authentication | undefined): Promise<NextStep> {
    const id = interaction.id;
    const found = this.interactions.get(id);
    if (!found) throw new Error('unknown');
    if (!(found.authentication ?? session)) return { step: 'login', reason: 'no_session' };
    if (this.forceLogin && !found.authentication) return { step: 'login', reason: 'prompt_login' };
    if (this.needsConsent && !this.decisions.some((d) => d.id === id)) return { step: 'consent', consent: this.consent };
    return { step: 'done' };
  }
  async recordAuthentication(_ctx: Context, { id }: Interaction, auth: Authentication) {
    if (this.endsBeforeLogin) return false;
    this.interactions.get(id)!.authentication = auth;
    this.recorded.push({ id, auth });
    return true;
  }
  async decideConsent(_ctx: Context, { id }: Interaction, auth: Authentication, approved: boolean) {
    this.decisions.push({ id, userId: auth.userId, approved });
  }
  readonly declined: string[] = [];
  async declineAuthentication(_ctx: Context, { id }: Interaction) {
    this.declined.push(id);
    return true;
  }
}

/** A browser's cookies: updated from Set-Cookie, sent as one Cookie header. */
class Jar {
  readonly cookies = new Map<string, string>();
  update(response: LightMyRequestResponse): void {
    const header = response.headers['set-cookie'];
    for (const line of Array.isArray(header) ? header : header ? [header] : []) {
      const [pair] = line.split(';');
      const eq = pair!.indexOf('=');
      const name = pair!.slice(0, eq);
      if (/Max-Age=0/.test(line)) this.cookies.delete(name);
      else this.cookies.set(name, pair!.slice(eq + 1));
    }
  }
  header(): string {
    return [...this.cookies].map(([n, v]) => `${n}=${v}`).join('; ');
  }
}

interface Harness extends PeopleFixture {
  app: FastifyInstance;
  flow: FakeFlow;
  issuer: string;
  get(path: string, jar?: Jar): Promise<LightMyRequestResponse>;
  post(path: string, form: Record<string, string>, jar?: Jar, headers?: Record<string, string>): Promise<LightMyRequestResponse>;
  /** GETs the interaction page and returns the CSRF token of its form. */
  token(id: string, jar: Jar): Promise<string>;
  /** Signs in through the pages; returns the POST's response. */
  signIn(id: string, jar: Jar, username?: string, password?: string): Promise<LightMyRequestResponse>;
}

async function harness(t: TestContext, env: NodeJS.ProcessEnv = {}): Promise<Harness> {
  const f = await peopleFixture(t, { env });
  await f.apply({
    resource_servers: [{ identifier: 'https://orders.example.com', name: 'Order API', scopes: ['order:create'] }],
    clients: [
      {
        client_id: 'trading-ui',
        client_name: 'Trading <UI> & Co',
        kind: 'app',
        token_endpoint_auth_method: 'none',
        grant_types: ['authorization_code'],
        redirect_uris: ['https://ui.example.com/callback'],
        scope: 'openid order:create',
      },
    ],
  });
  const flow = new FakeFlow();
  const app = buildApp(f.ctx, [...endpoints.filter((e) => e !== interaction), interactionEndpoint(flow)]);
  t.after(() => app.close());
  const h: Harness = {
    ...f,
    app,
    flow,
    issuer: f.ctx.config.issuer,
    async get(path, jar) {
      const response = await app.inject({ method: 'GET', url: path, headers: jar ? { cookie: jar.header() } : {} });
      jar?.update(response);
      return response;
    },
    async post(path, form, jar, headers = {}) {
      const response = await app.inject({
        method: 'POST',
        url: path,
        headers: { 'content-type': 'application/x-www-form-urlencoded', ...(jar ? { cookie: jar.header() } : {}), ...headers },
        payload: new URLSearchParams(form).toString(),
      });
      jar?.update(response);
      return response;
    },
    async token(id, jar) {
      const page = await h.get(`/interaction/${id}`, jar);
      const match = /name="csrf_token" value="([^"]+)"/.exec(page.body);
      assert.ok(match, `no CSRF token on the page (${page.statusCode})`);
      return match[1]!;
    },
    async signIn(id, jar, username = 'alice', password = alicePassword) {
      const csrf_token = await h.token(id, jar);
      return h.post(`/interaction/${id}/login`, { csrf_token, username, password }, jar);
    },
  };
  return h;
}

function assertPageHeaders(response: LightMyRequestResponse, csp: string, label: string): void {
  assert.match(String(response.headers['content-type']), /^text\/html; charset=utf-8/, label);
  assert.equal(response.headers['content-security-policy'], csp, label);
  assert.match(csp, /frame-ancestors 'none'/);
  // Scripts only on the sign-in page, and only the passkey scripts by their exact URLs.
  if (csp !== passkeyPageCsp('form', 'http://localhost:9000')) assert.doesNotMatch(csp, /script-src/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|script-src[^;]*'self'/);
  assert.equal(response.headers['x-frame-options'], 'DENY', label);
  assert.equal(response.headers['referrer-policy'], 'no-referrer', label);
  assert.equal(response.headers['x-content-type-options'], 'nosniff', label);
  assert.equal(response.headers['cache-control'], 'no-store', label);
  assert.equal(response.headers['access-control-allow-origin'], undefined, label);
}

/** The page without what legitimately differs between two renderings (the typed username). */
function normalized(body: string): string {
  return body.replace(/(id="username"[^>]* value=")[^"]*"/, '$1"');
}

/** A good authorization request of trading-ui (PKCE S256), as /authorize query parameters. */
function tradingUiRequest(): URLSearchParams {
  return new URLSearchParams({
    response_type: 'code',
    client_id: 'trading-ui',
    redirect_uri: 'https://ui.example.com/callback',
    scope: 'openid order:create',
    state: 'st-1',
    nonce: 'n-1',
    code_challenge: createHash('sha256').update('a'.repeat(43)).digest('base64url'),
    code_challenge_method: 'S256',
  });
}

describe('the interaction pages', () => {
  test('show a sign-in page with labelled, autocompleting fields, an alert region and a CSRF token', async (t) => {
    const h = await harness(t);
    const id = h.flow.create(h.clock);
    const jar = new Jar();
    const page = await h.get(`/interaction/${id}`, jar);
    assert.equal(page.statusCode, 200);
    assertPageHeaders(page, passkeyPageCsp('form', h.issuer), 'login');
    assert.match(page.body, /^<!doctype html>\n<html lang="en">/);
    assert.match(page.body, /<label for="username">Username<\/label>/);
    assert.match(page.body, /<input type="text" id="username" name="username" autocomplete="username"[^>]* required/);
    assert.match(page.body, /<label for="password">Password<\/label>/);
    assert.match(page.body, /<input type="password" id="password" name="password" autocomplete="current-password"[^>]* required/);
    assert.match(page.body, /<div id="form-error" class="error" role="alert"><\/div>/);
    assert.match(page.body, new RegExp(`<form id="password-form" method="post" action="/interaction/${id}/login">`));
    assert.match(page.body, /<input type="text" id="username" [^>]*form="password-form"/, 'the username belongs to the password form');
    assert.ok(page.body.indexOf('Use a passkey') < page.body.indexOf('id="password"'), 'the passkey is offered first');
    assert.match(page.body, /<input type="hidden" name="csrf_token" value="[A-Za-z0-9_-]{43}">/);
    assertOnlyPasskeyScripts(page.body);
    assert.match(page.body, /to continue to <strong>Trading &lt;UI&gt; &amp; Co<\/strong>/, 'the client name is escaped');
    assert.ok(jar.cookies.has('clearance_csrf'));
    assert.match(String(page.headers['set-cookie']), /^clearance_csrf=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Lax$/);
  });

  test('answer an unknown, malformed or expired interaction with an error page, never a redirect', async (t) => {
    const h = await harness(t);
    const expired = h.flow.create(h.clock, 'trading-ui', 60);
    h.clock.advance(61_000);
    for (const path of ['/interaction/nope', `/interaction/${expired}`, '/interaction/%3Cscript%3E', `/interaction/${'a'.repeat(99)}`]) {
      const response = await h.get(path);
      assert.equal(response.statusCode, 400, path);
      assert.equal(response.headers.location, undefined, path);
      assertPageHeaders(response, pageCsp.static, path);
      assert.match(response.body, /This sign-in request has ended/);
      assert.match(response.body, new RegExp(`Reference: <code>${response.headers['x-request-id']}</code>`));
      assert.doesNotMatch(response.body, /<script/);
    }
    const jar = new Jar();
    const fresh = h.flow.create(h.clock);
    const csrf_token = await h.token(fresh, jar);
    const post = await h.post(`/interaction/${expired}/login`, { csrf_token, username: 'alice', password: alicePassword }, jar);
    assert.equal(post.statusCode, 403, 'a token for another interaction is refused first');
  });

  test('sign in with a 303 to the consent page, a new session cookie and the authentication recorded on the interaction', async (t) => {
    const h = await harness(t);
    const id = h.flow.create(h.clock);
    const jar = new Jar();
    const response = await h.signIn(id, jar);
    assert.equal(response.statusCode, 303, 'never 307 after a credential POST (RFC 9700 §4.12)');
    assert.equal(response.headers.location, `${h.issuer}/interaction/${id}`, 'the protocol side asks for consent next: straight to its page');
    assert.equal(response.body, '');
    assert.match(String(response.headers['set-cookie']), /^clearance_session=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Lax$/, 'no Secure on an http development issuer');
    const session = await readSession(h.ctx, jar.header());
    assert.ok(session);
    assert.equal(session.userId, (await findUserByUsername(h.ctx, 'alice'))!.id);
    assert.deepEqual(h.flow.recorded, [{ id, auth: session }]);
    assert.equal((await h.events('user.login_succeeded')).length, 1);
  });

  test('sign in with a 303 to resume when the protocol side needs nothing more of the person', async (t) => {
    const h = await harness(t);
    h.flow.needsConsent = false;
    const id = h.flow.create(h.clock);
    const response = await h.signIn(id, new Jar());
    assert.equal(response.statusCode, 303);
    assert.equal(response.headers.location, `${h.issuer}/authorize/resume/${id}`);
  });

  test('give no session cookie when the interaction ended during the login, and still audit the login', async (t) => {
    const h = await harness(t);
    const id = h.flow.create(h.clock);
    h.flow.endsBeforeLogin = true;
    const jar = new Jar();
    const response = await h.signIn(id, jar);
    assert.equal(response.statusCode, 400);
    assert.equal(response.headers['set-cookie'], undefined);
    assert.equal(await readSession(h.ctx, jar.header()), undefined);
    assert.deepEqual(h.flow.recorded, []);
    assert.equal((await h.events('user.login_succeeded')).length, 1, 'the password was right: the attempt is on record');
  });

  test('rotate the session id at login: the browser’s earlier session ends', async (t) => {
    const h = await harness(t);
    const jar = new Jar();
    await h.signIn(h.flow.create(h.clock), jar);
    const first = jar.header();
    const firstSession = await readSession(h.ctx, first);
    assert.ok(firstSession);
    h.flow.forceLogin = true;
    await h.signIn(h.flow.create(h.clock), jar, 'bob', 'bob-battery-staple-77');
    const second = await readSession(h.ctx, jar.header());
    assert.ok(second);
    assert.notEqual(second.sessionId, firstSession.sessionId);
    assert.equal(await readSession(h.ctx, first), undefined, 'the old id no longer works');
  });

  test('refuse a login POST without the CSRF token, with a wrong one, or from a foreign origin: 403, nothing changes', async (t) => {
    const h = await harness(t);
    const id = h.flow.create(h.clock);
    const other = h.flow.create(h.clock);
    const jar = new Jar();
    const token = await h.token(id, jar);
    const attempts: [string, Record<string, string>, Jar | undefined, Record<string, string>?][] = [
      ['no token', { username: 'alice', password: alicePassword }, jar],
      ['empty token', { csrf_token: '', username: 'alice', password: alicePassword }, jar],
      ['forged token', { csrf_token: 'A'.repeat(43), username: 'alice', password: alicePassword }, jar],
      ['no cookie', { csrf_token: token, username: 'alice', password: alicePassword }, undefined],
      ['another browser', { csrf_token: token, username: 'alice', password: alicePassword }, new Jar()],
      ['cross-site origin', { csrf_token: token, username: 'alice', password: alicePassword }, jar, { origin: 'https://evil.example' }],
    ];
    for (const [label, form, browser, headers] of attempts) {
      const response = await h.post(`/interaction/${id}/login`, form, browser, headers);
      assert.equal(response.statusCode, 403, label);
      assertPageHeaders(response, pageCsp.static, label);
      assert.match(response.body, /nothing was changed/);
    }
    const otherToken = await h.token(other, jar);
    assert.equal((await h.post(`/interaction/${id}/login`, { csrf_token: otherToken, username: 'alice', password: alicePassword }, jar)).statusCode, 403, 'another interaction’s token');
    assert.equal((await h.post(`/interaction/${id}/consent`, { csrf_token: token, decision: 'approve' }, jar)).statusCode, 403, 'the login token is not a consent token');
    assert.deepEqual(h.flow.recorded, []);
    assert.equal((await h.events('user.login_succeeded')).length + (await h.events('user.login_failed')).length, 0, 'no login was attempted');
    assert.equal(await h.ctx.storage.db.selectFrom('sessions').select('id').executeTakeFirst(), undefined);
    // The same browser, with its token and Origin: null (what no-referrer pages send), succeeds.
    const ok = await h.post(`/interaction/${id}/login`, { csrf_token: token, username: 'alice', password: alicePassword }, jar, { origin: 'null' });
    assert.equal(ok.statusCode, 303);
  });

  test('answer a wrong password and an unknown user with the same 401 page, and keep the typed username', async (t) => {
    const h = await harness(t);
    const id = h.flow.create(h.clock);
    const jar = new Jar();
    const wrong = await h.signIn(id, jar, 'alice', 'not-the-password');
    const unknown = await h.signIn(id, jar, 'mallory', alicePassword);
    for (const response of [wrong, unknown]) {
      assert.equal(response.statusCode, 401);
      assertPageHeaders(response, passkeyPageCsp('form', h.issuer), 'failed login');
      assert.match(response.body, /<div id="form-error" class="error" role="alert">The username or password is not correct.<\/div>/);
      assert.match(response.body, /aria-invalid="true" aria-describedby="form-error"/);
      assert.equal(response.headers['set-cookie'], undefined, 'no session, and the CSRF cookie is kept');
    }
    assert.equal(normalized(wrong.body), normalized(unknown.body));
    assert.match(wrong.body, /id="username"[^>]* value="alice"/);
    assert.match(unknown.body, /id="username"[^>]* value="mallory"/);
    assert.doesNotMatch(wrong.body, /not-the-password/);
    assert.deepEqual(h.flow.recorded, []);
  });

  test('show a typed username like <script> escaped, never as markup', async (t) => {
    const h = await harness(t);
    const id = h.flow.create(h.clock);
    const response = await h.signIn(id, new Jar(), '"><script>alert(1)</script>', 'whatever-password');
    assert.equal(response.statusCode, 401);
    assert.doesNotMatch(response.body, /<script>/);
    assert.match(response.body, /value="&quot;&gt;&lt;script&gt;alert\(1\)&lt;\/script&gt;"/);
  });

  test('ask again for both fields, with 400, when one is empty', async (t) => {
    const h = await harness(t);
    const id = h.flow.create(h.clock);
    const response = await h.signIn(id, new Jar(), 'alice', '');
    assert.equal(response.statusCode, 400);
    assert.match(response.body, /Enter your username and your password./);
    assert.equal((await h.events('user.login_failed')).length, 0, 'not counted as a failed login');
  });

  test('answer 429 with Retry-After once an account is throttled', async (t) => {
    const h = await harness(t);
    const id = h.flow.create(h.clock);
    const jar = new Jar();
    for (let i = 0; i < 5; i++) assert.equal((await h.signIn(id, jar, 'alice', `wrong-${i}`)).statusCode, 401);
    const response = await h.signIn(id, jar, 'alice', alicePassword);
    assert.equal(response.statusCode, 429);
    assert.equal(response.headers['retry-after'], '300');
    assertPageHeaders(response, passkeyPageCsp('form', h.issuer), 'throttled');
    assert.match(response.body, /Too many failed sign-in attempts/);
    assert.deepEqual(h.flow.recorded, []);
  });

  test('answer 429 with the RateLimit fields once an account has used its sign-in attempts, before any password work', async (t) => {
    const h = await harness(t);
    await h.apply({ rate_limits: { person: { quota: 3, window: 60 } } });
    const id = h.flow.create(h.clock);
    const jar = new Jar();
    for (let i = 0; i < 2; i++) assert.equal((await h.signIn(id, jar, 'alice', `wrong-${i}`)).statusCode, 401);
    assert.equal((await h.signIn(id, jar, 'Alice', alicePassword)).statusCode, 303, 'a success counts as an attempt too');
    const before = argon2Stats.computations;
    const response = await h.signIn(h.flow.create(h.clock), new Jar(), 'ALICE', alicePassword);
    assert.equal(response.statusCode, 429);
    assert.equal(argon2Stats.computations, before, 'no password verified');
    assert.equal(response.headers['retry-after'], '20');
    assert.equal(response.headers['ratelimit-policy'], '"person";q=3;w=60');
    assert.equal(response.headers.ratelimit, '"person";r=0;t=20');
    assertPageHeaders(response, passkeyPageCsp('form', h.issuer), 'rate limited');
    assert.match(response.body, /Too many sign-in attempts for this account/);
    assert.equal((await h.signIn(h.flow.create(h.clock), new Jar(), 'bob', bobPassword)).statusCode, 303, 'another account is not affected');
    h.clock.advance(20_000);
    assert.equal((await h.signIn(h.flow.create(h.clock), new Jar(), 'alice', alicePassword)).statusCode, 303, 'a token has refilled');
  });

  test('show the consent request in plain language with Approve and Deny, every value escaped', async (t) => {
    const h = await harness(t);
    const id = h.flow.create(h.clock);
    const jar = new Jar();
    await h.signIn(id, jar);
    const page = await h.get(`/interaction/${id}`, jar);
    assert.equal(page.statusCode, 200);
    assertPageHeaders(page, pageCsp.form, 'consent');
    assert.match(page.body, /<h1>Allow Trading &lt;UI&gt; &amp; Co to act for you\?<\/h1>/);
    assert.match(page.body, /You are signed in as <strong>Alice Trader<\/strong>/);
    assert.match(page.body, /<li>Place orders at Order API<\/li>/);
    assert.match(page.body, /<li>Buy up to &lt;b&gt;1,000,000&lt;\/b&gt; EUR of &quot;BTC-PERP&quot;<\/li>/);
    assert.match(page.body, /<p>At: Order API<\/p>/);
    assert.match(page.body, /You can revoke this later on <a href="\/account">your account page<\/a>/);
    assert.match(page.body, new RegExp(`<form method="post" action="/interaction/${id}/consent">`));
    assert.match(page.body, /<button type="submit" name="decision" value="approve">Approve<\/button>/);
    assert.match(page.body, /<button type="submit" name="decision" value="deny" class="secondary">Deny<\/button>/);
    assert.doesNotMatch(page.body, /<script|<b>/);
  });

  test('record approval and denial through decideConsent, each answered 303 to resume', async (t) => {
    const h = await harness(t);
    const jar = new Jar();
    const alice = (await findUserByUsername(h.ctx, 'alice'))!;
    for (const decision of ['approve', 'deny']) {
      const id = h.flow.create(h.clock);
      await h.signIn(id, jar);
      const csrf_token = await h.token(id, jar);
      const response = await h.post(`/interaction/${id}/consent`, { csrf_token, decision }, jar);
      assert.equal(response.statusCode, 303, decision);
      assert.equal(response.headers.location, `${h.issuer}/authorize/resume/${id}`);
    }
    assert.deepEqual(
      h.flow.decisions.map((d) => [d.userId, d.approved]),
      [
        [alice.id, true],
        [alice.id, false],
      ],
    );
  });

  test('refuse a consent POST without a valid CSRF token or with an unknown decision, and decide nothing', async (t) => {
    const h = await harness(t);
    const id = h.flow.create(h.clock);
    const jar = new Jar();
    await h.signIn(id, jar);
    const csrf_token = await h.token(id, jar);
    assert.equal((await h.post(`/interaction/${id}/consent`, { decision: 'approve' }, jar)).statusCode, 403);
    assert.equal((await h.post(`/interaction/${id}/consent`, { csrf_token: csrf_token.slice(1) + 'A', decision: 'approve' }, jar)).statusCode, 403);
    const odd = await h.post(`/interaction/${id}/consent`, { csrf_token, decision: 'maybe' }, jar);
    assert.equal(odd.statusCode, 400);
    assertPageHeaders(odd, pageCsp.static, 'bad decision');
    const twice = await h.app.inject({
      method: 'POST',
      url: `/interaction/${id}/consent`,
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: jar.header() },
      payload: `csrf_token=${csrf_token}&csrf_token=${csrf_token}&decision=approve`,
    });
    assert.equal(twice.statusCode, 403, 'a repeated token field is refused');
    assert.deepEqual(h.flow.decisions, []);
  });

  test('ask for a new sign-in when the session ended before the consent POST', async (t) => {
    const h = await harness(t);
    const id = h.flow.create(h.clock, 'trading-ui', 3600);
    const jar = new Jar();
    await h.signIn(id, jar);
    const csrf_token = await h.token(id, jar);
    h.clock.advance(31 * 60_000);
    const response = await h.post(`/interaction/${id}/consent`, { csrf_token, decision: 'approve' }, jar);
    assert.equal(response.statusCode, 401);
    assert.match(response.body, /Your session has ended. Sign in again to continue./);
    assert.match(response.body, /name="password"/);
    assert.deepEqual(h.flow.decisions, []);
  });

  test('refuse a consent by another person than the one who signed in for the interaction', async (t) => {
    const h = await harness(t);
    const id = h.flow.create(h.clock);
    const jar = new Jar();
    await h.signIn(id, jar);
    const csrf_token = await h.token(id, jar);
    h.flow.forceLogin = true;
    await h.signIn(h.flow.create(h.clock), jar, 'bob', 'bob-battery-staple-77'); // another tab, another person
    const response = await h.post(`/interaction/${id}/consent`, { csrf_token, decision: 'approve' }, jar);
    assert.equal(response.statusCode, 403);
    assert.match(response.body, /Signed in as someone else/);
    assert.deepEqual(h.flow.decisions, []);
  });

  test('send a person whose steps are done straight to resume with 303', async (t) => {
    const h = await harness(t);
    h.flow.needsConsent = false;
    const jar = new Jar();
    await h.signIn(h.flow.create(h.clock), jar);
    const id = h.flow.create(h.clock);
    const response = await h.get(`/interaction/${id}`, jar);
    assert.equal(response.statusCode, 303);
    assert.equal(response.headers.location, `${h.issuer}/authorize/resume/${id}`);
  });

  test('set Secure and the __Host- prefix on an https issuer', async (t) => {
    const h = await harness(t, { CLEARANCE_ISSUER: 'https://id.broker.example' });
    const id = h.flow.create(h.clock);
    const jar = new Jar();
    const page = await h.get(`/interaction/${id}`, jar);
    assert.match(String(page.headers['set-cookie']), /^__Host-clearance_csrf=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Lax; Secure$/);
    const login = await h.signIn(id, jar);
    assert.equal(login.statusCode, 303);
    assert.equal(login.headers.location, `https://id.broker.example/interaction/${id}`);
    assert.match(String(login.headers['set-cookie']), /^__Host-clearance_session=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Lax; Secure$/);
    assert.doesNotMatch(String(login.headers['set-cookie']), /Domain=/i, 'a __Host- cookie has no Domain');
    assert.ok(await readSession(h.ctx, jar.header()), 'read back under its prefixed name');
  });

  test('set the browser-binding cookie of /authorize Secure, HttpOnly and SameSite=Lax on an https issuer', async (t) => {
    // SECURITY-CHECKLIST "Session / CSRF / browser": cookies are Secure, HttpOnly and SameSite.
    // clearance_browser ties an interaction to the browser that started it (src/endpoints/authorize),
    // so it must not travel over http nor be readable by script, nor be planted by a sibling
    // subdomain: at the root of an https issuer it is __Host-clearance_browser (cookieName).
    const h = await harness(t, { CLEARANCE_ISSUER: 'https://id.broker.example' });
    const query = tradingUiRequest();
    const start = await h.get(`/authorize?${query}`);
    assert.equal(start.statusCode, 303, start.body);
    assert.match(String(start.headers.location), /^https:\/\/id\.broker\.example\/interaction\//);
    assert.match(String(start.headers['set-cookie']), /^__Host-clearance_browser=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Lax; Secure$/);
    assert.doesNotMatch(String(start.headers['set-cookie']), /Domain=/i);
  });

  test('name the session and browser-binding cookies __Secure- with the issuer’s Path on an https issuer with a path (the CSRF cookie stays __Host- at Path=/)', async (t) => {
    const issuer = 'https://id.broker.example/idp';
    const h = await harness(t, { CLEARANCE_ISSUER: issuer });
    const query = tradingUiRequest();
    const start = await h.get(`/idp/authorize?${query}`);
    assert.equal(start.statusCode, 303, start.body);
    assert.match(String(start.headers['set-cookie']), /^__Secure-clearance_browser=[A-Za-z0-9_-]{43}; Path=\/idp; HttpOnly; SameSite=Lax; Secure$/);

    const id = h.flow.create(h.clock);
    const jar = new Jar();
    const page = await h.get(`/idp/interaction/${id}`, jar);
    assert.equal(page.statusCode, 200, page.body);
    assert.match(String(page.headers['set-cookie']), /^__Host-clearance_csrf=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Lax; Secure$/);
    const csrf_token = /name="csrf_token" value="([^"]+)"/.exec(page.body)![1]!;
    const login = await h.post(`/idp/interaction/${id}/login`, { csrf_token, username: 'alice', password: alicePassword }, jar);
    assert.equal(login.statusCode, 303, login.body);
    assert.equal(login.headers.location, `${issuer}/interaction/${id}`);
    assert.match(String(login.headers['set-cookie']), /^__Secure-clearance_session=[A-Za-z0-9_-]{43}; Path=\/idp; HttpOnly; SameSite=Lax; Secure$/);
    assert.doesNotMatch(String(login.headers['set-cookie']), /Domain=/i);
    assert.ok(await readSession(h.ctx, jar.header()), 'read back under its prefixed name');
  });

  test('not take a session cookie planted under the bare name on an https issuer as a sign-in', async (t) => {
    // Cookie tossing: a sibling subdomain (or an http page of the host) sets clearance_session to a
    // session id it knows. Clearance reads only __Host-clearance_session on https, so the
    // browser is not signed in as the attacker.
    const h = await harness(t, { CLEARANCE_ISSUER: 'https://id.broker.example' });
    const attacker = new Jar();
    assert.equal((await h.signIn(h.flow.create(h.clock), attacker, 'bob', bobPassword)).statusCode, 303);
    const value = attacker.cookies.get('__Host-clearance_session');
    assert.ok(value, 'the attacker holds a valid session');

    const id = h.flow.create(h.clock);
    const victim = new Jar();
    victim.cookies.set('clearance_session', value);
    const planted = await h.get(`/interaction/${id}`, victim);
    assert.equal(planted.statusCode, 200, planted.body);
    assert.match(planted.body, /<input type="password" id="password"/, 'asked to sign in: the bare cookie is no session');
    assert.doesNotMatch(planted.body, /Allow Trading/);
    assert.equal(h.flow.recorded.length, 1, 'only the attacker’s own sign-in');

    // The same value under the issuer's name is the session (so the refusal above is the name's).
    const own = new Jar();
    own.cookies.set('__Host-clearance_session', value);
    const consent = await h.get(`/interaction/${id}`, own);
    assert.equal(consent.statusCode, 200, consent.body);
    assert.match(consent.body, /<h1>Allow Trading &lt;UI&gt; &amp; Co to act for you\?<\/h1>/);
  });

  test('turn an unexpected failure of the protocol side into a 500 page without detail', async (t) => {
    const h = await harness(t);
    const id = h.flow.create(h.clock);
    h.flow.nextStep = async () => {
      throw new Error('database exploded at /var/lib/secret');
    };
    const response = await h.get(`/interaction/${id}`);
    assert.equal(response.statusCode, 500);
    assertPageHeaders(response, pageCsp.static, '500');
    assert.doesNotMatch(response.body, /exploded|secret/);
  });

  test('serve the stylesheet the pages link, cacheable for a year', async (t) => {
    const h = await harness(t);
    const page = await h.get(`/interaction/${h.flow.create(h.clock)}`);
    const href = /<link rel="stylesheet" href="([^"]+)">/.exec(page.body)![1]!;
    assert.match(href, /^\/assets\/clearance\.css\?v=[A-Za-z0-9_-]{12}$/);
    const css = await h.get(href);
    assert.equal(css.statusCode, 200);
    assert.match(String(css.headers['content-type']), /^text\/css/);
    assert.equal(css.headers['cache-control'], 'public, max-age=31536000, immutable');
    assert.match(css.body, /:focus-visible/);
  });
});

describe('the interaction pages with the protocol side', () => {
  async function protocolHarness(t: TestContext) {
    const f = await peopleFixture(t);
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
    /** A browser: its own cookies. */
    const browser = () => {
      const jar = new Jar();
      return async (method: 'GET' | 'POST', url: string, form?: Record<string, string>) => {
        const response = await app.inject({
          method,
          url: url.startsWith('http') ? new URL(url).pathname + new URL(url).search : url,
          headers: { cookie: jar.header(), ...(form ? { 'content-type': 'application/x-www-form-urlencoded' } : {}) },
          ...(form ? { payload: new URLSearchParams(form).toString() } : {}),
        });
        jar.update(response);
        return response;
      };
    };
    const verifier = 'a'.repeat(43);
    const challenge = createHash('sha256').update(verifier).digest('base64url');
    const query = new URLSearchParams({
      response_type: 'code',
      client_id: 'trading-ui',
      redirect_uri: 'https://ui.example.com/callback',
      scope: 'openid order:create',
      resource: 'https://orders.example.com',
      state: 'st-1',
      nonce: 'n-1',
      code_challenge: challenge,
      code_challenge_method: 'S256',
    });
    /** /authorize, then the sign-in page and its form: the response to the credentials' POST. */
    const signIn = async (go: ReturnType<typeof browser>) => {
      const start = await go('GET', `/authorize?${query}`);
      assert.equal(start.statusCode, 303, start.body);
      const interactionUrl = String(start.headers.location);
      assert.match(interactionUrl, /\/interaction\/[A-Za-z0-9_-]+$/);
      const id = interactionUrl.slice(interactionUrl.lastIndexOf('/') + 1);
      const loginPageResponse = await go('GET', interactionUrl);
      assert.equal(loginPageResponse.statusCode, 200);
      assertPageHeaders(loginPageResponse, passkeyPageCsp('form', 'http://localhost:9000'), 'login');
      const loginToken = /name="csrf_token" value="([^"]+)"/.exec(loginPageResponse.body)![1]!;
      const loggedIn = await go('POST', `/interaction/${id}/login`, { csrf_token: loginToken, username: 'alice', password: alicePassword });
      assert.equal(loggedIn.statusCode, 303);
      return { id, interactionUrl, loggedIn };
    };
    const assertCode = (location: string) => {
      const callback = new URL(location);
      assert.equal(`${callback.origin}${callback.pathname}`, 'https://ui.example.com/callback');
      assert.equal(callback.searchParams.get('state'), 'st-1');
      assert.equal(callback.searchParams.get('iss'), f.ctx.config.issuer);
      assert.ok(callback.searchParams.get('code'));
    };
    return { browser, signIn, assertCode };
  }

  test('take a person from /authorize through sign-in and consent to a code at the client', async (t) => {
    const { browser, signIn, assertCode } = await protocolHarness(t);
    const go = browser();
    const { id, interactionUrl, loggedIn } = await signIn(go);
    assert.equal(loggedIn.headers.location, interactionUrl, 'on to the consent page, which the protocol side asks for');
    const consentPageResponse = await go('GET', interactionUrl);
    assert.equal(consentPageResponse.statusCode, 200);
    assert.match(consentPageResponse.body, /Allow Trading UI to act for you\?/);
    assert.match(consentPageResponse.body, /Order API/);
    const consentToken = /name="csrf_token" value="([^"]+)"/.exec(consentPageResponse.body)![1]!;
    const approved = await go('POST', `/interaction/${id}/consent`, { csrf_token: consentToken, decision: 'approve' });
    assert.equal(approved.statusCode, 303);

    const done = await go('GET', String(approved.headers.location));
    assert.equal(done.statusCode, 303, done.body);
    assertCode(String(done.headers.location));
  });

  test('send a person whose consent is remembered from sign-in to resume, and on to a code', async (t) => {
    const { browser, signIn, assertCode } = await protocolHarness(t);
    const first = browser();
    const { id, interactionUrl } = await signIn(first);
    const consentToken = /name="csrf_token" value="([^"]+)"/.exec((await first('GET', interactionUrl)).body)![1]!;
    await first('POST', `/interaction/${id}/consent`, { csrf_token: consentToken, decision: 'approve' });
    // Another browser, no session: a sign-in, and no consent page.
    const again = browser();
    const second = await signIn(again);
    assert.match(String(second.loggedIn.headers.location), /\/authorize\/resume\//);
    const done = await again('GET', String(second.loggedIn.headers.location));
    assert.equal(done.statusCode, 303, done.body);
    assertCode(String(done.headers.location));
  });
});
