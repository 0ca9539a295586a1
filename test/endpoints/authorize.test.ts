import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { fileURLToPath } from 'node:url';
import { changeKycByAdmin } from '../../src/risk/kyc/admin.ts';
import { decideConsent, loadInteraction, nextStep, recordAuthentication } from '../../src/authorization/interactions.ts';
import { codeFlowFixture, nativeRedirect, orderDetail, ordersApi, pkce, webRedirect, webRedirectWithQuery, type CodeFlowFixture } from '../authorization/fixture.ts';
import { planApply } from '../../src/apply/index.ts';
import { formatProblem } from '../../src/validation.ts';
import { decodeJwt } from './fixture.ts';

/** An error page: HTML, never a redirect, never framed. */
function assertErrorPage(response: LightMyRequestResponse, what = ''): void {
  const label = `${what} ${response.statusCode} ${response.headers.location ?? ''}`;
  assert.equal(response.statusCode, 400, label);
  assert.equal(response.headers.location, undefined, `no redirect: ${label}`);
  assert.match(String(response.headers['content-type']), /^text\/html/, label);
  assert.match(String(response.headers['content-security-policy']), /frame-ancestors 'none'/);
  assert.equal(response.headers['x-frame-options'], 'DENY');
  assert.equal(response.headers['cache-control'], 'no-store');
}

/** An error authorization response: a 303 to the redirect_uri with error, state and iss (RFC 9207). */
function assertErrorRedirect(f: CodeFlowFixture, response: LightMyRequestResponse, error: string, options: { redirect?: string; state?: string | null } = {}): URL {
  assert.equal(response.statusCode, 303, response.body);
  const location = new URL(String(response.headers.location));
  assert.equal(`${location.origin}${location.pathname}`, options.redirect ?? webRedirect);
  assert.equal(location.searchParams.get('error'), error, location.href);
  assert.equal(location.searchParams.get('iss'), f.issuer, 'iss in every authorization response');
  const state = options.state === undefined ? 'st-123' : options.state;
  assert.equal(location.searchParams.get('state'), state);
  assert.equal(location.searchParams.has('code'), false);
  return location;
}

function interactionId(location: URL | undefined): string {
  assert.ok(location?.pathname.startsWith('/interaction/'), `to the people side: ${location?.href}`);
  return location!.pathname.split('/').pop()!;
}

describe('the authorization endpoint', () => {
  test('sends a signed-in person to consent, then redirects (303) with the code, state and iss', async (t) => {
    const f = await codeFlowFixture(t);
    const person = await f.signIn('alice');
    const first = await f.authorize(f.request('web-app'), { cookie: person.cookie });
    assert.equal(first.response.statusCode, 303);
    assert.equal(first.response.headers['cache-control'], 'no-store');
    assert.equal(first.response.headers['referrer-policy'], 'no-referrer');
    assert.equal(first.response.headers['access-control-allow-origin'], undefined, 'no CORS on the authorization endpoint');
    assert.match(String(first.response.headers['set-cookie']), /^clearance_browser=[\w-]{43}; Path=\/; HttpOnly; SameSite=Lax$/);
    const id = interactionId(first.location);

    const interaction = await loadInteraction(f.ctx, id);
    assert.equal(interaction?.clientId, 'web-app');
    const step = await nextStep(f.ctx, id, person.authentication);
    assert.equal(step.step, 'consent');
    assert.ok(step.step === 'consent');
    assert.equal(step.consent.clientName, 'Trading Desk');
    assert.deepEqual(step.consent.resources, [{ identifier: ordersApi, name: 'Order API', scopes: ['order:create'] }]);
    assert.deepEqual(step.consent.lines, [
      'Tell Trading Desk who you are (your user identifier) and when you signed in',
      'Create orders at Order API (order:create)',
    ]);

    await decideConsent(f.ctx, id, person.authentication, true);
    const done = await f.resume(id, first.cookie);
    assert.equal(done.response.statusCode, 303);
    const location = done.location!;
    assert.equal(`${location.origin}${location.pathname}`, webRedirect);
    assert.match(location.searchParams.get('code')!, /^[\w-]{43}$/, '256 random bits');
    assert.equal(location.searchParams.get('state'), 'st-123');
    assert.equal(location.searchParams.get('iss'), f.issuer);
    assert.equal((await f.auditEvents('consent.granted')).length, 1);
    const [issued] = await f.auditEvents('code.issued');
    assert.equal(issued!.subject, person.userId);
    assert.equal(issued!.client, 'web-app');
    assert.equal(await loadInteraction(f.ctx, id), undefined, 'a completed interaction is gone');
  });

  test('issues the code at once when the session suffices and an earlier consent covers the request', async (t) => {
    const f = await codeFlowFixture(t);
    const { person } = await f.authorizeAndApprove({});
    const again = await f.authorize(f.request('web-app'), { cookie: person.cookie });
    assert.equal(again.response.statusCode, 303);
    assert.ok(again.location!.searchParams.get('code'));
    assert.equal(again.location!.searchParams.get('iss'), f.issuer);
  });

  test('accepts the request by POST too (RFC 6749 §3.1)', async (t) => {
    const f = await codeFlowFixture(t);
    const { person } = await f.authorizeAndApprove({});
    const again = await f.authorize(f.request('web-app'), { cookie: person.cookie, method: 'POST' });
    assert.equal(again.response.statusCode, 303, 'never 307');
    assert.ok(again.location!.searchParams.get('code'));
  });

  test('answers a cross-origin GET, POST or preflight without any Access-Control-Allow-* header', async (t) => {
    // RFC 9700 §2.6: CORS MUST NOT be supported at the authorization endpoint, which the client
    // redirects the browser to and never calls itself; with CORS, a page on any site could read
    // the 303's Location (a code, once a session and consent exist) from a fetch with credentials.
    const f = await codeFlowFixture(t);
    const origin = 'https://evil.example';
    const { person } = await f.authorizeAndApprove({});
    const corsHeaders = (response: LightMyRequestResponse) => Object.keys(response.headers).filter((name) => name.startsWith('access-control-'));
    const query = new URLSearchParams(f.request('web-app') as Record<string, string>).toString();

    const get = await f.inject({ method: 'GET', url: `/authorize?${query}`, headers: { origin, cookie: person.cookie } });
    const post = await f.inject({
      method: 'POST',
      url: '/authorize',
      headers: { origin, cookie: person.cookie, 'content-type': 'application/x-www-form-urlencoded' },
      payload: query,
    });
    for (const [what, response] of [['GET', get], ['POST', post]] as const) {
      // The good case first: the request is answered in full (the code is issued), so the missing
      // headers are not an artefact of a refusal. The same response's other headers are read the same
      // way, so a CORS header would be seen if it were there.
      assert.equal(response.statusCode, 303, `${what}: ${response.body}`);
      assert.ok(new URL(String(response.headers.location)).searchParams.get('code'), `${what}: a code`);
      assert.equal(response.headers['referrer-policy'], 'no-referrer', what);
      assert.equal(response.headers['access-control-allow-origin'], undefined, `${what}: no Access-Control-Allow-Origin`);
      assert.equal(response.headers['access-control-allow-credentials'], undefined, `${what}: no Access-Control-Allow-Credentials`);
      assert.deepEqual(corsHeaders(response), [], `${what}: no CORS header at all`);
    }

    // A preflight, as a browser sends before a credentialed cross-origin fetch: whatever the status,
    // never a 5xx and no permission. (Clearance has no OPTIONS routes and no CORS on any endpoint —
    // not on /token, /jwks or discovery either — so there is no endpoint with CORS to contrast with.)
    const preflight = await f.inject({ method: 'OPTIONS', url: '/authorize', headers: { origin, 'access-control-request-method': 'GET' } });
    assert.ok(preflight.statusCode < 500, `never a 5xx: ${preflight.statusCode} ${preflight.body}`);
    assert.deepEqual(corsHeaders(preflight), [], `no Access-Control-Allow-* on a preflight: ${JSON.stringify(preflight.headers)}`);
  });

  test('keeps the registered query of a redirect_uri and appends the response to it', async (t) => {
    const f = await codeFlowFixture(t);
    const { location } = await f.authorizeAndApprove({ query: { redirect_uri: webRedirectWithQuery } });
    assert.ok(location.href.startsWith(`${webRedirectWithQuery}&code=`), location.href);
    assert.equal(location.searchParams.get('tenant'), 'a');
  });

  describe('never redirects before the client and redirect_uri are established', () => {
    test('renders an error page for an unregistered redirect_uri, or a registered one with its query changed', async (t) => {
      const f = await codeFlowFixture(t);
      for (const redirect of [
        'https://evil.example.com/cb',
        'https://app.example.com/cb?tenant=b',
        'https://app.example.com/cb?tenant=a&x=1',
        'https://app.example.com/cb/',
        'https://app.example.com/cb#fragment',
        'http://app.example.com/cb',
      ]) {
        assertErrorPage((await f.authorize(f.request('web-app', { redirect_uri: redirect }))).response, redirect);
      }
    });

    test('renders an error page without a redirect_uri, even for a client with one registered', async (t) => {
      const f = await codeFlowFixture(t);
      assertErrorPage((await f.authorize(f.request('code-only', { redirect_uri: undefined }))).response);
    });

    test('renders an error page for a missing, unknown or repeated client_id, or a client without the code flow', async (t) => {
      const f = await codeFlowFixture(t);
      assertErrorPage((await f.authorize(f.request('web-app', { client_id: undefined }))).response, 'missing');
      assertErrorPage((await f.authorize(f.request('web-app', { client_id: 'nobody' }))).response, 'unknown');
      assertErrorPage((await f.authorize(f.request('web-app', { client_id: ['web-app', 'web-app'] }))).response, 'repeated');
      assertErrorPage((await f.authorize(f.request('web-app', { client_id: 'broker-1' }))).response, 'client_credentials only');
      const page = (await f.authorize(f.request('web-app', { client_id: 'nobody' }))).response;
      assert.match(page.body, /invalid_client/);
      assert.doesNotMatch(page.body, /<script/i);
    });

    test('escapes what the request put into the error page', async (t) => {
      const f = await codeFlowFixture(t);
      const page = (await f.authorize(f.request('web-app', { redirect_uri: 'https://x.example/<script>alert(1)</script>' }))).response;
      assertErrorPage(page);
      assert.doesNotMatch(page.body, /<script>alert/);
    });

    test('renders an error page for a repeated redirect_uri', async (t) => {
      const f = await codeFlowFixture(t);
      assertErrorPage((await f.authorize(f.request('web-app', { redirect_uri: [webRedirect, webRedirect] }))).response);
    });

    test('lets a native app use any port on a loopback IP redirect, and nothing else (RFC 8252 §7.3)', async (t) => {
      const f = await codeFlowFixture(t);
      const person = await f.signIn('alice');
      const ok = await f.authorize(f.request('native-app', { redirect_uri: 'http://127.0.0.1:53124/callback' }), { cookie: person.cookie });
      interactionId(ok.location);
      for (const redirect of ['http://127.0.0.1:53124/other', 'http://localhost:53124/callback', 'http://127.0.0.1.evil.com/callback', 'http://127.0.0.1:53124/callback#x']) {
        assertErrorPage((await f.authorize(f.request('native-app', { redirect_uri: redirect }))).response, redirect);
      }
    });
  });

  test('refuses to register http redirect URIs other than loopback, fragments, and PAR for public clients', async (t) => {
    const f = await codeFlowFixture(t);
    const client = (extra: Record<string, unknown>) => ({ client_id: 'bad-app', kind: 'app', grant_types: ['authorization_code'], ...extra });
    const problems = async (extra: Record<string, unknown>) => (await planApply(f.ctx, { clients: [client(extra)] })).problems.map(formatProblem).join('; ');
    assert.match(await problems({ redirect_uris: ['http://app.example.com/cb'] }), /redirect_uris\[0\]: must be https/);
    assert.match(await problems({ redirect_uris: ['https://app.example.com/cb#x'] }), /redirect_uris\[0\]: must not contain a fragment/);
    assert.match(await problems({ redirect_uris: ['http://127.0.0.1/cb'], token_endpoint_auth_method: 'none', require_pushed_authorization_requests: true }), /require_pushed_authorization_requests/);
    assert.equal(await problems({ redirect_uris: ['http://127.0.0.1/cb', 'http://[::1]/cb'], token_endpoint_auth_method: 'none' }), '');
  });

  describe('returns other errors to the client with iss (RFC 9207)', () => {
    test('refuses response_type token, id_token, code id_token and others as unsupported_response_type', async (t) => {
      const f = await codeFlowFixture(t);
      for (const type of ['token', 'id_token', 'code id_token', 'code token', 'none']) {
        assertErrorRedirect(f, (await f.authorize(f.request('web-app', { response_type: type }))).response, 'unsupported_response_type');
      }
      assertErrorRedirect(f, (await f.authorize(f.request('web-app', { response_type: undefined }))).response, 'invalid_request');
    });

    test('requires PKCE with S256: no challenge, plain, no method or a malformed challenge is invalid_request', async (t) => {
      const f = await codeFlowFixture(t);
      assertErrorRedirect(f, (await f.authorize(f.request('web-app', { code_challenge: undefined }))).response, 'invalid_request');
      assertErrorRedirect(f, (await f.authorize(f.request('web-app', { code_challenge_method: 'plain' }))).response, 'invalid_request');
      assertErrorRedirect(f, (await f.authorize(f.request('web-app', { code_challenge_method: undefined }))).response, 'invalid_request');
      assertErrorRedirect(f, (await f.authorize(f.request('web-app', { code_challenge: 'short' }))).response, 'invalid_request');
    });

    test('refuses scopes the client may not have, and more than one resource', async (t) => {
      const f = await codeFlowFixture(t);
      assertErrorRedirect(f, (await f.authorize(f.request('web-app', { scope: 'openid trade:execute' }))).response, 'invalid_scope');
      assertErrorRedirect(f, (await f.authorize(f.request('native-app', { scope: 'openid offline_access' }))).response, 'invalid_scope', { redirect: nativeRedirect });
      assertErrorRedirect(f, (await f.authorize(f.request('web-app', { scope: 'payments' }))).response, 'invalid_scope');
      assertErrorRedirect(f, (await f.authorize(f.request('web-app', { scope: 'order:create', resource: [ordersApi, 'https://clearing.example.com'] }))).response, 'invalid_target');
    });

    test('refuses a parameter sent twice, without losing the state', async (t) => {
      const f = await codeFlowFixture(t);
      assertErrorRedirect(f, (await f.authorize(f.request('web-app', { scope: ['openid', 'openid order:create'] }))).response, 'invalid_request');
      assertErrorRedirect(f, (await f.authorize(f.request('web-app', { state: ['a', 'b'] }))).response, 'invalid_request', { state: null });
    });

    test('refuses unsupported prompt values, prompt=none with others, a malformed max_age and response_mode', async (t) => {
      const f = await codeFlowFixture(t);
      assertErrorRedirect(f, (await f.authorize(f.request('web-app', { prompt: 'select_account' }))).response, 'invalid_request');
      assertErrorRedirect(f, (await f.authorize(f.request('web-app', { prompt: 'none login' }))).response, 'invalid_request');
      assertErrorRedirect(f, (await f.authorize(f.request('web-app', { max_age: '-1' }))).response, 'invalid_request');
      assertErrorRedirect(f, (await f.authorize(f.request('web-app', { response_mode: 'fragment' }))).response, 'invalid_request');
    });

    test('refuses invalid authorization_details with invalid_authorization_details (RFC 9396 §5)', async (t) => {
      const f = await codeFlowFixture(t);
      const bad = JSON.stringify([{ ...orderDetail, side: 'short' }]);
      assertErrorRedirect(f, (await f.authorize(f.request('web-app', { authorization_details: bad }))).response, 'invalid_authorization_details');
      assertErrorRedirect(f, (await f.authorize(f.request('web-app', { authorization_details: '[{"type":"wire"}]' }))).response, 'invalid_authorization_details');
    });

    test('refuses a counterparty name that hides a character or mixes look-alike scripts (it would be screened and shown as another name)', async (t) => {
      const f = await codeFlowFixture(t);
      const instruction = (counterparty_name: string) => JSON.stringify([{ type: 'settlement_instruction', settlement_type: 'dvp', account: 'GB-FX-001', counterparty_lei: '5493001KJTIIGC8Y1R12', counterparty_name, max_amount: { amount: '1000', currency: 'USD' } }]);
      for (const [name, problem] of [['Example Embar\u200Bgoed Trading LLC', /invisible or control character/], ['Ex\u0430mple Embargoed Trading LLC', /mixes Latin with Cyrillic or Greek/]] as const) {
        const location = assertErrorRedirect(f, (await f.authorize(f.request('web-app', { scope: 'settlement:submit', authorization_details: instruction(name) }))).response, 'invalid_authorization_details');
        assert.match(location.searchParams.get('error_description')!, problem);
      }
    });

    test('refuses a client that must use PAR when it sends a plain request', async (t) => {
      const f = await codeFlowFixture(t);
      const location = assertErrorRedirect(f, (await f.authorize(f.request('par-app'))).response, 'invalid_request', { redirect: 'https://par.example.com/cb' });
      assert.match(location.searchParams.get('error_description')!, /pushed authorization/);
    });
  });

  describe('prompt, max_age and acr_values (OIDC Core §3.1.2.1)', () => {
    test('answers prompt=none without a session with login_required', async (t) => {
      const f = await codeFlowFixture(t);
      assertErrorRedirect(f, (await f.authorize(f.request('web-app', { prompt: 'none' }))).response, 'login_required');
    });

    test('answers prompt=none with a session but no consent with consent_required', async (t) => {
      const f = await codeFlowFixture(t);
      const person = await f.signIn('alice');
      assertErrorRedirect(f, (await f.authorize(f.request('web-app', { prompt: 'none' }), { cookie: person.cookie })).response, 'consent_required');
    });

    test('issues the code for prompt=none when the session and the grant suffice', async (t) => {
      const f = await codeFlowFixture(t);
      const { person } = await f.authorizeAndApprove({});
      const result = await f.authorize(f.request('web-app', { prompt: 'none' }), { cookie: person.cookie });
      assert.ok(result.location?.searchParams.get('code'));
    });

    test('forces a login when the session is older than max_age, and the ID token then has the new auth_time', async (t) => {
      const f = await codeFlowFixture(t);
      const { person } = await f.authorizeAndApprove({});
      f.clock.advance(2000);
      assertErrorRedirect(f, (await f.authorize(f.request('web-app', { prompt: 'none', max_age: '1' }), { cookie: person.cookie })).response, 'login_required');

      const challenge = pkce();
      const first = await f.authorize(f.request('web-app', { max_age: '1', code_challenge: challenge.challenge }), { cookie: person.cookie });
      const id = interactionId(first.location);
      assert.deepEqual(await nextStep(f.ctx, id, person.authentication), { step: 'login', reason: 'max_age' });
      const fresh = await f.signIn('alice');
      await recordAuthentication(f.ctx, id, fresh.authentication);
      assert.deepEqual(await nextStep(f.ctx, id, fresh.authentication), { step: 'done' });
      const done = await f.resume(id, `${first.cookie}; ${fresh.cookie}`);
      const code = done.location!.searchParams.get('code')!;
      const tokens = (await f.redeem('web-app', code, challenge.verifier)).json() as { id_token: string };
      const idToken = decodeJwt(tokens.id_token).payload;
      assert.equal(idToken.auth_time, fresh.authentication.authTime);
      assert.equal(idToken.auth_time, Math.floor(f.clock.now() / 1000));
    });

    test('asks for a login with prompt=login even with a session, and for consent with prompt=consent even with a grant', async (t) => {
      const f = await codeFlowFixture(t);
      const { person } = await f.authorizeAndApprove({});
      const login = await f.authorize(f.request('web-app', { prompt: 'login' }), { cookie: person.cookie });
      assert.deepEqual(await nextStep(f.ctx, interactionId(login.location), person.authentication), { step: 'login', reason: 'prompt_login' });
      const consent = await f.authorize(f.request('web-app', { prompt: 'consent' }), { cookie: person.cookie });
      assert.equal((await nextStep(f.ctx, interactionId(consent.location), person.authentication)).step, 'consent');
    });

    test('asks for a step-up login when the session does not meet acr_values', async (t) => {
      const f = await codeFlowFixture(t);
      const { person } = await f.authorizeAndApprove({});
      const result = await f.authorize(f.request('web-app', { acr_values: 'urn:clearance:acr:mfa' }), { cookie: person.cookie });
      assert.deepEqual(await nextStep(f.ctx, interactionId(result.location), person.authentication), { step: 'login', reason: 'acr', acr: 'urn:clearance:acr:mfa', voluntary: true });
      const met = await f.authorize(f.request('web-app', { acr_values: 'urn:clearance:acr:mfa urn:clearance:acr:pwd' }), { cookie: person.cookie });
      assert.ok(met.location?.searchParams.get('code'));
    });

    test('sends a browser without a session to the people side to log in', async (t) => {
      const f = await codeFlowFixture(t);
      const result = await f.authorize(f.request('web-app'));
      assert.deepEqual(await nextStep(f.ctx, interactionId(result.location), undefined), { step: 'login', reason: 'no_session' });
    });
  });

  describe('resuming after the interaction', () => {
    test('redirects access_denied with state and iss when the person denies', async (t) => {
      const f = await codeFlowFixture(t);
      const person = await f.signIn('alice');
      const first = await f.authorize(f.request('web-app'), { cookie: person.cookie });
      const id = interactionId(first.location);
      await decideConsent(f.ctx, id, person.authentication, false);
      assertErrorRedirect(f, (await f.resume(id, first.cookie)).response, 'access_denied');
      assert.equal((await f.auditEvents('consent.denied')).length, 1);
    });

    test('sends the browser back to the people side while a step remains', async (t) => {
      const f = await codeFlowFixture(t);
      const person = await f.signIn('alice');
      const first = await f.authorize(f.request('web-app'), { cookie: person.cookie });
      const id = interactionId(first.location);
      const early = await f.resume(id, first.cookie);
      assert.equal(early.response.statusCode, 303);
      assert.equal(early.location!.pathname, `/interaction/${id}`);
    });

    test('refuses to resume in another browser, twice, or an unknown or expired interaction', async (t) => {
      const f = await codeFlowFixture(t);
      const person = await f.signIn('alice');
      const first = await f.authorize(f.request('web-app'), { cookie: person.cookie });
      const id = interactionId(first.location);
      await decideConsent(f.ctx, id, person.authentication, true);
      assertErrorPage((await f.resume(id, person.cookie)).response, 'no binding cookie');
      assertErrorPage((await f.resume(id, `${person.cookie}; clearance_browser=${'A'.repeat(43)}`)).response, 'another browser');
      assert.ok((await f.resume(id, first.cookie)).location?.searchParams.get('code'));
      assertErrorPage((await f.resume(id, first.cookie)).response, 'twice');
      assertErrorPage((await f.resume('unknown-id', first.cookie)).response, 'unknown');

      const later = await f.authorize(f.request('web-app', { prompt: 'consent' }), { cookie: person.cookie });
      const laterId = interactionId(later.location);
      f.clock.advance(601_000);
      assertErrorPage((await f.resume(laterId, later.cookie)).response, 'expired');
      assert.equal(await loadInteraction(f.ctx, laterId), undefined);
    });

    test('binds the browser by __Host-clearance_browser on an https issuer, and takes no binding from a bare clearance_browser planted beside it', async (t) => {
      const f = await codeFlowFixture(t, { env: { CLEARANCE_ISSUER: 'https://id.broker.example' } });
      const person = await f.signIn('alice');
      assert.match(person.cookie, /^__Host-clearance_session=/);
      const first = await f.authorize(f.request('web-app'), { cookie: person.cookie });
      const setCookie = String(first.response.headers['set-cookie']);
      assert.match(setCookie, /^__Host-clearance_browser=[\w-]{43}; Path=\/; HttpOnly; SameSite=Lax; Secure$/);
      assert.doesNotMatch(setCookie, /Domain=/i);
      const browserId = /^__Host-clearance_browser=([\w-]{43});/.exec(setCookie)![1]!;
      const id = interactionId(first.location);
      await decideConsent(f.ctx, id, person.authentication, true);
      // The right value under the bare name (as a sibling subdomain or an http page could set it) binds nothing.
      assertErrorPage((await f.resume(id, `${person.cookie}; clearance_browser=${browserId}`)).response, 'a bare binding cookie');
      assertErrorPage((await f.resume(id, `${person.cookie}; __Secure-clearance_browser=${browserId}`)).response, 'a __Secure- binding cookie at the root');
      assert.ok((await f.resume(id, `${person.cookie}; __Host-clearance_browser=${browserId}`)).location?.searchParams.get('code'), 'the prefixed one binds');
    });

    test('refuses a consent decision by someone other than the person who logged in', async (t) => {
      const f = await codeFlowFixture(t);
      const alice = await f.signIn('alice');
      const bob = await f.signIn('bob');
      const first = await f.authorize(f.request('web-app'));
      const id = interactionId(first.location);
      await recordAuthentication(f.ctx, id, alice.authentication);
      await assert.rejects(decideConsent(f.ctx, id, bob.authentication, true), /not the person/);
    });
  });

  test('shows authorization_details on the consent page in plain language and puts them in the token', async (t) => {
    const f = await codeFlowFixture(t);
    const person = await f.signIn('alice');
    const challenge = pkce();
    const query = f.request('web-app', { scope: 'order:create', authorization_details: JSON.stringify([orderDetail]), code_challenge: challenge.challenge });
    const first = await f.authorize(query, { cookie: person.cookie });
    const id = interactionId(first.location);
    const step = await nextStep(f.ctx, id, person.authentication);
    assert.ok(step.step === 'consent');
    assert.deepEqual(step.consent.authorizationDetails, [orderDetail]);
    assert.ok(step.consent.lines.includes('Create buy orders in UST 10Y (bond) up to USD 10,000,000 on venue XNYS for account ACC-7781'), step.consent.lines.join('\n'));
    await decideConsent(f.ctx, id, person.authentication, true);
    const code = (await f.resume(id, first.cookie)).location!.searchParams.get('code')!;
    const response = await f.redeem('web-app', code, challenge.verifier);
    assert.equal(response.statusCode, 200, response.body);
    const body = response.json() as { access_token: string; authorization_details: unknown[] };
    assert.deepEqual(body.authorization_details, [orderDetail], 'RFC 9396 §7: in the token response');
    assert.deepEqual(decodeJwt(body.access_token).payload.authorization_details, [orderDetail]);
    assert.deepEqual((await f.introspect('web-app', body.access_token)).authorization_details, [orderDetail]);

    // Transaction-specific details always need the person's consent again.
    const again = await f.authorize(f.request('web-app', { scope: 'order:create', authorization_details: JSON.stringify([orderDetail]) }), { cookie: person.cookie });
    interactionId(again.location);
  });

  test('accepts orders in the declared instrument classes only, once the operator declares its own', async (t) => {
    const f = await codeFlowFixture(t);
    const person = await f.signIn('alice');
    const order = (instrumentClass: string) => f.request('web-app', { scope: 'order:create', authorization_details: JSON.stringify([{ ...orderDetail, instrument: { class: instrumentClass, symbol: 'SOFR-2Y' } }]) });
    // A fresh install knows the built-in classes (bond among them), and not the firm's.
    interactionId((await f.authorize(order('bond'), { cookie: person.cookie })).location);
    assertErrorRedirect(f, (await f.authorize(order('rates_derivatives'), { cookie: person.cookie })).response, 'invalid_authorization_details');
    // Declared classes replace the built-in ones entirely.
    await f.apply({ instrument_classes: [{ id: 'rates_derivatives', complex: true }] });
    interactionId((await f.authorize(order('rates_derivatives'), { cookie: person.cookie })).location);
    const refused = assertErrorRedirect(f, (await f.authorize(order('bond'), { cookie: person.cookie })).response, 'invalid_authorization_details');
    // RFC 9396 §5; error_description quotes with ' (RFC 6749 §5.2 excludes ").
    assert.equal(refused.searchParams.get('error_description'), "authorization_details[0].instrument.class 'bond' is not a declared instrument class");
  });
});

describe('the browser that started an authorization request', () => {
  test('is the only one that can open its sign-in page: a link to it opened in another browser finds nothing', async (t) => {
    const f = await codeFlowFixture(t);
    const started = await f.authorize(f.request('web-app'));
    assert.equal(started.response.statusCode, 303);
    const id = interactionId(started.location);
    const page = (cookie?: string) => f.app.inject({ method: 'GET', url: `/interaction/${id}`, headers: cookie ? { cookie } : {} });

    const own = await page(started.cookie);
    assert.equal(own.statusCode, 200);
    assert.match(own.body, /name="password"/);

    // The attacker sends the victim the link: the victim's browser has no (or another) binding cookie.
    for (const cookie of [undefined, 'clearance_browser=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA']) {
      const other = await page(cookie);
      assert.equal(other.statusCode, 400, String(cookie));
      assert.doesNotMatch(other.body, /name="password"/);
      const login = await f.app.inject({
        method: 'POST',
        url: `/interaction/${id}/login`,
        headers: { 'content-type': 'application/x-www-form-urlencoded', ...(cookie ? { cookie } : {}) },
        payload: 'username=alice&password=whatever-it-is&csrf_token=x',
      });
      assert.ok(login.statusCode === 400 || login.statusCode === 403, `${login.statusCode}`);
    }
    assert.equal((await loadInteraction(f.ctx, id))?.authentication, undefined, 'nobody signed in on the request');
  });
});

describe('what the token endpoint would refuse, refused before the person is asked', () => {
  const screeningList = fileURLToPath(new URL('../../examples/screening/list.csv', import.meta.url));
  const settlement = (counterparty: Record<string, string>) =>
    JSON.stringify([{ type: 'settlement_instruction', settlement_type: 'dvp', account: 'GB-FX-001', max_amount: { amount: '1000000', currency: 'USD' }, ...counterparty }]);
  const clean = { counterparty_lei: '5493001KJTIIGC8Y1R12', counterparty_name: 'Example Broker Ltd' };
  const listed = { counterparty_lei: '5299000FICTSHIP00137' };
  const refusedDescription = 'authorization_details[0] names a counterparty that cannot be accepted at present';

  test('a listed counterparty in authorization_details is an invalid_authorization_details redirect, audited and alerted, and the person is never shown its consent — signed in already, signing in during the request, or by a pushed request', async (t) => {
    const f = await codeFlowFixture(t, { env: { CLEARANCE_SCREENING_LIST: screeningList } });
    const person = await f.signIn('alice');
    const query = (counterparty: Record<string, string>) => f.request('web-app', { scope: 'settlement:submit', authorization_details: settlement(counterparty) });

    // Signed in already: refused at once, no interaction.
    const atOnce = assertErrorRedirect(f, (await f.authorize(query(listed), { cookie: person.cookie })).response, 'invalid_authorization_details');
    assert.equal(atOnce.searchParams.get('error_description'), refusedDescription, 'as at the token endpoint: nothing tells the client why');
    assert.equal((await f.ctx.storage.db.selectFrom('interactions').select('id').execute()).length, 0, 'nobody is asked');

    // Signing in during the request: once the person is known, the people side is told there is nothing to ask, and resume refuses.
    const first = await f.authorize(query(listed));
    const id = interactionId(first.location);
    await recordAuthentication(f.ctx, id, person.authentication);
    assert.equal((await nextStep(f.ctx, id, undefined)).step, 'done', 'no consent page');
    assert.equal(assertErrorRedirect(f, (await f.resume(id, first.cookie)).response, 'invalid_authorization_details').searchParams.get('error_description'), refusedDescription);
    assert.equal(await loadInteraction(f.ctx, id), undefined, 'the request is over');

    // A pushed request is screened when it is used.
    const pushed = await f.par('web-app', query(listed));
    assert.equal(pushed.statusCode, 201, pushed.body);
    const fromPar = await f.authorize({ client_id: 'web-app', request_uri: (pushed.json() as { request_uri: string }).request_uri }, { cookie: person.cookie });
    assertErrorRedirect(f, fromPar.response, 'invalid_authorization_details');

    const denied = (await f.auditEvents('policy.denied')).filter((e) => e.decision!.reasons.includes('counterparty-screening'));
    assert.deepEqual(
      denied.map((e) => [e.subject, e.client, e.details!.authorization_details, e.details!.entry_id, e.details!.via]),
      [1, 2, 3].map(() => [person.userId, 'web-app', 0, 'SAN-E001', 'authorization_code']),
    );
    const alerts = await f.ctx.storage.db.selectFrom('alerts').select('data').where('type', '=', 'screening.matched').execute();
    assert.deepEqual(alerts.map((a) => (JSON.parse(a.data) as Record<string, unknown>).entry_id), ['SAN-E001', 'SAN-E001', 'SAN-E001']);

    // A clean counterparty is asked as before.
    const asked = await f.authorize(query(clean), { cookie: person.cookie });
    assert.equal((await nextStep(f.ctx, interactionId(asked.location), person.authentication)).step, 'consent');
  });

  test('a counterparty frozen while the person is on the consent page is refused at resume: no code', async (t) => {
    const f = await codeFlowFixture(t, { env: { CLEARANCE_SCREENING_LIST: screeningList } });
    const person = await f.signIn('alice');
    const first = await f.authorize(f.request('web-app', { scope: 'settlement:submit', authorization_details: settlement(clean) }), { cookie: person.cookie });
    const id = interactionId(first.location);
    assert.equal((await nextStep(f.ctx, id, person.authentication)).step, 'consent');
    await decideConsent(f.ctx, id, person.authentication, true);
    await changeKycByAdmin(f.ctx, { type: 'LegalEntity', id: clean.counterparty_lei }, { status: 'frozen' }, { actor: 'admin-ops', reason: 'test' });
    assert.equal((await nextStep(f.ctx, id, person.authentication)).step, 'done');
    assertErrorRedirect(f, (await f.resume(id, first.cookie)).response, 'invalid_authorization_details');
    assert.equal((await f.auditEvents('code.issued')).length, 0);
    const [denied] = (await f.auditEvents('policy.denied')).filter((e) => e.decision!.reasons.includes('counterparty-kyc-frozen'));
    assert.equal(denied!.details!.counterparty_lei, clean.counterparty_lei);
  });

  test('a frozen person is refused with access_denied in the redirect (the token endpoint\'s invalid_grant is no authorization error), audited policy.denied kyc-frozen, never shown a consent page — signed in already, or signing in during the request', async (t) => {
    const f = await codeFlowFixture(t);
    const person = await f.signIn('alice');
    await changeKycByAdmin(f.ctx, { type: 'User', id: person.userId }, { status: 'frozen' }, { actor: 'admin-ops', reason: 'test' });

    const atOnce = assertErrorRedirect(f, (await f.authorize(f.request('web-app'), { cookie: person.cookie })).response, 'access_denied');
    assert.equal(atOnce.searchParams.get('error_description'), 'no token can be issued for this subject at present');
    assertErrorRedirect(f, (await f.authorize(f.request('web-app', { prompt: 'none' }), { cookie: person.cookie })).response, 'access_denied');

    const first = await f.authorize(f.request('web-app'));
    const id = interactionId(first.location);
    await recordAuthentication(f.ctx, id, person.authentication);
    assert.equal((await nextStep(f.ctx, id, undefined)).step, 'done', 'no consent page');
    assertErrorRedirect(f, (await f.resume(id, first.cookie)).response, 'access_denied');

    const denied = (await f.auditEvents('policy.denied')).filter((e) => e.decision!.reasons.includes('kyc-frozen'));
    assert.deepEqual(denied.map((e) => [e.subject, e.client, e.details!.frozen, e.details!.via]), [1, 2, 3].map(() => [person.userId, 'web-app', `User::${JSON.stringify(person.userId)}`, 'authorization_code']));
    assert.equal((await f.auditEvents('code.issued')).length, 0);
  });

  test('a frozen session holder sent to sign in again (prompt=login) is not refused for whoever signs in next: the check waits for the sign-in', async (t) => {
    const f = await codeFlowFixture(t);
    const person = await f.signIn('alice');
    await changeKycByAdmin(f.ctx, { type: 'User', id: person.userId }, { status: 'frozen' }, { actor: 'admin-ops', reason: 'test' });
    const again = await f.authorize(f.request('web-app', { prompt: 'login' }), { cookie: person.cookie });
    assert.match(String(again.response.headers.location), /\/interaction\//, 'the sign-in page, not a refusal naming the session holder');
    assert.deepEqual((await f.auditEvents('policy.denied')).filter((e) => e.decision!.reasons.includes('kyc-frozen')), []);
  });
});
