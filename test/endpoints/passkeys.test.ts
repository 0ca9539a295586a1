import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { decodeJwt } from 'jose';
import { acr } from '../../src/identity/acr.ts';
import { readSession } from '../../src/identity/sessions.ts';
import { listPasskeys } from '../../src/identity/passkeys/store.ts';
import { SoftwareAuthenticator, type Bend } from '../helpers/authenticator.ts';
import { Browser, csrfOf } from '../helpers/inject-browser.ts';
import { assertOnlyPasskeyScripts, passkeyPageCsp } from '../helpers/pages.ts';
import { codeFlowFixture, pkce, type CodeFlowFixture } from '../authorization/fixture.ts';
import { enrolTotp } from '../identity/factors/fixture.ts';

// Passkeys over HTTP, as the sign-in and account pages' script drives them: enrolment on
// /account, then sign-in on the interaction pages (username-less and after a username), through
// consent to tokens; and every refusal a person or an attacker can cause.


interface Harness {
  f: CodeFlowFixture;
  /** Alice's password session (the one that enrolled her first passkey). */
  alice: { userId: string; cookie: string };
  /** A session of Alice's made with her passkey: what changing her passkeys needs from then on. */
  strong: { userId: string; cookie: string };
  authenticator: SoftwareAuthenticator;
  /** Adds a passkey on /account in `browser` (alice's session); returns the response to the form's POST. */
  enrol(browser: Browser, authenticator?: SoftwareAuthenticator, bend?: Bend, name?: string): Promise<LightMyRequestResponse>;
  /** /authorize in a fresh browser, up to the sign-in page: the interaction's id and the page's CSRF token. */
  startSignIn(browser?: Browser, query?: Record<string, string>): Promise<{ browser: Browser; id: string; csrf: string; page: LightMyRequestResponse }>;
  /** The options the sign-in page's script would fetch. */
  options(browser: Browser, id: string, csrf: string, username?: string): Promise<LightMyRequestResponse>;
  /** Everything the script does for "Use a passkey": options, the assertion, the form's POST. */
  signInWithPasskey(bend?: Bend, username?: string): Promise<{ browser: Browser; id: string; response: LightMyRequestResponse; credential: string; csrf: string }>;
}

async function harness(t: TestContext, options: { roles?: string[] } = {}): Promise<Harness> {
  const f = await codeFlowFixture(t);
  const alice = await f.signIn('alice');
  // Roles only: a password set now would be a reset, which ends the session just started.
  await f.apply({ authentication: { role_minimums: { admin: acr.phishingResistant } }, users: [{ username: 'alice', name: 'Alice Trader', roles: options.roles ?? [] }] });
  const authenticator = new SoftwareAuthenticator({ origin: f.issuer });
  const h: Harness = {
    f,
    alice,
    strong: await f.signIn('alice', { acr: acr.phishingResistant, amr: ['hwk', 'user', 'mfa'] }),
    authenticator,
    async enrol(browser, using = authenticator, bend = {}, name = 'Work laptop') {
      const page = await browser.get('/account');
      assert.equal(page.statusCode, 200, page.body);
      const csrf = csrfOf(page.body);
      const options = await browser.post('/account/passkeys/options', { csrf_token: csrf });
      assert.equal(options.statusCode, 200, options.body);
      assert.equal(options.headers['cache-control'], 'no-store');
      const credential = JSON.stringify(using.register(options.json(), bend));
      return browser.post('/account/passkeys', { csrf_token: csrf, name, credential });
    },
    async startSignIn(browser = new Browser(f), query = {}) {
      const start = await browser.get(`/authorize?${new URLSearchParams(f.request('web-app', { code_challenge: verifier.challenge, ...query }) as Record<string, string>)}`);
      assert.equal(start.statusCode, 303, start.body);
      const location = String(start.headers.location);
      const id = location.slice(location.lastIndexOf('/') + 1);
      const page = await browser.get(location);
      assert.equal(page.statusCode, 200, page.body);
      return { browser, id, csrf: csrfOf(page.body), page };
    },
    async options(browser, id, csrf, username) {
      return browser.post(`/interaction/${id}/passkey/options`, { csrf_token: csrf, ...(username !== undefined ? { username } : {}) });
    },
    async signInWithPasskey(bend = {}, username) {
      const { browser, id, csrf } = await h.startSignIn();
      const options = await h.options(browser, id, csrf, username);
      assert.equal(options.statusCode, 200, options.body);
      const credential = JSON.stringify(authenticator.assert(options.json(), bend));
      const response = await browser.post(`/interaction/${id}/passkey`, { csrf_token: csrf, credential });
      return { browser, id, response, credential, csrf };
    },
  };
  const enrolled = await h.enrol(new Browser(f, alice.cookie));
  assert.equal(enrolled.statusCode, 303, enrolled.body);
  return h;
}

const verifier = pkce();

/** The sign-in page again, refusing: 401, the generic message, no session cookie. */
function assertRefused(response: LightMyRequestResponse): void {
  assert.equal(response.statusCode, 401, response.body);
  assert.match(response.body, /Your passkey could not be used to sign in/);
  assert.doesNotMatch(String(response.headers['set-cookie'] ?? ''), /clearance_session=[^;]/);
}

describe('passkeys over HTTP', () => {
  test('a person enrols a passkey on /account, then signs in with it alone, username-less, through consent to tokens at phr', async (t) => {
    const h = await harness(t);
    const { f } = h;
    const account = await new Browser(f, h.alice.cookie).get('/account');
    assert.equal(account.headers['content-security-policy'], passkeyPageCsp('ownForm', f.issuer));
    assertOnlyPasskeyScripts(account.body);
    assert.match(account.body, /<h3 id="passkey-[0-9a-f-]{36}">Work laptop<\/h3>/);
    assert.match(account.body, /not used yet/);
    assert.match(account.body, /Device-bound: it stays on one device or security key./);

    const { browser, id, response } = await h.signInWithPasskey();
    assert.equal(response.statusCode, 303, response.body);
    assert.equal(response.headers.location, `${f.issuer}/interaction/${id}`, 'on to the consent page');
    const session = await readSession(f.ctx, browser.cookie);
    assert.equal(session?.userId, h.alice.userId);
    assert.equal(session?.acr, acr.phishingResistant);
    assert.deepEqual(session?.amr, ['hwk', 'user', 'mfa']);

    const consent = await browser.get(`/interaction/${id}`);
    const approved = await browser.post(`/interaction/${id}/consent`, { csrf_token: csrfOf(consent.body), decision: 'approve' });
    const resumed = await browser.get(String(approved.headers.location));
    const code = new URL(String(resumed.headers.location)).searchParams.get('code')!;
    const tokens = await f.redeem('web-app', code, verifier.verifier);
    assert.equal(tokens.statusCode, 200, tokens.body);
    const idToken = decodeJwt((tokens.json() as { id_token: string }).id_token);
    assert.equal(idToken.sub, h.alice.userId);
    assert.equal(idToken.acr, acr.phishingResistant);

    const [event] = (await f.auditEvents('user.login_succeeded')).filter((e) => e.details?.method === 'passkey');
    assert.equal(event!.client, 'web-app');
    const [passkey] = await listPasskeys(f.ctx, h.alice.userId);
    assert.equal(event!.details!.credential, passkey!.credentialId);
    assert.match(await new Browser(f, h.alice.cookie).get('/account').then((r) => r.body), /last used on/);
  });

  test('a passkey sign-in resets the count of failed passwords, as any successful sign-in does', async (t) => {
    const h = await harness(t);
    // Nine wrong passwords tried by someone, months apart: one more would lock the account.
    await h.f.ctx.storage.db.updateTable('users').set({ failed_logins: 9 }).where('id', '=', h.alice.userId).execute();
    const { response } = await h.signInWithPasskey();
    assert.equal(response.statusCode, 303, response.body);
    const row = await h.f.ctx.storage.db.selectFrom('users').select(['failed_logins', 'status']).where('id', '=', h.alice.userId).executeTakeFirstOrThrow();
    assert.deepEqual({ ...row, failed_logins: Number(row.failed_logins) }, { failed_logins: 0, status: 'active' });
  });

  test('a passkey sign-in rotates the browser’s session, as a password sign-in does', async (t) => {
    const h = await harness(t);
    const before = new Browser(h.f, h.alice.cookie);
    const { browser, id, csrf } = await h.startSignIn(before, { prompt: 'login' });
    const options = await h.options(browser, id, csrf);
    const response = await browser.post(`/interaction/${id}/passkey`, { csrf_token: csrf, credential: JSON.stringify(h.authenticator.assert(options.json())) });
    assert.equal(response.statusCode, 303);
    assert.notEqual(browser.cookies.get('clearance_session'), h.alice.cookie.split('=')[1]);
    assert.equal(await readSession(h.f.ctx, h.alice.cookie), undefined, 'the session from before the sign-in has ended');
  });

  test('after a username, the options name that person’s passkeys, and the sign-in works', async (t) => {
    const h = await harness(t);
    const { browser, id, csrf } = await h.startSignIn();
    const options = (await h.options(browser, id, csrf, 'Alice')).json() as { challenge: string; allowCredentials: { id: string }[]; userVerification: string; rpId: string };
    const [passkey] = await listPasskeys(h.f.ctx, h.alice.userId);
    assert.deepEqual(options.allowCredentials.map((c) => c.id), [passkey!.credentialId]);
    assert.equal(options.userVerification, 'required');
    assert.equal(options.rpId, 'localhost');
    const response = await browser.post(`/interaction/${id}/passkey`, { csrf_token: csrf, credential: JSON.stringify(h.authenticator.assert(options)) });
    assert.equal(response.statusCode, 303, response.body);
  });

  test('an unknown username gets options of the same shape as a real person’s (no account enumeration)', async (t) => {
    const h = await harness(t);
    const { browser, id, csrf } = await h.startSignIn();
    const real = (await h.options(browser, id, csrf, 'alice')).json() as Record<string, unknown>;
    const unknown = await h.options(browser, id, csrf, 'mallory');
    assert.equal(unknown.statusCode, 200);
    const body = unknown.json() as Record<string, unknown> & { allowCredentials: { id: string; type: string; transports: string[] }[] };
    assert.deepEqual(Object.keys(body).sort(), Object.keys(real).sort());
    assert.ok(body.allowCredentials.length >= 1 && body.allowCredentials.length <= 2);
    for (const c of body.allowCredentials) assert.equal(Buffer.from(c.id, 'base64url').length, 16);
    assert.deepEqual((await h.options(browser, id, csrf, 'mallory')).json().allowCredentials, body.allowCredentials, 'the same decoys each time');
  });

  test('refuses an assertion made for another origin', async (t) => {
    const h = await harness(t);
    assertRefused((await h.signInWithPasskey({ origin: 'https://clearance.example.evil' })).response);
    assertRefused((await h.signInWithPasskey({ origin: 'http://localhost:9001' })).response);
    assert.deepEqual((await h.f.auditEvents('user.login_failed')).map((e) => e.decision!.reasons[0]), ['wrong_origin', 'wrong_origin']);
  });

  test('refuses an assertion made for another RP ID', async (t) => {
    const h = await harness(t);
    assertRefused((await h.signInWithPasskey({ rpId: 'example.com' })).response);
    assert.deepEqual((await h.f.auditEvents('user.login_failed')).map((e) => e.decision!.reasons[0]), ['wrong_rp_id']);
  });

  test('refuses an assertion without user verification', async (t) => {
    const h = await harness(t);
    assertRefused((await h.signInWithPasskey({ userVerified: false })).response);
    assert.deepEqual((await h.f.auditEvents('user.login_failed')).map((e) => e.decision!.reasons[0]), ['user_not_verified']);
  });

  test('refuses a replayed assertion: its challenge was used, in this interaction or another', async (t) => {
    const h = await harness(t);
    const first = await h.signInWithPasskey();
    assert.equal(first.response.statusCode, 303);
    // The same browser and interaction, the same assertion again.
    const again = await first.browser.post(`/interaction/${first.id}/passkey`, { csrf_token: first.csrf, credential: first.credential });
    assert.notEqual(again.statusCode, 303);
    // Another browser and interaction, the captured assertion.
    const other = await h.startSignIn();
    assertRefused(await other.browser.post(`/interaction/${other.id}/passkey`, { csrf_token: other.csrf, credential: first.credential }));
    assert.deepEqual((await h.f.auditEvents('user.login_failed')).map((e) => e.decision!.reasons[0]).at(-1), 'challenge_unknown');
  });

  test('refuses a signature counter that goes backwards, and audits it', async (t) => {
    const h = await harness(t);
    assert.equal((await h.signInWithPasskey({ signCount: 10 })).response.statusCode, 303);
    assertRefused((await h.signInWithPasskey({ signCount: 3 })).response);
    const [regressed] = await h.f.auditEvents('passkey.counter_regressed');
    assert.deepEqual(regressed!.details, { credential: (await listPasskeys(h.f.ctx, h.alice.userId))[0]!.credentialId, stored_count: 10, presented_count: 3 });
  });

  test('refuses options and sign-ins without the page’s CSRF token or from another origin', async (t) => {
    const h = await harness(t);
    const { browser, id, csrf } = await h.startSignIn();
    const noToken = await browser.post(`/interaction/${id}/passkey/options`, {});
    assert.equal(noToken.statusCode, 403);
    assert.equal((noToken.json() as { error: string }).error, 'access_denied');
    assert.equal(noToken.headers['cache-control'], 'no-store');
    const crossSite = await browser.post(`/interaction/${id}/passkey/options`, { csrf_token: csrf }, { origin: 'https://evil.example' });
    assert.equal(crossSite.statusCode, 403);
    const options = (await h.options(browser, id, csrf)).json();
    const credential = JSON.stringify(h.authenticator.assert(options));
    const forged = await browser.post(`/interaction/${id}/passkey`, { csrf_token: 'x'.repeat(43), credential });
    assert.equal(forged.statusCode, 403);
    assert.equal(await readSession(h.f.ctx, browser.cookie), undefined);
    // The challenge is still unused: the real form goes through.
    assert.equal((await browser.post(`/interaction/${id}/passkey`, { csrf_token: csrf, credential })).statusCode, 303);
  });

  test('answers a malformed credential with the sign-in page, never 5xx', async (t) => {
    const h = await harness(t);
    const { browser, id, csrf } = await h.startSignIn();
    for (const credential of ['', 'null', '{"id":1}', '{"id":"a","rawId":"a","type":"public-key","response":{}}', 'x'.repeat(40_000)]) {
      assertRefused(await browser.post(`/interaction/${id}/passkey`, { csrf_token: csrf, credential }));
    }
  });

  test('refuses a registration for another origin, another RP ID or without user verification, with the account page saying so', async (t) => {
    const h = await harness(t);
    const browser = new Browser(h.f, h.strong.cookie);
    for (const bend of [{ origin: 'https://evil.example' }, { rpId: 'evil.example' }, { userVerified: false }]) {
      const response = await h.enrol(browser, new SoftwareAuthenticator({ origin: h.f.issuer }), bend);
      assert.equal(response.statusCode, 400, JSON.stringify(bend));
      assert.match(response.body, /The passkey could not be verified/);
    }
    assert.equal((await listPasskeys(h.f.ctx, h.alice.userId)).length, 1);
  });

  test('renames and removes a passkey; another person’s or an unknown one is 404, a forged form 403', async (t) => {
    const h = await harness(t);
    const browser = new Browser(h.f, h.strong.cookie);
    const [passkey] = await listPasskeys(h.f.ctx, h.alice.userId);
    const csrf = csrfOf((await browser.get('/account')).body);
    assert.equal((await browser.post(`/account/passkeys/${passkey!.id}/rename`, { csrf_token: csrf, name: '  Phone  ' })).statusCode, 303);
    assert.equal((await listPasskeys(h.f.ctx, h.alice.userId))[0]!.name, 'Phone');
    assert.equal((await browser.post(`/account/passkeys/${passkey!.id}/rename`, { csrf_token: csrf, name: '' })).statusCode, 400);
    assert.equal((await browser.post(`/account/passkeys/${passkey!.id}/remove`, { csrf_token: 'forged' })).statusCode, 403);
    const bob = new Browser(h.f, (await h.f.signIn('bob')).cookie);
    const bobCsrf = csrfOf((await bob.get('/account')).body);
    assert.equal((await bob.post(`/account/passkeys/${passkey!.id}/remove`, { csrf_token: bobCsrf })).statusCode, 404);
    assert.equal((await bob.post(`/account/passkeys/${passkey!.id}/rename`, { csrf_token: bobCsrf, name: 'Mine' })).statusCode, 404);
    assert.equal((await browser.post('/account/passkeys/not-a-passkey/remove', { csrf_token: csrf })).statusCode, 404);
    // Alice has no password: her last passkey stays (409), so she adds a spare one first.
    assert.equal((await h.enrol(browser, new SoftwareAuthenticator({ origin: h.f.issuer }), {}, 'Spare key')).statusCode, 303);
    assert.equal((await browser.post(`/account/passkeys/${passkey!.id}/remove`, { csrf_token: csrf })).statusCode, 303);
    assert.deepEqual((await listPasskeys(h.f.ctx, h.alice.userId)).map((p) => p.name), ['Spare key']);
    assert.deepEqual((await h.f.auditEvents('passkey.removed')).map((e) => e.details!.credential), [passkey!.credentialId]);
  });

  test('refuses to remove the last passkey of a person whose role minimum is phishing-resistant', async (t) => {
    const h = await harness(t, { roles: ['admin'] });
    const browser = new Browser(h.f, h.strong.cookie);
    const [passkey] = await listPasskeys(h.f.ctx, h.alice.userId);
    const csrf = csrfOf((await browser.get('/account')).body);
    const refused = await browser.post(`/account/passkeys/${passkey!.id}/remove`, { csrf_token: csrf });
    assert.equal(refused.statusCode, 409);
    assert.match(refused.body, /This is the last passkey your role requires/);
    assert.equal((await listPasskeys(h.f.ctx, h.alice.userId)).length, 1);
    assert.equal((await h.f.auditEvents('passkey.removal_refused'))[0]!.details!.credential, passkey!.credentialId);
    // With a second passkey, the first can go.
    assert.equal((await h.enrol(browser, new SoftwareAuthenticator({ origin: h.f.issuer }), {}, 'Spare key')).statusCode, 303);
    assert.equal((await browser.post(`/account/passkeys/${passkey!.id}/remove`, { csrf_token: csrf })).statusCode, 303);
  });
  test('a password-only session cannot add, rename or remove the passkeys of a person who has one', async (t) => {
    const h = await harness(t);
    const weak = new Browser(h.f, (await h.f.signIn('alice')).cookie);
    const [passkey] = await listPasskeys(h.f.ctx, h.alice.userId);
    const page = await weak.get('/account');
    assert.match(page.body, /To add, rename or remove passkeys, sign in with one of your passkeys first./);
    assert.doesNotMatch(page.body, /account\/passkeys\/[^"]+\/remove|data-passkey="register"/, 'no passkey forms');
    const csrf = csrfOf(page.body);
    const options = await weak.post('/account/passkeys/options', { csrf_token: csrf });
    assert.equal(options.statusCode, 403);
    assert.equal((options.json() as { error: string }).error, 'access_denied');
    // Options fetched by a passkey session do not help the password session either.
    const strong = new Browser(h.f, h.strong.cookie);
    const creation = (await strong.post('/account/passkeys/options', { csrf_token: csrfOf((await strong.get('/account')).body) })).json();
    const mine = new SoftwareAuthenticator({ origin: h.f.issuer });
    assert.equal((await weak.post('/account/passkeys', { csrf_token: csrf, name: 'Mine', credential: JSON.stringify(mine.register(creation)) })).statusCode, 403);
    assert.equal((await weak.post(`/account/passkeys/${passkey!.id}/rename`, { csrf_token: csrf, name: 'Mine' })).statusCode, 403);
    assert.equal((await weak.post(`/account/passkeys/${passkey!.id}/remove`, { csrf_token: csrf })).statusCode, 403);
    assert.deepEqual((await listPasskeys(h.f.ctx, h.alice.userId)).map((p) => p.name), ['Work laptop']);
  });

  test('a person with an authenticator app adds their first passkey from a session made with it, not from a password-only one', async (t) => {
    const f = await codeFlowFixture(t);
    await f.apply({ users: [{ username: 'carol', password: 'carol-correct-horse-1' }] });
    await enrolTotp(f, 'carol');
    const weak = new Browser(f, (await f.signIn('carol')).cookie);
    const refused = await weak.post('/account/passkeys/options', { csrf_token: csrfOf((await weak.get('/account')).body) });
    assert.equal(refused.statusCode, 403);
    const mfa = new Browser(f, (await f.signIn('carol', { acr: acr.multiFactor, amr: ['pwd', 'otp', 'mfa'] })).cookie);
    const page = await mfa.get('/account');
    const csrf = csrfOf(page.body);
    const options = await mfa.post('/account/passkeys/options', { csrf_token: csrf });
    assert.equal(options.statusCode, 200);
    const credential = JSON.stringify(new SoftwareAuthenticator({ origin: f.issuer }).register(options.json()));
    assert.equal((await mfa.post('/account/passkeys', { csrf_token: csrf, name: 'Laptop', credential })).statusCode, 303);
  });
});
