import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { acr } from '../../src/identity/acr.ts';
import { findUserByUsername } from '../../src/identity/users.ts';
import { SoftwareAuthenticator } from '../helpers/authenticator.ts';
import { codeFlowFixture, webRedirect, type CodeFlowFixture } from '../authorization/fixture.ts';
import { codeAt, enrolTotp, type Enrolled } from '../identity/factors/fixture.ts';
import { approveAndRedeem, csrfOf, get, Jar, locationPath, post, startAuthorization, submitSecondFactor } from './people-browser.ts';

// The sign-in pages at each authentication level (docs/authentication.md "What the person sees"):
// what the page offers before anyone has authenticated (the same for every username), what it
// says to a person whose sign-in fell short of a required level, and declining.

const passwords = { alice: 'alice-correct-horse-42', bob: 'bob-battery-staple-77', carol: 'carol-paper-clip-31' };
const essential = (level: string) => JSON.stringify({ id_token: { acr: { essential: true, values: [level] } } });

interface Levels extends CodeFlowFixture {
  authenticator: SoftwareAuthenticator;
  ids: { alice: string; bob: string; carol: string };
  /** carol's authenticator app. */
  carolApp: Enrolled;
}

/**
 * alice: password and a passkey; bob: a password only; carol: a password and an authenticator app.
 * `roles` for bob (role minimums: trader → mfa, admin → phr).
 */
async function fixture(t: TestContext, bobRoles: string[] = []): Promise<Levels> {
  const f = await codeFlowFixture(t, { risk: 'off' }); // sign-ins that are not about risk (docs/risk.md), whatever the hour
  await f.apply({
    authentication: { role_minimums: { trader: acr.multiFactor, admin: acr.phishingResistant } },
    users: [
      { username: 'alice', password: passwords.alice, name: 'Alice Trader' },
      { username: 'bob', password: passwords.bob, name: 'Bob Trader', roles: bobRoles },
      { username: 'carol', password: passwords.carol, name: 'Carol Trader' },
    ],
  });
  const authenticator = new SoftwareAuthenticator({ origin: f.issuer });
  const alice = await f.signIn('alice');
  // The first passkey of a person with no other factor is added from a password session.
  const jar = new Jar(alice.cookie);
  const account = await get(f, '/account', jar);
  const options = await post(f, '/account/passkeys/options', { csrf_token: csrfOf(account.body) }, jar);
  const added = await post(f, '/account/passkeys', { csrf_token: csrfOf(account.body), name: 'Laptop', credential: JSON.stringify(authenticator.register(options.json())) }, jar);
  assert.equal(added.statusCode, 303, added.body);
  const carol = await enrolTotp(f, 'carol');
  const bob = (await findUserByUsername(f.ctx, 'bob'))!.id;
  return Object.assign(f, { authenticator, carolApp: carol, ids: { alice: alice.userId, bob, carol: carol.userId } });
}

/** The sign-in page of an interaction, in `jar`. */
async function page(f: CodeFlowFixture, jar: Jar, id: string): Promise<LightMyRequestResponse> {
  const response = await get(f, `/interaction/${id}`, jar);
  assert.equal(response.statusCode, 200, response.body);
  return response;
}

/** Follows 303s within the issuer from `response`; the last response (a page, or the 303 to the client). */
async function follow(f: CodeFlowFixture, jar: Jar, response: LightMyRequestResponse): Promise<LightMyRequestResponse> {
  let current = response;
  while (current.statusCode === 303 && String(current.headers.location).startsWith(f.issuer)) current = await get(f, locationPath(f, current), jar);
  return current;
}

/** Everything the page's script does for its passkey form: options (with the form's username, if any), the assertion, the POST. */
async function usePasskey(f: Levels, jar: Jar, id: string, body: string, username?: string): Promise<LightMyRequestResponse> {
  const csrf = csrfOf(body);
  const options = await post(f, `/interaction/${id}/passkey/options`, { csrf_token: csrf, ...(username ? { username } : {}) }, jar);
  assert.equal(options.statusCode, 200, options.body);
  return post(f, `/interaction/${id}/passkey`, { csrf_token: csrf, credential: JSON.stringify(f.authenticator.assert(options.json())) }, jar);
}

function assertErrorAtClient(f: CodeFlowFixture, response: LightMyRequestResponse, error: string): void {
  assert.equal(response.statusCode, 303, response.body);
  const location = new URL(String(response.headers.location));
  assert.equal(`${location.origin}${location.pathname}`, webRedirect);
  assert.equal(location.searchParams.get('error'), error);
  assert.equal(location.searchParams.get('state'), 'st-123');
  assert.equal(location.searchParams.get('iss'), f.issuer);
  assert.equal(location.searchParams.has('code'), false);
}

/** The page without what differs legitimately between two answers in one browser: the username typed back. */
const withoutUsername = (body: string) => body.replaceAll(/(name="username"[^>]* value=")[^"]*"/g, '$1"');

describe('the sign-in page before anyone has authenticated', () => {
  test('with no level asked: the username, then "Use a passkey" first, then the password; nothing to decline', async (t) => {
    const f = await fixture(t);
    const jar = new Jar();
    const { id } = await startAuthorization(f, jar);
    const { body } = await page(f, jar, id);
    assert.match(body, /<h1>Sign in<\/h1>/);
    assert.ok(body.indexOf('id="username"') < body.indexOf('Use a passkey'));
    assert.ok(body.indexOf('Use a passkey') < body.indexOf('id="password"'), 'the passkey first');
    assert.doesNotMatch(body, /id="level"/);
    assert.doesNotMatch(body, /\/decline"/);
  });

  test('at a required passkey level: says a passkey is needed, offers it, keeps the password for setting one up, and a way back', async (t) => {
    const f = await fixture(t);
    const jar = new Jar();
    const { id } = await startAuthorization(f, jar, { claims: essential(acr.phishingResistant) });
    const { body } = await page(f, jar, id);
    assert.match(body, /<p class="notice" id="level">Trading Desk needs a passkey\.<\/p>/);
    assert.match(body, /<form method="post" action="\/interaction\/[^"]+\/passkey" data-passkey="login"[^>]*>[\s\S]*id="username"[\s\S]*Use a passkey/);
    assert.match(body, /<summary>No passkey yet\? Sign in with your password<\/summary>/);
    assert.match(body, /Your password alone does not take you to Trading Desk/);
    assert.ok(body.indexOf('Use a passkey') < body.indexOf('id="password"'), 'the passkey first');
    assert.match(body, new RegExp(`<form method="post" action="/interaction/${id}/decline" class="decline">`));
    assert.match(body, /<button type="submit" class="secondary">Go back to Trading Desk<\/button>/);
  });

  test('at a required hardware level: says which passkey', async (t) => {
    const f = await fixture(t);
    const jar = new Jar();
    const { id } = await startAuthorization(f, jar, { claims: essential(acr.phishingResistantHardware) });
    assert.match((await page(f, jar, id)).body, /Trading Desk needs a passkey on a security key your organisation has approved\./);
  });

  test('at a required two-step level: a passkey, or the password and then a code; and a way back', async (t) => {
    const f = await fixture(t);
    const jar = new Jar();
    const { id } = await startAuthorization(f, jar, { claims: essential(acr.multiFactor) });
    const { body } = await page(f, jar, id);
    assert.match(body, /Trading Desk needs two-step sign-in: a passkey, or your password and a code from your authenticator app\./);
    assert.match(body, /<form id="password-form" method="post"/);
    assert.match(body, /\/decline" class="decline"/);
  });

  test('at a voluntary level (acr_values): asks for a passkey, offers the password instead, and nothing to decline', async (t) => {
    const f = await fixture(t);
    const jar = new Jar();
    const { id } = await startAuthorization(f, jar, { acr_values: acr.phishingResistant });
    const { body } = await page(f, jar, id);
    assert.match(body, /Trading Desk asks for a passkey\./);
    assert.match(body, /<summary>Sign in with your password instead<\/summary>/);
    assert.match(body, /Trading Desk will be told that you signed in with a password, and may ask again\./);
    assert.doesNotMatch(body, /\/decline"/);
  });

  test('answers an unknown username and a known one with a wrong password identically: status, headers and page', async (t) => {
    const f = await fixture(t);
    for (const query of [{}, { claims: essential(acr.phishingResistant) }, { acr_values: acr.multiFactor }] as Record<string, string>[]) {
      const jar = new Jar();
      const { id } = await startAuthorization(f, jar, query);
      const csrf = csrfOf((await page(f, jar, id)).body);
      const attempt = (username: string) => post(f, `/interaction/${id}/login`, { csrf_token: csrf, username, password: 'not-the-password' }, jar);
      // A person with a password only, one with a passkey, one with an authenticator app — each
      // against a username nobody holds, of the same length (the page types it back).
      for (const [known, nobody] of [['bob', 'zed'], ['alice', 'ghost'], ['carol', 'nemo1']] as const) {
        const unknown = await attempt(nobody);
        const response = await attempt(known);
        assert.equal(response.statusCode, 401);
        assert.equal(response.statusCode, unknown.statusCode);
        // Every header but the date and the request's own id.
        const { date: _d, 'x-request-id': _r, ...headers } = response.headers;
        const { date: _dd, 'x-request-id': _rr, ...expected } = unknown.headers;
        assert.deepEqual(headers, expected, known);
        assert.equal(withoutUsername(response.body), withoutUsername(unknown.body), known);
      }
    }
    assert.equal(await f.ctx.storage.db.selectFrom('pending_sign_ins').select('id').executeTakeFirst(), undefined, 'no second step opened');
  });
});

describe('a sign-in below a required level', () => {
  test('does not loop: the page says how the person signed in and what is needed, and offers their passkey, which completes at phr', async (t) => {
    const f = await fixture(t);
    const jar = new Jar();
    const { id, verifier } = await startAuthorization(f, jar, { claims: essential(acr.phishingResistant) });
    const csrf = csrfOf((await page(f, jar, id)).body);
    const below = await follow(f, jar, await post(f, `/interaction/${id}/login`, { csrf_token: csrf, username: 'alice', password: passwords.alice }, jar));
    assert.equal(below.statusCode, 200);
    assert.match(below.body, /<h1>A passkey is needed<\/h1>/);
    assert.match(below.body, /You signed in as <strong>alice<\/strong> with your password, but Trading Desk needs a passkey\./);
    assert.match(below.body, /<input type="hidden" id="username" name="username" value="alice">/, 'her passkey, not anyone’s');
    assert.match(below.body, /Use your passkey/);
    assert.doesNotMatch(below.body, /id="password"/, 'the password does not reach the level: not offered again');
    const [requested] = await f.auditEvents('step_up.requested');
    assert.deepEqual(requested!.details!.trigger, ['essential_acr']);

    const options = await post(f, `/interaction/${id}/passkey/options`, { csrf_token: csrfOf(below.body), username: 'alice' }, jar);
    assert.equal((options.json() as { allowCredentials: unknown[] }).allowCredentials.length, 1, 'her passkey is asked for');
    const signedIn = await post(f, `/interaction/${id}/passkey`, { csrf_token: csrfOf(below.body), credential: JSON.stringify(f.authenticator.assert(options.json())) }, jar);
    const { idToken } = await approveAndRedeem(f, jar, id, verifier, signedIn);
    assert.equal(idToken.acr, acr.phishingResistant);
    const [completed] = await f.auditEvents('step_up.completed');
    assert.equal(completed!.details!.outcome, 'met');
  });

  test('of a person with no factor that reaches it: says so, points to the account page, and going back ends the request with unmet_authentication_requirements', async (t) => {
    const f = await fixture(t);
    const jar = new Jar();
    const { id } = await startAuthorization(f, jar, { claims: essential(acr.phishingResistant) });
    const csrf = csrfOf((await page(f, jar, id)).body);
    const below = await follow(f, jar, await post(f, `/interaction/${id}/login`, { csrf_token: csrf, username: 'bob', password: passwords.bob }, jar));
    assert.match(below.body, /You signed in as <strong>bob<\/strong> with your password, but Trading Desk needs a passkey\./);
    assert.match(below.body, /<p id="no-method">You have not added a passkey to your account\. Add one on <a href="\/account" target="_blank" rel="noopener">your account page<\/a>/);
    assert.doesNotMatch(below.body, /data-passkey="login"/, 'no passkey to use');
    const declined = await follow(f, jar, await post(f, `/interaction/${id}/decline`, { csrf_token: csrfOf(below.body) }, jar));
    assertErrorAtClient(f, declined, 'unmet_authentication_requirements');
    const [completed] = await f.auditEvents('step_up.completed');
    assert.equal(completed!.details!.outcome, 'declined');
    assert.equal(completed!.subject, f.ids.bob);
  });

  test('at the hardware level, with a passkey that is not an approved security key: says how they signed in and what is missing', async (t) => {
    const f = await fixture(t);
    const jar = new Jar();
    const { id } = await startAuthorization(f, jar, { claims: essential(acr.phishingResistantHardware) });
    const below = await follow(f, jar, await usePasskey(f, jar, id, (await page(f, jar, id)).body));
    assert.match(below.body, /<h1>An approved security key is needed<\/h1>/);
    assert.match(below.body, /You signed in as <strong>alice<\/strong> with a passkey, but Trading Desk needs a passkey on a security key your organisation has approved\./);
    assert.match(below.body, /None of your passkeys is on a security key your organisation has approved\./);
    assert.doesNotMatch(below.body, /data-passkey="login"/, 'her passkey does not reach the level: not offered again');
    assert.match(below.body, /\/decline" class="decline"/);
  });

  test('of a role minimum the person cannot reach, found only after the password: the same, with the way back', async (t) => {
    const f = await fixture(t, ['trader']);
    const jar = new Jar();
    const { id } = await startAuthorization(f, jar);
    const first = await page(f, jar, id);
    assert.doesNotMatch(first.body, /id="level"/, 'nobody is known yet: no level is shown');
    const below = await follow(f, jar, await post(f, `/interaction/${id}/login`, { csrf_token: csrfOf(first.body), username: 'bob', password: passwords.bob }, jar));
    assert.match(below.body, /<h1>Two-step sign-in is needed<\/h1>/);
    assert.match(below.body, /You have not set up an authenticator app or a passkey\./);
    const declined = await follow(f, jar, await post(f, `/interaction/${id}/decline`, { csrf_token: csrfOf(below.body) }, jar));
    assertErrorAtClient(f, declined, 'unmet_authentication_requirements');
    const [completed] = await f.auditEvents('step_up.completed');
    assert.deepEqual(completed!.details!.trigger, ['role_minimum']);
  });

  test('of a session: a person with an authenticator app is asked for their password and its code, and goes on at mfa', async (t) => {
    const f = await fixture(t);
    const session = await f.signIn('carol');
    const jar = new Jar(session.cookie);
    const { id, verifier } = await startAuthorization(f, jar, { claims: essential(acr.multiFactor) });
    const { body } = await page(f, jar, id);
    assert.match(body, /You are signed in as <strong>carol<\/strong> with your password\. Trading Desk needs two-step sign-in: a passkey, or your password and a code from your authenticator app to continue\./);
    assert.match(body, /<input type="hidden" name="username" value="carol">/);
    assert.match(body, /Then the code from your authenticator app\./);
    assert.doesNotMatch(body, /data-passkey="login"/, 'carol has no passkey');
    const password = await post(f, `/interaction/${id}/login`, { csrf_token: csrfOf(body), username: 'carol', password: passwords.carol }, jar);
    assert.equal(locationPath(f, password), `/interaction/${id}/second-factor`);
    const code = await submitSecondFactor(f, jar, id, { code: await codeAt(f.carolApp.secret, f.clock.now()) });
    const { idToken } = await approveAndRedeem(f, jar, id, verifier, code);
    assert.equal(idToken.acr, acr.multiFactor);
  });
});

describe('declining', () => {
  test('before signing in, at a required level, ends the request with unmet_authentication_requirements, audited with its trigger', async (t) => {
    const f = await fixture(t);
    const jar = new Jar();
    const { id } = await startAuthorization(f, jar, { claims: essential(acr.phishingResistant) });
    const declined = await post(f, `/interaction/${id}/decline`, { csrf_token: csrfOf((await page(f, jar, id)).body) }, jar);
    assert.equal(locationPath(f, declined), `/authorize/resume/${id}`);
    assertErrorAtClient(f, await follow(f, jar, declined), 'unmet_authentication_requirements');
    const [completed] = await f.auditEvents('step_up.completed');
    assert.equal(completed!.details!.outcome, 'declined');
    assert.deepEqual(completed!.details!.trigger, ['essential_acr']);
    assert.equal(completed!.details!.acr_values, acr.phishingResistant);
  });

  test('is refused without the page’s CSRF token or from another site, and changes nothing', async (t) => {
    const f = await fixture(t);
    const jar = new Jar();
    const { id } = await startAuthorization(f, jar, { claims: essential(acr.phishingResistant) });
    const csrf = csrfOf((await page(f, jar, id)).body);
    for (const [form, headers] of [[{}, {}], [{ csrf_token: 'x'.repeat(43) }, {}], [{ csrf_token: csrf }, { origin: 'https://evil.example' }]] as const) {
      const refused = await post(f, `/interaction/${id}/decline`, form, jar, headers);
      assert.equal(refused.statusCode, 403);
    }
    assert.equal((await page(f, jar, id)).statusCode, 200, 'the request goes on');
    assert.deepEqual(await f.auditEvents('step_up.completed'), []);
  });

  test('is not possible when no level is asked, or only a voluntary one: back to the page, and the request goes on', async (t) => {
    const f = await fixture(t);
    for (const query of [{}, { acr_values: acr.phishingResistant }] as Record<string, string>[]) {
      const jar = new Jar();
      const { id, verifier } = await startAuthorization(f, jar, query);
      const csrf = csrfOf((await page(f, jar, id)).body);
      const declined = await post(f, `/interaction/${id}/decline`, { csrf_token: csrf }, jar);
      assert.equal(locationPath(f, declined), `/interaction/${id}`);
      // A voluntary level: the password goes on at what it reached.
      const signedIn = await post(f, `/interaction/${id}/login`, { csrf_token: csrf, username: 'bob', password: passwords.bob }, jar);
      const { idToken } = await approveAndRedeem(f, jar, id, verifier, signedIn);
      assert.equal(idToken.acr, acr.password);
    }
  });
});
