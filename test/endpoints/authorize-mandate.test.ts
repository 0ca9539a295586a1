import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { findActiveGrant, grantView } from '../../src/authorization/consent.ts';
import { decideConsent } from '../../src/authorization/interactions.ts';
import { codeFlowFixture, orderDetail, parRedirect, pkce, webRedirect, type CodeFlowFixture, type Person } from '../authorization/fixture.ts';
import { testDialects } from '../helpers/storage.ts';
import { assertOAuthError, decodeJwt } from './fixture.ts';

/**
 * Issue 12 item 2: a client whose scopes a person approved could add `mandate=…` (even with
 * `prompt=none`) and get a code under a firm's mandate without the consent page. The person's
 * consent grant records the mandates they consented to; any other mandate needs the consent page.
 */

const mandate = (id: string) => ({
  id,
  grantor: { lei: '5493001KJTIIGC8Y1R12' },
  grantee: { user: 'alice' },
  scopes: ['order:create'],
  legal_basis: { reference: 'Desk authority 12' },
  effective_from: '2020-01-01T00:00:00Z',
  accepted_by: 'ops',
  accepted_at: '2020-01-01T00:00:00Z',
});

/** A 303 to the people side (no code); returns the interaction id. */
function interactionId(result: { response: LightMyRequestResponse; location?: URL }): string {
  assert.equal(result.response.statusCode, 303, result.response.body);
  assert.ok(result.location?.pathname.startsWith('/interaction/'), `to the consent page, not the client: ${result.location?.href}`);
  return result.location!.pathname.split('/').pop()!;
}

/** OIDC Core §3.1.2.6: consent_required to the redirect_uri, with state and iss (RFC 9207), no code. */
function assertConsentRequired(f: CodeFlowFixture, response: LightMyRequestResponse, redirect = webRedirect): void {
  assert.equal(response.statusCode, 303, response.body);
  const location = new URL(String(response.headers.location));
  assert.equal(`${location.origin}${location.pathname}`, redirect);
  assert.equal(location.searchParams.get('error'), 'consent_required', location.href);
  assert.equal(location.searchParams.get('iss'), f.issuer);
  assert.equal(location.searchParams.get('state'), 'st-123');
  assert.equal(location.searchParams.has('code'), false);
}

/** The consent page of an interaction, over HTTP, as the browser that started it sees it. */
async function consentPage(f: CodeFlowFixture, id: string, cookie: string): Promise<string> {
  const page = await f.app.inject({ method: 'GET', url: `/interaction/${id}`, headers: { cookie } });
  assert.equal(page.statusCode, 200, page.body);
  assert.match(page.body, /name="decision"/, 'the consent form');
  return page.body;
}

/** par-app's whole journey through PAR for a signed-in person: request_uri → consent → the code. */
async function approveThroughPar(f: CodeFlowFixture, person: Person, extra: Record<string, string> = {}): Promise<void> {
  const pushed = await f.par('par-app', { ...(f.request('par-app') as Record<string, string>), ...extra });
  assert.equal(pushed.statusCode, 201, pushed.body);
  const first = await f.authorize({ client_id: 'par-app', request_uri: (pushed.json() as { request_uri: string }).request_uri }, { cookie: person.cookie });
  const id = interactionId(first);
  await decideConsent(f.ctx, id, person.authentication, true);
  const done = await f.resume(id, first.cookie);
  assert.ok(done.location?.searchParams.get('code'), done.location?.href);
}

describe('a mandate at the authorization endpoint needs the person’s consent', () => {
  test('shows the consent page, naming the mandate, when the person approved the scopes but not the mandate', async (t) => {
    const f = await codeFlowFixture(t);
    const person = await f.signIn('alice');
    await f.apply({ mandates: [mandate('desk-mandate')] });
    await f.authorizeAndApprove({ person });
    // The same scopes without a mandate still need no consent page.
    assert.ok((await f.authorize(f.request('web-app'), { cookie: person.cookie })).location?.searchParams.get('code'));

    const result = await f.authorize(f.request('web-app', { mandate: 'desk-mandate' }), { cookie: person.cookie });
    const id = interactionId(result);
    const page = await consentPage(f, id, result.cookie);
    assert.match(page, /Act under mandate desk-mandate, within its scopes and limits/);
  });

  test('answers prompt=none naming a mandate the grant does not name with consent_required, at /authorize, through PAR and in a request object', async (t) => {
    const f = await codeFlowFixture(t);
    const { person } = await f.authorizeAndApprove({});
    assertConsentRequired(f, (await f.authorize(f.request('web-app', { prompt: 'none', mandate: 'desk-mandate' }), { cookie: person.cookie })).response);
    assertConsentRequired(f, (await f.authorize(f.request('web-app', { prompt: 'none', mandate: 'desk-mandate' }), { cookie: person.cookie, method: 'POST' })).response);

    await approveThroughPar(f, person);
    const pushed = await f.par('par-app', { ...(f.request('par-app') as Record<string, string>), prompt: 'none', mandate: 'desk-mandate' });
    assert.equal(pushed.statusCode, 201, pushed.body);
    const viaPar = await f.authorize({ client_id: 'par-app', request_uri: (pushed.json() as { request_uri: string }).request_uri }, { cookie: person.cookie });
    assertConsentRequired(f, viaPar.response, parRedirect);

    await f.authorizeAndApprove({ client: 'signed-app', person });
    const request = await f.requestObject({ prompt: 'none', mandate: 'desk-mandate' }, { client: 'signed-app' });
    const viaObject = await f.authorize({ client_id: 'signed-app', request }, { cookie: person.cookie });
    assertConsentRequired(f, viaObject.response, 'https://signed.example.com/cb');
    assert.equal((await f.auditEvents('code.issued')).length, 3, 'only the three approved requests got a code');
  });

  test('skips consent for a mandate the person approved, and asks again for another mandate', async (t) => {
    const f = await codeFlowFixture(t);
    const person = await f.signIn('alice');
    await f.apply({ mandates: [mandate('desk-mandate'), mandate('other-mandate')] });
    await f.authorizeAndApprove({ person });
    const asked = await f.authorize(f.request('web-app', { mandate: 'desk-mandate' }), { cookie: person.cookie });
    const id = interactionId(asked);
    await decideConsent(f.ctx, id, person.authentication, true);
    assert.ok((await f.resume(id, asked.cookie)).location?.searchParams.get('code'));
    const [granted] = (await f.auditEvents('consent.granted')).slice(-1);
    assert.equal(granted!.details?.mandate, 'desk-mandate', 'the consent event names the mandate');
    const grant = await findActiveGrant(f.ctx, person.userId, 'web-app');
    assert.deepEqual(grantView(grant!).mandates, ['desk-mandate']);

    // A later request under the same mandate: the code at once, even with prompt=none, and the token names it.
    const challenge = pkce();
    const later = await f.authorize(f.request('web-app', { mandate: 'desk-mandate', prompt: 'none', code_challenge: challenge.challenge }), { cookie: person.cookie });
    const code = later.location?.searchParams.get('code');
    assert.ok(code, later.location?.href);
    const tokens = await f.redeem('web-app', code, challenge.verifier);
    assert.equal(tokens.statusCode, 200, tokens.body);
    assert.deepEqual(decodeJwt((tokens.json() as { access_token: string }).access_token).payload.mandate, { id: 'desk-mandate', v: 1 });

    // Consent to one mandate is not consent to another.
    assertConsentRequired(f, (await f.authorize(f.request('web-app', { mandate: 'other-mandate', prompt: 'none' }), { cookie: person.cookie })).response);
    interactionId(await f.authorize(f.request('web-app', { mandate: 'other-mandate' }), { cookie: person.cookie }));
  });

  test('asks again for authorization_details, even ones approved before, and answers prompt=none with consent_required', async (t) => {
    const f = await codeFlowFixture(t);
    const details = JSON.stringify([orderDetail]);
    const { person } = await f.authorizeAndApprove({ query: { scope: 'order:create', authorization_details: details } });
    interactionId(await f.authorize(f.request('web-app', { scope: 'order:create', authorization_details: details }), { cookie: person.cookie }));
    assertConsentRequired(f, (await f.authorize(f.request('web-app', { scope: 'order:create', authorization_details: details, prompt: 'none' }), { cookie: person.cookie })).response);
  });

  for (const dialect of testDialects()) {
    test(`refuses a code or a refresh token under a mandate that its grant does not name (a grant from before mandates needed consent) on ${dialect.name}`, async (t) => {
      const f = await codeFlowFixture(t, { dialect });
      const person = await f.signIn('alice');
      await f.apply({ mandates: [mandate('desk-mandate')] });
      const first = await f.authorizeAndApprove({ person, query: { mandate: 'desk-mandate' } });
      const tokens = await f.redeem('web-app', first.code, first.pkce.verifier);
      assert.equal(tokens.statusCode, 200, tokens.body);
      const { code, pkce: challenge } = await f.authorizeAndApprove({ person, query: { mandate: 'desk-mandate' } });

      // The grant as a grant recorded before migration 0014 looks: scopes, no mandates.
      await f.ctx.storage.db.updateTable('grants').set({ mandates: '[]' }).where('user_id', '=', person.userId).execute();
      assertOAuthError(await f.redeem('web-app', code, challenge.verifier), 400, 'invalid_grant');
      assertOAuthError(await f.refresh('web-app', (tokens.json() as { refresh_token: string }).refresh_token), 400, 'invalid_grant');
    });
  }
});
