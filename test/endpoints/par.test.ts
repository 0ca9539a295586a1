import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { SignJWT, generateKeyPair } from 'jose';
import { decideConsent, recordAuthentication } from '../../src/authorization/interactions.ts';
import { codeFlowFixture, orderDetail, parRedirect, pkce, type CodeFlowFixture } from '../authorization/fixture.ts';
import { testDialects } from '../helpers/storage.ts';
import { assertOAuthError } from './fixture.ts';

/** A pushed request for par-app; returns request_uri. */
async function push(f: CodeFlowFixture, extra: Record<string, string | undefined> = {}, challenge = pkce()): Promise<string> {
  const form = f.request('par-app', { code_challenge: challenge.challenge, ...extra }) as Record<string, string>;
  const response = await f.par('par-app', form);
  assert.equal(response.statusCode, 201, response.body);
  return (response.json() as { request_uri: string }).request_uri;
}

function assertErrorPage(response: LightMyRequestResponse, error: string): void {
  assert.equal(response.statusCode, 400, response.body);
  assert.equal(response.headers.location, undefined, 'no redirect');
  assert.match(String(response.headers['content-type']), /^text\/html/);
  assert.match(response.body, new RegExp(error));
}

function interactionId(response: LightMyRequestResponse): string {
  const location = new URL(String(response.headers.location));
  assert.ok(location.pathname.startsWith('/interaction/'), location.href);
  return location.pathname.split('/').pop()!;
}

describe('pushed authorization requests (RFC 9126)', () => {
  test('returns a request_uri with 256 random bits and expires_in, which /authorize turns into a code', async (t) => {
    const f = await codeFlowFixture(t);
    const challenge = pkce();
    const response = await f.par('par-app', f.request('par-app', { code_challenge: challenge.challenge }) as Record<string, string>);
    assert.equal(response.statusCode, 201, response.body);
    assert.equal(response.headers['cache-control'], 'no-store');
    const body = response.json() as { request_uri: string; expires_in: number };
    assert.match(body.request_uri, /^urn:ietf:params:oauth:request_uri:[\w-]{43}$/);
    assert.equal(body.expires_in, 60);

    const person = await f.signIn('alice');
    // RFC 9126 §4: only client_id and request_uri count at /authorize; the rest is ignored.
    const first = await f.authorize({ client_id: 'par-app', request_uri: body.request_uri, scope: 'openid offline_access', redirect_uri: 'https://evil.example.com' }, { cookie: person.cookie });
    const id = interactionId(first.response);
    await decideConsent(f.ctx, id, person.authentication, true);
    const done = await f.resume(id, first.cookie);
    const location = done.location!;
    assert.equal(`${location.origin}${location.pathname}`, parRedirect);
    assert.equal(location.searchParams.get('iss'), f.issuer);
    const tokens = await f.redeem('par-app', location.searchParams.get('code')!, challenge.verifier);
    assert.equal(tokens.statusCode, 200, tokens.body);
    assert.equal(tokens.json().scope, 'order:create');
  });

  test('answers GET and other methods with 405', async (t) => {
    const f = await codeFlowFixture(t);
    const response = await f.inject({ method: 'GET', url: '/par' });
    assertOAuthError(response, 405, 'invalid_request');
    assert.equal(response.headers.allow, 'POST');
  });

  test('refuses a request_uri inside the pushed request', async (t) => {
    const f = await codeFlowFixture(t);
    const response = await f.par('par-app', { ...(f.request('par-app') as Record<string, string>), request_uri: 'urn:ietf:params:oauth:request_uri:abc' });
    assertOAuthError(response, 400, 'invalid_request');
  });

  test('requires client authentication, and refuses public clients', async (t) => {
    const f = await codeFlowFixture(t);
    assertOAuthError(await f.post('/par', { form: f.request('par-app') }), 401, 'invalid_client');
    assertOAuthError(await f.post('/par', { form: f.request('native-app') }), 401, 'invalid_client');
  });

  test('validates the request as the authorization endpoint would, with JSON errors', async (t) => {
    const f = await codeFlowFixture(t);
    const base = f.request('par-app') as Record<string, string>;
    const cases: [Record<string, string | undefined>, string][] = [
      [{ code_challenge: undefined }, 'invalid_request'],
      [{ code_challenge_method: 'plain' }, 'invalid_request'],
      [{ response_type: 'token' }, 'unsupported_response_type'],
      [{ response_type: 'code id_token' }, 'unsupported_response_type'],
      [{ redirect_uri: 'https://evil.example.com/cb' }, 'invalid_request'],
      [{ redirect_uri: undefined }, 'invalid_request'],
      [{ scope: 'openid settlement:submit' }, 'invalid_scope'],
    ];
    for (const [change, error] of cases) {
      const form = { ...base, ...change };
      for (const [k, v] of Object.entries(form)) if (v === undefined) delete form[k];
      assertOAuthError(await f.par('par-app', form as Record<string, string>), 400, error, JSON.stringify(change));
    }
  });

  test('lets a request_uri be used again before the authorization completes, and never after', async (t) => {
    const f = await codeFlowFixture(t);
    const requestUri = await push(f);
    const person = await f.signIn('alice');
    const first = await f.authorize({ client_id: 'par-app', request_uri: requestUri }, { cookie: person.cookie });
    const reload = await f.authorize({ client_id: 'par-app', request_uri: requestUri }, { cookie: first.cookie });
    const id = interactionId(reload.response);
    interactionId(first.response);
    await decideConsent(f.ctx, id, person.authentication, true);
    assert.ok((await f.resume(id, reload.cookie)).location?.searchParams.get('code'), 'a reuse before completion succeeds');

    assertErrorPage((await f.authorize({ client_id: 'par-app', request_uri: requestUri }, { cookie: person.cookie })).response, 'invalid_request_uri');

    // The other interaction from the same request_uri cannot complete it a second time.
    const otherId = interactionId(first.response);
    const late = await f.resume(otherId, first.cookie);
    assert.equal(late.location?.searchParams.get('error'), 'invalid_request_uri');
    assert.equal(late.location?.searchParams.get('iss'), f.issuer);
  });

  test('refuses an expired request_uri, and one pushed by another client', async (t) => {
    const f = await codeFlowFixture(t);
    const requestUri = await push(f);
    assertErrorPage((await f.authorize({ client_id: 'web-app', request_uri: requestUri })).response, 'invalid_request_uri');
    f.clock.advance(61_000);
    assertErrorPage((await f.authorize({ client_id: 'par-app', request_uri: requestUri })).response, 'invalid_request_uri');
    assertErrorPage((await f.authorize({ client_id: 'par-app', request_uri: 'urn:ietf:params:oauth:request_uri:forged' })).response, 'invalid_request_uri');
  });

  describe('with a signed request object (RFC 9101, FAPI 2.0 Message Signing)', () => {
    test('accepts a request object and ignores the parameters outside it', async (t) => {
      const f = await codeFlowFixture(t);
      const request = await f.requestObject({});
      const response = await f.par('par-app', { request, scope: 'openid offline_access', redirect_uri: 'https://evil.example.com', response_type: 'token' });
      assert.equal(response.statusCode, 201, response.body);
    });

    test('checks authorization_details in a request object against the declared instrument classes', async (t) => {
      const f = await codeFlowFixture(t);
      await f.apply({ instrument_classes: [{ id: 'rates_derivatives', complex: true }] });
      const details = (instrumentClass: string) => [{ ...orderDetail, instrument: { class: instrumentClass, symbol: 'SOFR-2Y' } }];
      const declared = await f.requestObject({ scope: 'order:create', authorization_details: details('rates_derivatives') });
      assert.equal((await f.par('par-app', { request: declared })).statusCode, 201);
      const undeclared = await f.requestObject({ scope: 'order:create', authorization_details: details('bond') });
      const body = assertOAuthError(await f.par('par-app', { request: undeclared }), 400, 'invalid_authorization_details');
      assert.match(String(body.error_description), /instrument\.class 'bond' is not a declared instrument class/);
    });

    test('refuses request objects that break the rules with invalid_request_object', async (t) => {
      const f = await codeFlowFixture(t);
      const now = Math.floor(f.clock.now() / 1000);
      const other = await generateKeyPair('ES256');
      const rsa = await generateKeyPair('RS256');
      const unsigned = `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'oauth-authz-req+jwt' })).toString('base64url')}.${Buffer.from(JSON.stringify({ iss: 'par-app', aud: f.issuer, nbf: now, exp: now + 60 })).toString('base64url')}.`;
      const valid = await f.requestObject({});
      const [h, p] = valid.split('.');
      const cases: [string, string][] = [
        ['missing exp', await f.requestObject({ exp: undefined })],
        ['missing nbf', await f.requestObject({ nbf: undefined })],
        ['lifetime over 60 min', await f.requestObject({ nbf: now, exp: now + 3601 })],
        ['nbf over 60 min ago', await f.requestObject({ nbf: now - 3700, exp: now + 60 })],
        ['expired', await f.requestObject({ nbf: now - 600, exp: now - 120 })],
        ['not yet valid', await f.requestObject({ nbf: now + 600, exp: now + 900 })],
        ['aud of another server', await f.requestObject({ aud: 'https://other.example.com' })],
        ['aud array of two', await f.requestObject({ aud: [f.issuer, 'https://other.example.com'] })],
        ['iss not the client', await f.requestObject({ iss: 'web-app' })],
        ['client_id of another client', await f.requestObject({ client_id: 'web-app' })],
        ['alg none', unsigned],
        ['alg RS256', await f.requestObject({}, { alg: 'RS256', key: rsa.privateKey })],
        ['signed with a key of nobody', await f.requestObject({}, { key: other.privateKey })],
        ["signed with another client's key", await f.requestObject({}, { key: f.signedKey })],
        ['a tampered payload', `${h}.${Buffer.from(JSON.stringify({ iss: 'par-app', aud: f.issuer, nbf: now, exp: now + 60, scope: 'openid' })).toString('base64url')}.${valid.split('.')[2]}`],
        ['typ at+jwt (cross-JWT confusion)', await f.requestObject({}, { typ: 'at+jwt' })],
        ['a nested request_uri', await f.requestObject({ request_uri: 'urn:x' })],
        ['a JWE', `${h}.${p}.a.b.c`],
        // RFC 8725 §3.3: a size cap (32 KiB), within the body limit: a 400, never a 5xx.
        ['over 32 KiB', await f.requestObject({ state: 'x'.repeat(33 * 1024) })],
      ];
      for (const [what, request] of cases) {
        const refused = assertOAuthError(await f.par('par-app', { request }), 400, 'invalid_request_object', what);
        if (what === 'over 32 KiB') assert.match(String(refused.error_description), /too large/);
      }
    });

    test('at /authorize, takes the parameters from the request object only, and never redirects its errors', async (t) => {
      const f = await codeFlowFixture(t);
      const person = await f.signIn('alice');
      const request = await f.requestObject({}, { client: 'signed-app' });
      const ok = await f.authorize({ client_id: 'signed-app', request, response_type: 'token', redirect_uri: 'https://evil.example.com' }, { cookie: person.cookie });
      interactionId(ok.response);

      const expired = await f.requestObject({ nbf: Math.floor(f.clock.now() / 1000) - 600, exp: Math.floor(f.clock.now() / 1000) - 120 }, { client: 'signed-app' });
      assertErrorPage((await f.authorize({ client_id: 'signed-app', request: expired, redirect_uri: 'https://signed.example.com/cb' })).response, 'invalid_request_object');
      const foreign = await f.requestObject({}, { client: 'signed-app', key: f.parKey });
      assertErrorPage((await f.authorize({ client_id: 'signed-app', request: foreign })).response, 'invalid_request_object');
      const typeless = await f.requestObject({}, { client: 'signed-app', typ: null });
      interactionId((await f.authorize({ client_id: 'signed-app', request: typeless }, { cookie: person.cookie })).response);
      // A client without registered keys cannot send request objects.
      const unsigned = await new SignJWT({ iss: 'web-app', aud: f.issuer }).setProtectedHeader({ alg: 'ES256' }).sign(f.parKey);
      assertErrorPage((await f.authorize({ client_id: 'web-app', request: unsigned })).response, 'invalid_request_object');
      // request and request_uri together are refused.
      assertErrorPage((await f.authorize({ client_id: 'signed-app', request, request_uri: 'urn:ietf:params:oauth:request_uri:x' })).response, 'invalid_request');
    });

    test('returns errors after redirect_uri is established in the request object to the client', async (t) => {
      const f = await codeFlowFixture(t);
      const request = await f.requestObject({ code_challenge_method: 'plain' }, { client: 'signed-app' });
      const response = (await f.authorize({ client_id: 'signed-app', request })).response;
      assert.equal(response.statusCode, 303);
      const location = new URL(String(response.headers.location));
      assert.equal(location.origin, 'https://signed.example.com');
      assert.equal(location.searchParams.get('error'), 'invalid_request');
      assert.equal(location.searchParams.get('iss'), f.issuer);
    });
  });
});

for (const dialect of testDialects()) {
  describe(`a request_uri in a browser nobody is signed in to, on ${dialect.name}`, () => {
    test('becomes an interaction in the statement that reads it, and completes once', async (t) => {
      const f = await codeFlowFixture(t, { dialect });
      const challenge = pkce();
      const requestUri = await push(f, {}, challenge);
      const first = await f.authorize({ client_id: 'par-app', request_uri: requestUri });
      const id = interactionId(first.response);
      const stored = await f.ctx.storage.db.selectFrom('interactions').select(['client_id', 'request']).where('id', '=', id).executeTakeFirstOrThrow();
      assert.equal(stored.client_id, 'par-app');
      const pushedId = (await f.ctx.storage.db.selectFrom('pushed_requests').select('id').executeTakeFirstOrThrow()).id;
      assert.equal(JSON.parse(stored.request).pushedRequestId, pushedId, 'the interaction names its pushed request, to consume it');
      const person = await f.signIn('alice');
      assert.equal(await recordAuthentication(f.ctx, id, person.authentication), true);
      await decideConsent(f.ctx, id, person.authentication, true);
      const code = (await f.resume(id, first.cookie)).location?.searchParams.get('code');
      assert.ok(code);
      assert.equal((await f.redeem('par-app', code, challenge.verifier)).statusCode, 200);
      assertErrorPage((await f.authorize({ client_id: 'par-app', request_uri: requestUri })).response, 'invalid_request_uri');
    });

    test('completes once, too, when it was pushed before the pushed request named its own id', async (t) => {
      const f = await codeFlowFixture(t, { dialect });
      const requestUri = await push(f);
      // As a row stored by the version before: the request without its pushedRequestId.
      const row = await f.ctx.storage.db.selectFrom('pushed_requests').select(['id', 'request']).executeTakeFirstOrThrow();
      const { pushedRequestId: _, ...older } = JSON.parse(row.request) as Record<string, unknown>;
      await f.ctx.storage.db.updateTable('pushed_requests').set({ request: JSON.stringify(older) }).where('id', '=', row.id).execute();
      const first = await f.authorize({ client_id: 'par-app', request_uri: requestUri });
      const id = interactionId(first.response);
      const stored = await f.ctx.storage.db.selectFrom('interactions').select('request').where('id', '=', id).executeTakeFirstOrThrow();
      assert.equal(JSON.parse(stored.request).pushedRequestId, row.id);
      const person = await f.signIn('alice');
      await recordAuthentication(f.ctx, id, person.authentication);
      await decideConsent(f.ctx, id, person.authentication, true);
      assert.ok((await f.resume(id, first.cookie)).location?.searchParams.get('code'));
      assertErrorPage((await f.authorize({ client_id: 'par-app', request_uri: requestUri })).response, 'invalid_request_uri');
    });
  });
}
