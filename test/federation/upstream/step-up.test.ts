import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import * as client from 'openid-client';
import { startDeskApp, type DeskApp } from '../../helpers/desk-app.ts';
import { csrfOf, HttpBrowser } from '../../helpers/http-browser.ts';
import { defaultRiskSettings } from '../../../src/risk/settings.ts';
import { brokerLei, followAll, form, fundLei } from './fixture.ts';
import { startFakeUpstream, type FakeUpstream } from './fake-upstream.ts';

// Step-ups and freshness through an upstream (docs/identity-brokering.md "Sign-in" and
// "Assurance"): the fund's two factors count toward a step-up only when the fund authenticated the
// person after Clearance sent them there — never from the fund's own earlier session. A fake
// provider (./fake-upstream.ts) answers with the auth_time each test chooses: `good` (now) or
// `earlier_sign_in` (two minutes ago, its session).

const realm = 'pat@fund-x.example';
const mfa = 'urn:clearance:acr:mfa';
/** The fund's own acr for two factors, which its declaration maps to Clearance's `:mfa`. */
const fundMfa = 'urn:fund-x:acr:2fa';

interface Harness extends DeskApp {
  upstream: FakeUpstream;
}

async function startHarness(t: TestContext, apply: Record<string, unknown> = {}): Promise<Harness> {
  const desk = await startDeskApp(t);
  const upstream = await startFakeUpstream({ redirectUri: `${desk.server.issuer}/broker/oidc/callback` });
  t.after(() => upstream.close());
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
        acr: { map: { [fundMfa]: mfa }, max: mfa },
        allow_private_network: true,
      },
    ],
    ...apply,
  });
  return { ...desk, upstream };
}

/** The desk application's authorization request (`extra`: max_age, claims, …). */
async function requestUrl(h: Harness, extra: Record<string, string> = {}): Promise<URL> {
  return client.buildAuthorizationUrl(h.config, {
    redirect_uri: h.app.redirectUri,
    scope: 'openid order:create',
    code_challenge: await client.calculatePKCECodeChallenge(client.randomPKCECodeVerifier()),
    code_challenge_method: 'S256',
    state: client.randomState(),
    nonce: client.randomNonce(),
    ...extra,
  });
}

/** An essential acr claim of two factors (OIDC Core §5.5.1.1): a requirement, never waived. */
const twoFactorsRequired = { claims: JSON.stringify({ id_token: { acr: { essential: true, value: mfa } } }) };

/** From Clearance's page `page` (its HTML `html`): "Sign in through your organisation", followed until a page of Clearance's or the client. */
async function throughOrganisation(h: Harness, browser: HttpBrowser, page: URL, html: string, stopAt: (url: URL) => boolean = (u) => u.href.startsWith(h.app.redirectUri)) {
  return followAll(browser, `${page.href}/upstream`, form({ csrf_token: csrfOf(html), realm }), stopAt);
}

/** From the authorization request: Clearance's sign-in page, then the organisation's way. */
async function signIn(h: Harness, browser: HttpBrowser, extra: Record<string, string> = {}, stopAt?: (url: URL) => boolean) {
  const page = await browser.follow(await requestUrl(h, extra), h.server.issuer);
  assert.equal(page.response.status, 200, 'the sign-in page');
  const html = await page.response.text();
  assert.match(html, /Sign in through your organisation/);
  return throughOrganisation(h, browser, page.url, html, stopAt);
}

async function refusals(h: Harness) {
  const rows = await h.server.running.ctx.storage.db.selectFrom('audit_events').select(['event']).where('type', '=', 'upstream.sign_in_refused').orderBy('seq').execute();
  return rows.map((row) => JSON.parse(row.event) as { subject?: string; client?: string; decision?: { allow: boolean; reasons: string[] }; details: Record<string, unknown> });
}

async function fundSessions(h: Harness) {
  return h.server.running.ctx.storage.db.selectFrom('sessions').select(['id', 'acr', 'auth_time']).where('assurance_provider', '=', 'fund-x').where('ended_at', 'is', null).execute();
}

async function logins(h: Harness) {
  return (await h.server.running.ctx.storage.db.selectFrom('audit_events').select('seq').where('type', '=', 'user.login_succeeded').execute()).length;
}

/** The sign-in went on past Clearance's callback: a consent page of Clearance's, or the client. */
function wentOn(h: Harness, back: { response: Response; url: URL }) {
  assert.notEqual(back.url.pathname, '/broker/oidc/callback', `it went on past the callback (${back.response.status})`);
  assert.ok(back.response.status === 200 || back.response.status === 303, String(back.response.status));
}

test('a person on a step-up page cannot meet it through their organisation: the upstream route is refused, nothing is sent there, and the refusal is audited', async (t) => {
  const h = await startHarness(t);
  const browser = new HttpBrowser();
  // Pat signs in through the fund, which asserts no level it is trusted for: a password's.
  h.upstream.mode = 'good';
  wentOn(h, await signIn(h, browser));
  assert.equal((await fundSessions(h))[0]?.acr, 'urn:clearance:acr:pwd');
  // The desk now needs two factors. The fund has a two-factor session of its own, from before.
  h.upstream.mode = 'earlier_sign_in';
  h.upstream.person.claims.acr = fundMfa;
  const page = await browser.follow(await requestUrl(h, twoFactorsRequired), h.server.issuer);
  assert.equal(page.response.status, 200, 'the step-up page');
  const html = await page.response.text();
  assert.match(html, /You are signed in as/, 'it is the step-up page');
  const sentBefore = h.upstream.authorizations;
  const answer = await browser.fetch(`${page.url.href}/upstream`, form({ csrf_token: csrfOf(html), realm }));
  assert.equal(answer.status, 403, 'refused, not sent to the fund');
  assert.equal(answer.headers.get('cache-control'), 'no-store');
  assert.equal(answer.headers.get('location'), null);
  assert.match(await answer.text(), /own/);
  assert.equal(h.upstream.authorizations, sentBefore, 'the fund was not asked');
  const [refusal] = await refusals(h);
  assert.deepEqual(refusal?.decision, { allow: false, reasons: ['step_up_not_brokered'] });
  assert.equal(refusal?.client, 'desk-app');
  assert.equal(refusal?.details.acr_asked, mfa);
  const sessions = await fundSessions(h);
  assert.equal(sessions.length, 1, 'no new session');
  assert.equal(sessions[0]?.acr, 'urn:clearance:acr:pwd', 'still a password’s level');
  assert.equal(await logins(h), 1);
  assert.deepEqual(h.upstream.problems, []);
});

test('a person below the level a re-authentication asks (max_age) who goes through their organisation is asked for a renewed sign-in there: the fund’s earlier session does not lift them', async (t) => {
  const h = await startHarness(t);
  const browser = new HttpBrowser();
  // Pat's session: a password's level, authenticated at the fund two minutes ago.
  h.upstream.mode = 'earlier_sign_in';
  wentOn(h, await signIn(h, browser));
  // max_age=100 sends Pat to sign in again (their session is 120 s old) at two factors. The fund's
  // two-factor session, also 120 s old, is within max_age and its skew — but not a new sign-in.
  h.upstream.person.claims.acr = fundMfa;
  const back = await signIn(h, browser, { max_age: '100', ...twoFactorsRequired });
  assert.equal(h.upstream.lastAuthorization?.get('max_age'), '100');
  assert.equal(h.upstream.lastAuthorization?.get('prompt'), 'login', 'the fund is asked to authenticate Pat again');
  assert.equal(back.url.pathname, '/broker/oidc/callback');
  assert.equal(back.response.status, 401);
  const [refusal] = await refusals(h);
  assert.deepEqual(refusal?.decision, { allow: false, reasons: ['authentication_not_renewed'] });
  assert.equal(refusal?.details.renewal_asked_for, 'step_up');
  assert.equal((await fundSessions(h))[0]?.acr, 'urn:clearance:acr:pwd', 'not lifted');
  assert.equal(await logins(h), 1);
  // The fund authenticating Pat anew lifts them.
  h.upstream.mode = 'good';
  wentOn(h, await signIn(h, browser, { max_age: '100', ...twoFactorsRequired }));
  assert.ok((await fundSessions(h)).some((s) => s.acr === mfa));
  assert.deepEqual(h.upstream.problems, []);
});

/** Every sign-in is a risk step-up (the threshold is nothing), none is denied. */
function everySignInStepsUp(h: Harness) {
  h.server.running.ctx.risk.settings = { get: async () => ({ ...defaultRiskSettings, outcomes: { step_up: 0, deny: 1_000_000 } }) };
}

test('a risk step-up is not met by the fund’s two factors from its earlier session: the person is sent back with prompt=login, and an answer from that session again is refused', async (t) => {
  const h = await startHarness(t);
  everySignInStepsUp(h);
  h.upstream.mode = 'earlier_sign_in';
  h.upstream.person.claims.acr = fundMfa;
  const back = await signIn(h, new HttpBrowser());
  assert.equal(h.upstream.authorizations, 2, 'sent to the fund a second time');
  assert.equal(h.upstream.lastAuthorization?.get('prompt'), 'login', 'asking it to authenticate the person again');
  assert.equal(back.url.pathname, '/broker/oidc/callback');
  assert.equal(back.response.status, 401);
  assert.equal(back.response.headers.get('cache-control'), 'no-store');
  assert.ok(!back.response.headers.getSetCookie().some((c) => c.startsWith('clearance_session=')), 'no session cookie');
  const events = await refusals(h);
  assert.deepEqual(events.map((e) => e.details.reason), ['authentication_not_renewed']);
  assert.equal(events[0]?.details.renewal_asked_for, 'risk_step_up');
  assert.equal((await fundSessions(h)).length, 0, 'no session');
  assert.equal(await logins(h), 0);
  assert.deepEqual(h.upstream.problems, []);
});

test('a risk step-up is met by the fund’s two factors when the fund authenticated the person after being sent there, at once or when asked again', async (t) => {
  const h = await startHarness(t);
  everySignInStepsUp(h);
  h.upstream.person.claims.acr = fundMfa;
  // A sign-in the fund makes now: met at once.
  h.upstream.mode = 'good';
  wentOn(h, await signIn(h, new HttpBrowser()));
  assert.equal(h.upstream.authorizations, 1);
  // From the fund's earlier session: asked again with prompt=login, and the fund signs the person in anew.
  h.upstream.mode = 'earlier_sign_in';
  let visits = 0;
  const toFund = (u: URL) => u.href.startsWith(h.app.redirectUri) || (u.href.startsWith(`${h.upstream.issuer}/authorize`) && ++visits === 2);
  const browser = new HttpBrowser();
  const first = await signIn(h, browser, {}, toFund);
  assert.equal(first.response.status, 303);
  const again = new URL(first.response.headers.get('location')!);
  assert.ok(again.href.startsWith(`${h.upstream.issuer}/authorize`), again.href);
  assert.equal(again.searchParams.get('prompt'), 'login');
  h.upstream.mode = 'good';
  wentOn(h, await followAll(browser, again, {}, (u) => u.href.startsWith(h.app.redirectUri)));
  assert.equal((await refusals(h)).length, 0);
  assert.equal((await fundSessions(h)).filter((s) => s.acr === mfa).length, 2);
  assert.deepEqual(h.upstream.problems, []);
});

const recentSignInPolicy = `@id("all") permit (principal, action, resource);
@id("orders-need-a-recent-sign-in")
@step_up("urn:clearance:acr:pwd")
@step_up_max_age("60")
forbid (principal is User, action == Action::"order:create", resource)
unless { context has auth_age && context.auth_age <= 60 };`;

test('a step-up policy’s max age is passed to the fund as max_age, and the fund’s earlier session is refused rather than sending the person round again', async (t) => {
  const h = await startHarness(t, { policies: [{ version: 'v1', text: recentSignInPolicy, change_ref: 'CHG-31', author: 'alice.author', approver: 'bob.approver', active: true }] });
  const browser = new HttpBrowser();
  // The first sign-in asks nothing of the fund (the policy is the person's, known once they are):
  // its earlier session stands, and the policy sends Pat to sign in again.
  h.upstream.mode = 'earlier_sign_in';
  const first = await signIn(h, browser);
  assert.equal(first.response.status, 200);
  assert.ok(first.url.pathname.startsWith('/interaction/'), first.url.href);
  const html = await first.response.text();
  assert.match(html, /too long ago/);
  // Through the fund again: it is asked max_age=60 now, and its two-minute-old session is refused.
  const back = await throughOrganisation(h, browser, first.url, html);
  assert.equal(h.upstream.lastAuthorization?.get('max_age'), '60', 'the policy’s max age was passed on');
  assert.equal(back.url.pathname, '/broker/oidc/callback', 'refused, not sent round to the sign-in page again');
  assert.equal(back.response.status, 401);
  const [refusal] = await refusals(h);
  assert.deepEqual(refusal?.decision, { allow: false, reasons: ['authentication_too_old'] });
  assert.equal(refusal?.details.max_age, 60);
  // A sign-in the fund makes now meets it.
  h.upstream.mode = 'good';
  const page = await browser.follow(first.url, h.server.issuer);
  const again = await throughOrganisation(h, browser, page.url, await page.response.text());
  assert.equal(h.upstream.lastAuthorization?.get('max_age'), '60');
  wentOn(h, again);
  assert.match(again.response.status === 200 ? await again.response.text() : 'Approve', /Approve/, 'on to the consent page');
  assert.deepEqual(h.upstream.problems, []);
});
