import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { declineAuthentication, decideConsent, nextStep, recordAuthentication } from '../../src/authorization/interactions.ts';
import { acr } from '../../src/identity/acr.ts';
import { codeFlowFixture, pkce, webRedirect, type CodeFlowFixture, type Person } from '../authorization/fixture.ts';
import { assertOAuthError, decodeJwt } from './fixture.ts';

/**
 * Authentication levels at the authorization endpoint (docs/authentication.md): acr_values on the
 * ladder, the claims parameter's essential acr, role minimums, and what the tokens say.
 */

const mfa = { acr: acr.multiFactor, amr: ['pwd', 'otp', 'mfa'] };
const phr = { acr: acr.phishingResistant, amr: ['hwk', 'user', 'mfa'] };

function interactionId(location: URL | undefined): string {
  assert.ok(location?.pathname.startsWith('/interaction/'), `to the people side: ${location?.href}`);
  return location!.pathname.split('/').pop()!;
}

function codeOf(location: URL | undefined): string {
  const code = location?.searchParams.get('code');
  assert.ok(code, `a code: ${location?.href}`);
  return code;
}

function assertErrorRedirect(f: CodeFlowFixture, response: LightMyRequestResponse, error: string): URL {
  assert.equal(response.statusCode, 303, response.body);
  const location = new URL(String(response.headers.location));
  assert.equal(`${location.origin}${location.pathname}`, webRedirect);
  assert.equal(location.searchParams.get('error'), error, location.href);
  assert.equal(location.searchParams.get('iss'), f.issuer);
  assert.equal(location.searchParams.has('code'), false);
  return location;
}

const essential = (...values: string[]) => JSON.stringify({ id_token: { acr: { essential: true, values } } });

/** A person who approved web-app once (so only authentication decides), signed in at `level`. */
async function approvedPerson(f: CodeFlowFixture, username: string, level?: { acr: string; amr: string[] }): Promise<Person> {
  const { person } = await f.authorizeAndApprove({ person: await f.signIn(username) });
  return level ? f.signIn(username, level) : person;
}

async function setRoles(f: CodeFlowFixture, userId: string, roles: string[]): Promise<void> {
  await f.ctx.storage.db.updateTable('users').set({ roles: JSON.stringify(roles) }).where('id', '=', userId).execute();
}

describe('acr_values on the ladder (OIDC Core §3.1.2.1)', () => {
  test('a session at or above the weakest requested level gets the code at once', async (t) => {
    const f = await codeFlowFixture(t);
    const person = await approvedPerson(f, 'alice', mfa);
    for (const values of [acr.multiFactor, acr.password, `${acr.phishingResistantHardware} ${acr.multiFactor}`, `urn:example:gold ${acr.multiFactor}`, 'urn:clearance:acr:1fa']) {
      const result = await f.authorize(f.request('web-app', { acr_values: values }), { cookie: person.cookie });
      codeOf(result.location);
    }
  });

  test('values Clearance does not assert are ignored: alone, they ask no level', async (t) => {
    const f = await codeFlowFixture(t);
    const person = await approvedPerson(f, 'alice');
    codeOf((await f.authorize(f.request('web-app', { acr_values: 'urn:example:gold urn:clearance:acr:2fa' }), { cookie: person.cookie })).location);
  });

  test('a session below the weakest requested level is sent to sign in at that level', async (t) => {
    const f = await codeFlowFixture(t);
    const person = await approvedPerson(f, 'alice', mfa);
    const result = await f.authorize(f.request('web-app', { acr_values: `${acr.phishingResistantHardware} ${acr.phishingResistant}` }), { cookie: person.cookie });
    // Voluntary (OIDC Core §3.1.2.1): the people side may let a weaker sign-in go on.
    assert.deepEqual(await nextStep(f.ctx, interactionId(result.location), person.authentication), { step: 'login', reason: 'acr', acr: acr.phishingResistant, voluntary: true });
  });

  test('after a sign-in the level is voluntary: the code is issued at what was reached, and the ID token says so', async (t) => {
    const f = await codeFlowFixture(t);
    const person = await approvedPerson(f, 'alice');
    const challenge = pkce();
    const first = await f.authorize(f.request('web-app', { acr_values: acr.phishingResistant, code_challenge: challenge.challenge }), { cookie: person.cookie });
    const id = interactionId(first.location);
    const again = await f.signIn('alice', mfa);
    await recordAuthentication(f.ctx, id, again.authentication);
    const done = await f.resume(id, `${first.cookie}; ${again.cookie}`);
    const tokens = (await f.redeem('web-app', codeOf(done.location), challenge.verifier)).json() as { id_token: string };
    assert.equal(decodeJwt(tokens.id_token).payload.acr, acr.multiFactor);
    const [completed] = await f.auditEvents('step_up.completed');
    assert.equal(completed!.details!.outcome, 'unmet');
    assert.deepEqual(completed!.details!.trigger, ['acr_values']);
  });

  test('prompt=none with a session below the level answers login_required', async (t) => {
    const f = await codeFlowFixture(t);
    const person = await approvedPerson(f, 'alice');
    assertErrorRedirect(f, (await f.authorize(f.request('web-app', { prompt: 'none', acr_values: acr.multiFactor }), { cookie: person.cookie })).response, 'login_required');
  });
});

describe('the claims parameter’s essential acr (OIDC Core §5.5.1.1)', () => {
  test('is a requirement: a sign-in below it is asked again, never waived', async (t) => {
    const f = await codeFlowFixture(t);
    const person = await approvedPerson(f, 'alice', mfa);
    const first = await f.authorize(f.request('web-app', { claims: essential(acr.phishingResistant) }), { cookie: person.cookie });
    const id = interactionId(first.location);
    assert.deepEqual(await nextStep(f.ctx, id, person.authentication), { step: 'login', reason: 'acr', acr: acr.phishingResistant });
    // The person signs in again, still at mfa: the requirement stands.
    const again = await f.signIn('alice', mfa);
    await recordAuthentication(f.ctx, id, again.authentication);
    const still = await f.resume(id, `${first.cookie}; ${again.cookie}`);
    assert.equal(interactionId(still.location), id, 'back to the sign-in, no code');
    assert.deepEqual(await nextStep(f.ctx, id, again.authentication), { step: 'login', reason: 'acr', acr: acr.phishingResistant });
  });

  test('is met by a sign-in at the level, and the tokens carry it', async (t) => {
    const f = await codeFlowFixture(t);
    const person = await approvedPerson(f, 'alice');
    const challenge = pkce();
    const first = await f.authorize(f.request('web-app', { claims: essential(acr.phishingResistant), code_challenge: challenge.challenge, scope: 'openid order:create' }), { cookie: person.cookie });
    const id = interactionId(first.location);
    const strong = await f.signIn('alice', phr);
    await recordAuthentication(f.ctx, id, strong.authentication);
    const done = await f.resume(id, `${first.cookie}; ${strong.cookie}`);
    const response = await f.redeem('web-app', codeOf(done.location), challenge.verifier);
    const tokens = response.json() as { id_token: string; access_token: string };
    for (const jwt of [tokens.id_token, tokens.access_token]) {
      const claims = decodeJwt(jwt).payload;
      assert.equal(claims.acr, acr.phishingResistant);
      assert.deepEqual(claims.amr, phr.amr);
      assert.equal(claims.auth_time, strong.authentication.authTime);
    }
    const [requested] = await f.auditEvents('step_up.requested');
    const [completed] = await f.auditEvents('step_up.completed');
    assert.deepEqual(requested!.details!.trigger, ['essential_acr']);
    assert.equal(requested!.details!.factor_offered, 'passkey');
    assert.equal(completed!.details!.step_up_id, requested!.details!.step_up_id);
    assert.equal(completed!.details!.outcome, 'met');
    assert.deepEqual(completed!.details!.factor_used, phr.amr);
    const [issued] = (await f.auditEvents('token.issued')).slice(-1);
    assert.equal(issued!.details!.step_up_id, requested!.details!.step_up_id, 'the token names the step-up it followed');
  });

  test('a person who cannot reach it ends the request with unmet_authentication_requirements', async (t) => {
    const f = await codeFlowFixture(t);
    const person = await approvedPerson(f, 'alice');
    const first = await f.authorize(f.request('web-app', { claims: essential(acr.phishingResistantHardware) }), { cookie: person.cookie });
    const id = interactionId(first.location);
    assert.equal(await declineAuthentication(f.ctx, id, person.authentication), true);
    assert.deepEqual(await nextStep(f.ctx, id, person.authentication), { step: 'done' }, 'the people side sends the browser to resume');
    assertErrorRedirect(f, (await f.resume(id, first.cookie)).response, 'unmet_authentication_requirements');
    const [completed] = await f.auditEvents('step_up.completed');
    assert.equal(completed!.details!.outcome, 'declined');
  });

  test('values Clearance never asserts cannot be met: unmet_authentication_requirements at once', async (t) => {
    const f = await codeFlowFixture(t);
    const person = await approvedPerson(f, 'alice', phr);
    assertErrorRedirect(f, (await f.authorize(f.request('web-app', { claims: essential('urn:example:gold') }), { cookie: person.cookie })).response, 'unmet_authentication_requirements');
  });

  test('without values, or not essential, it asks no more than acr_values would', async (t) => {
    const f = await codeFlowFixture(t);
    const person = await approvedPerson(f, 'alice');
    codeOf((await f.authorize(f.request('web-app', { claims: JSON.stringify({ id_token: { acr: { essential: true } } }) }), { cookie: person.cookie })).location);
    const voluntary = JSON.stringify({ id_token: { acr: { values: [acr.multiFactor] }, email: null }, userinfo: { name: { essential: true } } });
    const result = await f.authorize(f.request('web-app', { claims: voluntary }), { cookie: person.cookie });
    assert.deepEqual(await nextStep(f.ctx, interactionId(result.location), person.authentication), { step: 'login', reason: 'acr', acr: acr.multiFactor, voluntary: true });
  });

  test('is honoured through PAR and in a signed request object', async (t) => {
    const f = await codeFlowFixture(t);
    const person = await approvedPerson(f, 'alice');
    const pushed = await f.par('web-app', f.request('web-app', { claims: essential(acr.multiFactor) }));
    assert.equal(pushed.statusCode, 201, pushed.body);
    const viaPar = await f.authorize({ client_id: 'web-app', request_uri: (pushed.json() as { request_uri: string }).request_uri }, { cookie: person.cookie });
    assert.deepEqual(await nextStep(f.ctx, interactionId(viaPar.location), person.authentication), { step: 'login', reason: 'acr', acr: acr.multiFactor });
    // In a request object the claims parameter is a JSON object (RFC 9101 §4).
    const signed = await f.requestObject({ claims: { id_token: { acr: { essential: true, value: acr.multiFactor } } } }, { client: 'signed-app' });
    const viaObject = await f.authorize({ client_id: 'signed-app', request: signed }, { cookie: person.cookie });
    assert.deepEqual(await nextStep(f.ctx, interactionId(viaObject.location), person.authentication), { step: 'login', reason: 'acr', acr: acr.multiFactor });
  });

  test('a malformed claims parameter is invalid_request', async (t) => {
    const f = await codeFlowFixture(t);
    for (const claims of ['{', '[]', '"acr"', '{"id_token":[]}', '{"id_token":{"acr":true}}', '{"id_token":{"acr":{"essential":"yes"}}}', '{"id_token":{"acr":{"values":"x"}}}', '{"id_token":{"acr":{"value":"a","values":["b"]}}}']) {
      assertErrorRedirect(f, (await f.authorize(f.request('web-app', { claims }))).response, 'invalid_request');
    }
    const pushed = await f.par('web-app', f.request('web-app', { claims: '{"id_token":5}' }));
    assertOAuthError(pushed, 400, 'invalid_request');
  });

  test('prompt=none below an essential level answers login_required', async (t) => {
    const f = await codeFlowFixture(t);
    const person = await approvedPerson(f, 'alice');
    assertErrorRedirect(f, (await f.authorize(f.request('web-app', { prompt: 'none', claims: essential(acr.multiFactor) }), { cookie: person.cookie })).response, 'login_required');
  });
});

describe('role minimums at the authorization endpoint', () => {
  test('a session below the person’s role minimum is stepped up before any code, never waived', async (t) => {
    const f = await codeFlowFixture(t);
    const person = await approvedPerson(f, 'alice');
    await f.apply({ authentication: { role_minimums: { trader: acr.multiFactor } } });
    await setRoles(f, person.userId, ['trader']);
    const challenge = pkce();
    const first = await f.authorize(f.request('web-app', { code_challenge: challenge.challenge }), { cookie: person.cookie });
    const id = interactionId(first.location);
    assert.deepEqual(await nextStep(f.ctx, id, person.authentication), { step: 'login', reason: 'acr', acr: acr.multiFactor });
    const [requested] = await f.auditEvents('step_up.requested');
    assert.deepEqual(requested!.details!.trigger, ['role_minimum']);
    assert.equal(requested!.details!.acr_before, acr.password);
    // Another password-only sign-in does not do.
    const weak = await f.signIn('alice');
    await recordAuthentication(f.ctx, id, weak.authentication);
    assert.equal(interactionId((await f.resume(id, `${first.cookie}; ${weak.cookie}`)).location), id);
    // A second factor does.
    const strong = await f.signIn('alice', mfa);
    await recordAuthentication(f.ctx, id, strong.authentication);
    const done = await f.resume(id, `${first.cookie}; ${strong.cookie}`);
    const response = await f.redeem('web-app', codeOf(done.location), challenge.verifier);
    assert.equal(response.statusCode, 200, response.body);
    assert.equal(decodeJwt((response.json() as { access_token: string }).access_token).payload.acr, acr.multiFactor);
  });

  test('prompt=none below the role minimum answers login_required; a role without one asks nothing', async (t) => {
    const f = await codeFlowFixture(t);
    const person = await approvedPerson(f, 'alice');
    await f.apply({ authentication: { role_minimums: { approver: acr.phishingResistantHardware } } });
    await setRoles(f, person.userId, ['trader']);
    codeOf((await f.authorize(f.request('web-app', { prompt: 'none' }), { cookie: person.cookie })).location);
    await setRoles(f, person.userId, ['trader', 'approver']);
    assertErrorRedirect(f, (await f.authorize(f.request('web-app', { prompt: 'none' }), { cookie: person.cookie })).response, 'login_required');
  });
});

describe('role minimums at the token endpoint (RFC 9470)', () => {
  test('a refresh of a grant authenticated below the current minimum is insufficient_user_authentication', async (t) => {
    const f = await codeFlowFixture(t);
    const { code, pkce: challenge, person } = await f.authorizeAndApprove({});
    const tokens = (await f.redeem('web-app', code, challenge.verifier)).json() as { refresh_token: string };
    await f.apply({ authentication: { role_minimums: { trader: acr.multiFactor } } });
    await setRoles(f, person.userId, ['trader']);
    const refused = await f.refresh('web-app', tokens.refresh_token);
    const body = assertOAuthError(refused, 400, 'insufficient_user_authentication');
    assert.equal(body.acr_values, acr.multiFactor);
    const [requested] = await f.auditEvents('step_up.requested');
    assert.deepEqual(requested!.details!.trigger, ['role_minimum']);
    assert.equal(requested!.details!.grant_type, 'refresh_token');
    // The refresh token was not used up: once the role asks no more, it works.
    await setRoles(f, person.userId, []);
    assert.equal((await f.refresh('web-app', tokens.refresh_token)).statusCode, 200);
  });

  test('a code issued before the minimum was raised gets no tokens either', async (t) => {
    const f = await codeFlowFixture(t);
    const { code, pkce: challenge, person } = await f.authorizeAndApprove({});
    await f.apply({ authentication: { role_minimums: { trader: acr.phishingResistant } } });
    await setRoles(f, person.userId, ['trader']);
    const body = assertOAuthError(await f.redeem('web-app', code, challenge.verifier), 400, 'insufficient_user_authentication');
    assert.equal(body.acr_values, acr.phishingResistant);
  });
});

describe('re-authentication and the tokens’ authentication claims', () => {
  test('prompt=login forces a sign-in even when the session meets the level', async (t) => {
    const f = await codeFlowFixture(t);
    const person = await approvedPerson(f, 'alice', phr);
    const result = await f.authorize(f.request('web-app', { prompt: 'login', acr_values: acr.multiFactor }), { cookie: person.cookie });
    assert.deepEqual(await nextStep(f.ctx, interactionId(result.location), person.authentication), { step: 'login', reason: 'prompt_login', acr: acr.multiFactor, voluntary: true });
  });

  test('max_age=0 forces a sign-in; a sign-in during the request satisfies it', async (t) => {
    const f = await codeFlowFixture(t);
    const person = await approvedPerson(f, 'alice');
    const first = await f.authorize(f.request('web-app', { max_age: '0' }), { cookie: person.cookie });
    const id = interactionId(first.location);
    assert.deepEqual(await nextStep(f.ctx, id, person.authentication), { step: 'login', reason: 'max_age' });
    const again = await f.signIn('alice');
    await recordAuthentication(f.ctx, id, again.authentication);
    codeOf((await f.resume(id, `${first.cookie}; ${again.cookie}`)).location);
    assert.equal((await f.auditEvents('step_up.requested')).length, 0, 'a re-authentication is not a step-up');
  });

  test('ID tokens and access tokens for people carry acr, amr and auth_time (RFC 9068 §2.2.1)', async (t) => {
    const f = await codeFlowFixture(t);
    const person = await f.signIn('alice', mfa);
    const { code, pkce: challenge } = await f.authorizeAndApprove({ person });
    const tokens = (await f.redeem('web-app', code, challenge.verifier)).json() as { id_token: string; access_token: string; refresh_token: string };
    const refreshed = (await f.refresh('web-app', tokens.refresh_token)).json() as { id_token: string; access_token: string };
    for (const jwt of [tokens.id_token, tokens.access_token, refreshed.id_token, refreshed.access_token]) {
      const claims = decodeJwt(jwt).payload;
      assert.equal(claims.acr, acr.multiFactor);
      assert.deepEqual(claims.amr, mfa.amr);
      assert.equal(claims.auth_time, person.authentication.authTime);
    }
  });
});

describe('discovery', () => {
  test('advertises the ladder as acr_values_supported and the claims parameter', async (t) => {
    const f = await codeFlowFixture(t);
    const metadata = (await f.inject({ method: 'GET', url: '/.well-known/openid-configuration' })).json() as Record<string, unknown>;
    assert.deepEqual(metadata.acr_values_supported, [acr.password, acr.multiFactor, acr.phishingResistant, acr.phishingResistantHardware]);
    assert.equal(metadata.claims_parameter_supported, true);
  });
});

describe('consent after a step-up', () => {
  test('a denial after a step-up concludes it', async (t) => {
    const f = await codeFlowFixture(t);
    const person = await approvedPerson(f, 'alice');
    const first = await f.authorize(f.request('web-app', { acr_values: acr.multiFactor, prompt: 'consent' }), { cookie: person.cookie });
    const id = interactionId(first.location);
    const strong = await f.signIn('alice', mfa);
    await recordAuthentication(f.ctx, id, strong.authentication);
    await decideConsent(f.ctx, id, strong.authentication, false);
    assertErrorRedirect(f, (await f.resume(id, `${first.cookie}; ${strong.cookie}`)).response, 'access_denied');
    const [completed] = await f.auditEvents('step_up.completed');
    assert.equal(completed!.details!.outcome, 'met');
  });
});
