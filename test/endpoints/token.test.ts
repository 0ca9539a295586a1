import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet } from 'jose';
import { ClientStore } from '../../src/clients/store.ts';
import {
  assertOAuthError,
  clearingApi,
  clearingTtl,
  decodeJwt,
  ordersApi,
  ordersTtl,
  protocolFixture,
  reportingApi,
  venueApi,
  type ProtocolFixture,
} from './fixture.ts';

const cc = { grant_type: 'client_credentials' };

async function verifyWithJwks(f: ProtocolFixture, jwt: string, typ: string) {
  const jwks = (await f.inject({ method: 'GET', url: '/jwks' })).json() as JSONWebKeySet;
  return jwtVerify(jwt, createLocalJWKSet(jwks), { issuer: f.issuer, typ, currentDate: new Date(f.clock.now()) });
}

describe('the token endpoint with client_credentials', () => {
  test('issues an RFC 9068 access token for exactly the requested resource and scope', async (t) => {
    const f = await protocolFixture(t);
    const response = await f.token({ auth: f.basic('broker-1'), form: { ...cc, resource: ordersApi, scope: 'order:create' } });
    assert.equal(response.statusCode, 200, response.body);
    assert.match(String(response.headers['content-type']), /^application\/json/);
    assert.equal(response.headers['cache-control'], 'no-store');
    assert.equal(response.headers.pragma, 'no-cache');
    const body = response.json() as Record<string, unknown>;
    assert.equal(body.token_type, 'Bearer');
    assert.equal(body.expires_in, ordersTtl);
    assert.equal(body.scope, 'order:create');
    assert.equal(typeof body.access_token, 'string');

    const { payload, protectedHeader } = await verifyWithJwks(f, body.access_token as string, 'at+jwt');
    assert.equal(protectedHeader.typ, 'at+jwt');
    assert.equal(payload.iss, f.issuer);
    assert.equal(payload.sub, 'broker-1');
    assert.equal(payload.client_id, 'broker-1');
    assert.equal(payload.aud, ordersApi, 'exactly one audience, as a string');
    assert.equal(payload.exp! - payload.iat!, ordersTtl);
    assert.equal(payload.iat, Math.floor(f.clock.now() / 1000));
    assert.match(String(payload.jti), /^[0-9a-f-]{36}$/);
    assert.equal(payload.scope, 'order:create');
    assert.equal(payload.cnf, undefined, 'not bound without a certificate');
  });

  test('gives each token its own jti', async (t) => {
    const f = await protocolFixture(t);
    const a = decodeJwt(await f.accessToken('broker-1', { resource: ordersApi })).payload;
    const b = decodeJwt(await f.accessToken('broker-1', { resource: ordersApi })).payload;
    assert.notEqual(a.jti, b.jti);
  });

  test("grants the client's allowed scopes at the resource when scope is omitted", async (t) => {
    const f = await protocolFixture(t);
    const response = await f.token({ auth: f.basic('broker-1'), form: { ...cc, resource: ordersApi } });
    assert.equal(response.statusCode, 200, response.body);
    assert.equal(response.json().scope, 'order:create order:cancel');
    assert.equal(decodeJwt(response.json().access_token).payload.scope, 'order:create order:cancel');
  });

  test('chooses the single resource offering the requested scopes when resource is omitted', async (t) => {
    const f = await protocolFixture(t);
    const response = await f.token({ auth: f.basic('broker-1'), form: { ...cc, scope: 'settlement:submit' } });
    assert.equal(response.statusCode, 200, response.body);
    const { payload } = decodeJwt(response.json().access_token);
    assert.equal(payload.aud, clearingApi);
    assert.equal(payload.exp as number - (payload.iat as number), clearingTtl);
    assert.equal(response.json().expires_in, clearingTtl);
  });

  test('authenticates a private_key_jwt client with an ES256 assertion', async (t) => {
    const f = await protocolFixture(t);
    const response = await f.token({
      form: {
        ...cc,
        resource: ordersApi,
        scope: 'order:amend',
        client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
        client_assertion: await f.assertion(),
      },
    });
    assert.equal(response.statusCode, 200, response.body);
    assert.equal(decodeJwt(response.json().access_token).payload.client_id, 'oms-service');
  });

  test('authenticates a client_secret_post client with the secret in the body', async (t) => {
    const f = await protocolFixture(t);
    const response = await f.token({ form: { ...cc, client_id: 'broker-2', client_secret: f.secrets['broker-2']!, resource: ordersApi } });
    assert.equal(response.statusCode, 200, response.body);
    assert.equal(response.json().scope, 'order:create');
  });

  test('refuses two resource values with invalid_target, since a token has exactly one audience', async (t) => {
    const f = await protocolFixture(t);
    const response = await f.token({ auth: f.basic('broker-1'), form: { ...cc, resource: [ordersApi, clearingApi], scope: 'order:create' } });
    assertOAuthError(response, 400, 'invalid_target');
  });

  test('refuses an unknown resource with invalid_target', async (t) => {
    const f = await protocolFixture(t);
    const response = await f.token({ auth: f.basic('broker-1'), form: { ...cc, resource: 'https://unknown.example.com/api' } });
    assertOAuthError(response, 400, 'invalid_target');
  });

  test('refuses a resource with a fragment with invalid_target', async (t) => {
    const f = await protocolFixture(t);
    const response = await f.token({ auth: f.basic('broker-1'), form: { ...cc, resource: `${ordersApi}#orders` } });
    assertOAuthError(response, 400, 'invalid_target');
  });

  test('refuses a relative resource with invalid_target', async (t) => {
    const f = await protocolFixture(t);
    const response = await f.token({ auth: f.basic('broker-1'), form: { ...cc, resource: '/api' } });
    assertOAuthError(response, 400, 'invalid_target');
  });

  test('refuses scopes offered by several resources without a resource, with invalid_target', async (t) => {
    const f = await protocolFixture(t);
    const response = await f.token({ auth: f.basic('broker-1'), form: { ...cc, scope: 'market:read' } });
    assertOAuthError(response, 400, 'invalid_target');
    const chosen = await f.token({ auth: f.basic('broker-1'), form: { ...cc, scope: 'market:read', resource: clearingApi } });
    assert.equal(chosen.statusCode, 200, chosen.body);
  });

  test('refuses a request with neither scope nor resource', async (t) => {
    const f = await protocolFixture(t);
    const response = await f.token({ auth: f.basic('broker-1'), form: cc });
    assertOAuthError(response, 400, 'invalid_target');
  });

  test('refuses a scope the resource does not offer with invalid_scope', async (t) => {
    const f = await protocolFixture(t);
    const response = await f.token({ auth: f.basic('broker-1'), form: { ...cc, resource: ordersApi, scope: 'settlement:submit' } });
    assertOAuthError(response, 400, 'invalid_scope');
  });

  test('refuses a scope the client is not allowed with invalid_scope', async (t) => {
    const f = await protocolFixture(t);
    const response = await f.token({ auth: f.basic('broker-1'), form: { ...cc, resource: ordersApi, scope: 'order:amend' } });
    assertOAuthError(response, 400, 'invalid_scope');
  });

  test('refuses a resource where the client is allowed no scope with invalid_scope', async (t) => {
    const f = await protocolFixture(t);
    const response = await f.token({ auth: f.basic('orders-gateway'), form: { ...cc, resource: reportingApi } });
    assertOAuthError(response, 400, 'invalid_scope');
  });

  test('refuses a scope no resource offers with invalid_scope', async (t) => {
    const f = await protocolFixture(t);
    const response = await f.token({ auth: f.basic('broker-1'), form: { ...cc, scope: 'order:explode' } });
    assertOAuthError(response, 400, 'invalid_scope');
  });

  test('refuses a malformed scope with invalid_scope', async (t) => {
    const f = await protocolFixture(t);
    const response = await f.token({ auth: f.basic('broker-1'), form: { ...cc, resource: ordersApi, scope: 'order:create  order:cancel' } });
    assertOAuthError(response, 400, 'invalid_scope');
  });

  test('refuses scope sent twice with invalid_request', async (t) => {
    const f = await protocolFixture(t);
    const response = await f.token({ auth: f.basic('broker-1'), form: { ...cc, resource: ordersApi, scope: ['order:create', 'order:cancel'] } });
    assertOAuthError(response, 400, 'invalid_request');
  });

  test('refuses grant_type sent twice with invalid_request', async (t) => {
    const f = await protocolFixture(t);
    const response = await f.token({ auth: f.basic('broker-1'), form: { grant_type: ['client_credentials', 'client_credentials'], resource: ordersApi } });
    assertOAuthError(response, 400, 'invalid_request');
  });

  test('refuses client_secret sent twice with invalid_request', async (t) => {
    const f = await protocolFixture(t);
    const secret = f.secrets['broker-2']!;
    const response = await f.token({ form: { ...cc, client_id: 'broker-2', client_secret: [secret, secret], resource: ordersApi } });
    assertOAuthError(response, 400, 'invalid_request');
  });

  test('refuses a missing grant_type with invalid_request', async (t) => {
    const f = await protocolFixture(t);
    const response = await f.token({ auth: f.basic('broker-1'), form: { resource: ordersApi } });
    assertOAuthError(response, 400, 'invalid_request');
  });

  test('refuses an empty grant_type with invalid_request', async (t) => {
    const f = await protocolFixture(t);
    const response = await f.token({ auth: f.basic('broker-1'), form: { grant_type: '', resource: ordersApi } });
    assertOAuthError(response, 400, 'invalid_request');
  });

  test('refuses the password grant with unsupported_grant_type for an authenticated client', async (t) => {
    const f = await protocolFixture(t);
    const response = await f.token({
      auth: f.basic('broker-1'),
      form: { grant_type: 'password', username: 'trader', password: 'hunter2', scope: 'order:create' },
    });
    assertOAuthError(response, 400, 'unsupported_grant_type');
  });

  test('refuses the password grant of an unauthenticated caller as invalid_client, not 5xx', async (t) => {
    const f = await protocolFixture(t);
    const response = await f.token({ form: { grant_type: 'password', username: 'trader', password: 'hunter2' } });
    assertOAuthError(response, 401, 'invalid_client');
  });

  test("keeps error_description within RFC 6749 §5.2's characters and short when it quotes the caller", async (t) => {
    const f = await protocolFixture(t);
    const grant = await f.token({ auth: f.basic('broker-1'), form: { grant_type: 'pässwörd "\\ 🙂' } });
    const body = assertOAuthError(grant, 400, 'unsupported_grant_type');
    assert.match(String(body.error_description), /^[\x20-\x21\x23-\x5b\x5d-\x7e]*$/);
    const scope = await f.token({ auth: f.basic('broker-1'), form: { ...cc, resource: ordersApi, scope: 'é'.repeat(5_000) } });
    assert.ok(String(assertOAuthError(scope, 400, 'invalid_scope').error_description).length <= 1000);
  });

  test('refuses client_credentials to a client not registered for it with unauthorized_client', async (t) => {
    const f = await protocolFixture(t);
    const response = await f.token({ auth: f.basic('trading-ui'), form: { ...cc, resource: ordersApi } });
    assertOAuthError(response, 400, 'unauthorized_client');
  });

  test('refuses a grant the server knows but the client did not register with unauthorized_client or unsupported_grant_type', async (t) => {
    const f = await protocolFixture(t);
    const response = await f.token({ auth: f.basic('broker-1'), form: { grant_type: 'authorization_code', code: 'abc', redirect_uri: 'https://x.example/cb' } });
    // unsupported_grant_type while the server has no code grant; unauthorized_client once it has one.
    const body = assertOAuthError(response, 400, response.json().error);
    assert.ok(['unauthorized_client', 'unsupported_grant_type'].includes(body.error as string), response.body);
  });

  test('refuses a JSON body with invalid_request, never 5xx', async (t) => {
    const f = await protocolFixture(t);
    const response = await f.inject({
      method: 'POST',
      url: '/token',
      headers: { 'content-type': 'application/json', authorization: f.basic('broker-1') },
      payload: JSON.stringify({ grant_type: 'client_credentials', resource: ordersApi }),
    });
    assertOAuthError(response, 400, 'invalid_request');
  });

  test('refuses malformed JSON with invalid_request', async (t) => {
    const f = await protocolFixture(t);
    const response = await f.inject({
      method: 'POST',
      url: '/token',
      headers: { 'content-type': 'application/json' },
      payload: '{"grant_type":',
    });
    assertOAuthError(response, 400, 'invalid_request');
  });

  test('refuses a text/plain or multipart body with 415 invalid_request', async (t) => {
    const f = await protocolFixture(t);
    for (const type of ['text/plain', 'multipart/form-data; boundary=x', 'application/xml']) {
      const response = await f.inject({ method: 'POST', url: '/token', headers: { 'content-type': type }, payload: 'grant_type=client_credentials' });
      assertOAuthError(response, 415, 'invalid_request', type);
    }
  });

  test('refuses a POST with no body with invalid_request', async (t) => {
    const f = await protocolFixture(t);
    const response = await f.inject({ method: 'POST', url: '/token', headers: { authorization: f.basic('broker-1') } });
    assertOAuthError(response, 400, 'invalid_request');
  });

  test('refuses an oversized body with 413', async (t) => {
    const f = await protocolFixture(t);
    const response = await f.token({ auth: f.basic('broker-1'), form: { ...cc, resource: ordersApi, pad: 'x'.repeat(70 * 1024) } });
    assertOAuthError(response, 413, 'invalid_request');
  });

  test('answers GET /token with 405 and Allow: POST', async (t) => {
    const f = await protocolFixture(t);
    const response = await f.inject({ method: 'GET', url: '/token?grant_type=client_credentials' });
    assertOAuthError(response, 405, 'invalid_request');
    assert.equal(response.headers.allow, 'POST');
  });

  test('refuses a token for a sender-constrained resource without a client certificate with invalid_request', async (t) => {
    const f = await protocolFixture(t);
    const response = await f.token({ auth: f.basic('broker-1'), form: { ...cc, resource: venueApi } });
    assertOAuthError(response, 400, 'invalid_request');
    assert.equal((await f.auditEvents('token.issued')).length, 0, 'nothing was issued');
  });

  test('refuses a request without client authentication with 401 invalid_client', async (t) => {
    const f = await protocolFixture(t);
    const response = await f.token({ form: { ...cc, resource: ordersApi } });
    assertOAuthError(response, 401, 'invalid_client');
  });

  test('refuses a client_id without a credential with 401 invalid_client', async (t) => {
    const f = await protocolFixture(t);
    const response = await f.token({ form: { ...cc, client_id: 'broker-1', resource: ordersApi } });
    assertOAuthError(response, 401, 'invalid_client');
  });

  test('refuses a wrong secret with 401 invalid_client and a Basic challenge', async (t) => {
    const f = await protocolFixture(t);
    const response = await f.token({ auth: f.basic('broker-1', 'not-the-secret'), form: { ...cc, resource: ordersApi } });
    assertOAuthError(response, 401, 'invalid_client');
    assert.match(String(response.headers['www-authenticate']), /^Basic realm=/);
  });

  test('refuses two authentication methods at once with invalid_client', async (t) => {
    const f = await protocolFixture(t);
    const response = await f.token({
      auth: f.basic('broker-1'),
      form: { ...cc, resource: ordersApi, client_id: 'broker-1', client_secret: f.secrets['broker-1']! },
    });
    assertOAuthError(response, 401, 'invalid_client');
  });

  test("refuses client B's id with client A's credentials with invalid_client", async (t) => {
    const f = await protocolFixture(t);
    const response = await f.token({ auth: f.basic('broker-1'), form: { ...cc, resource: ordersApi, client_id: 'broker-2' } });
    assertOAuthError(response, 401, 'invalid_client');
  });

  test('refuses a method other than the registered one with invalid_client', async (t) => {
    const f = await protocolFixture(t);
    // broker-1 is registered for client_secret_basic, not client_secret_post.
    const response = await f.token({ form: { ...cc, resource: ordersApi, client_id: 'broker-1', client_secret: f.secrets['broker-1']! } });
    assertOAuthError(response, 401, 'invalid_client');
  });

  test('refuses a client another process disabled, with invalid_client, when the clock stepped back meanwhile', async (t) => {
    const f = await protocolFixture(t);
    await f.accessToken('broker-1', { resource: ordersApi });
    // The wall clock steps back a minute (NTP, a resumed VM); the CLI disables the client meanwhile.
    f.clock.set(f.clock.now() - 60_000);
    const cli = new ClientStore(f.ctx.storage.db, f.clock);
    assert.equal(await f.ctx.storage.db.transaction().execute((trx) => cli.disable(trx, 'broker-1', f.clock.now())), true);
    f.clock.advance(5_000);
    assertOAuthError(await f.token({ auth: f.basic('broker-1'), form: { ...cc, resource: ordersApi } }), 401, 'invalid_client');
  });

  test('refuses a client assertion replayed within the second its fractional exp ends in, with invalid_client', async (t) => {
    const f = await protocolFixture(t);
    const now = Math.floor(f.clock.now() / 1000);
    // RFC 7519 §2: a NumericDate may have a fraction; the exp check compares it with whole seconds.
    const form = { ...cc, resource: ordersApi, client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: await f.assertion({ exp: now + 30.5 }) };
    assert.equal((await f.token({ form })).statusCode, 200);
    // 90.6 s on: past exp + 60 s of skew, still in the second the exp check lets it through.
    f.clock.set((now + 90.6) * 1000);
    assertOAuthError(await f.token({ form }), 401, 'invalid_client');
    f.clock.set((now + 91) * 1000);
    assertOAuthError(await f.token({ form }), 401, 'invalid_client');
  });

  test('refuses a replayed client assertion with invalid_client', async (t) => {
    const f = await protocolFixture(t);
    const assertion = await f.assertion();
    const form = { ...cc, resource: ordersApi, client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: assertion };
    assert.equal((await f.token({ form })).statusCode, 200);
    assertOAuthError(await f.token({ form }), 401, 'invalid_client');
  });

  test('refuses a client assertion whose audience is the token endpoint with invalid_client', async (t) => {
    const f = await protocolFixture(t);
    const response = await f.token({
      form: {
        ...cc,
        resource: ordersApi,
        client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
        client_assertion: await f.assertion({ aud: `${f.issuer}/token` }),
      },
    });
    assertOAuthError(response, 401, 'invalid_client');
  });

  test('refuses a JWT- or key-shaped client_id with invalid_client, never 5xx, and audits it without the value', async (t) => {
    const f = await protocolFixture(t);
    const jwtShaped = 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.sig';
    const pemShaped = '-----BEGIN PRIVATE KEY-----';
    for (const form of [
      { ...cc, client_id: jwtShaped, client_secret: 'x' },
      { ...cc, client_id: jwtShaped },
      { ...cc, client_id: pemShaped, client_secret: 'x' },
    ]) {
      assertOAuthError(await f.token({ form }), 401, 'invalid_client', JSON.stringify(form));
    }
    assertOAuthError(await f.token({ auth: f.basic(jwtShaped, 'x'), form: cc }), 401, 'invalid_client', 'basic');
    // Each refusal is still audited, without the secret-shaped value the caller sent.
    assert.equal((await f.auditEvents('client.auth_failed')).length, 4);
    const text = await f.auditText();
    assert.ok(!text.includes(jwtShaped));
    assert.ok(!text.includes(pemShaped));
  });

  test('throttles repeated failures of one client with 429, Retry-After and a client.throttled event', async (t) => {
    const f = await protocolFixture(t);
    const form = { ...cc, resource: ordersApi };
    // Each wrong secret from another address: together they reach the per-client limit of secret
    // guesses (10 per minute), after which an address that has failed as the client waits.
    for (let i = 0; i < 10; i++) {
      const response = await f.token({ auth: f.basic('broker-1', `wrong-${i}`), form, remoteAddress: `198.51.100.${i + 1}` });
      assertOAuthError(response, 401, 'invalid_client', `failure ${i}`);
    }
    const throttled = await f.token({ auth: f.basic('broker-1'), form, remoteAddress: '198.51.100.1' });
    assertOAuthError(throttled, 429, 'invalid_client', 'even the right secret is refused from an address that guessed');
    assert.match(String(throttled.headers['retry-after']), /^[1-9][0-9]*$/);
    assert.ok(Number(throttled.headers['retry-after']) <= 60);
    // An address that has not failed is let in: the throttle slows the guessers, not the client.
    assert.equal((await f.token({ auth: f.basic('broker-1'), form, remoteAddress: '198.51.100.200' })).statusCode, 200);

    // Another client is unaffected.
    assert.equal((await f.token({ auth: f.basic('orders-gateway'), form: { ...cc, resource: clearingApi } })).statusCode, 200);

    const failed = await f.auditEvents('client.auth_failed');
    assert.equal(failed.length, 10);
    assert.ok(failed.every((e) => e.decision?.allow === false));
    const events = await f.auditEvents('client.throttled');
    assert.equal(events.length, 1);
    assert.equal(events[0]!.decision?.allow, false);
    assert.equal((events[0]!.details as Record<string, unknown>).source_address, '198.51.100.1');

    // The window slides: a minute later the guessing address may try again.
    f.clock.advance(61_000);
    assert.equal((await f.token({ auth: f.basic('broker-1'), form, remoteAddress: '198.51.100.1' })).statusCode, 200);
  });

  test('throttles repeated failures from one address with 429 and Retry-After, for every client', async (t) => {
    const f = await protocolFixture(t);
    const address = '203.0.113.7';
    for (let i = 0; i < 30; i++) {
      // Unknown clients, each once: only the per-address limit (30 per minute) applies.
      const response = await f.token({ auth: f.basic(`guess-${i}`, 'x'), form: cc, remoteAddress: address });
      assertOAuthError(response, 401, 'invalid_client', `failure ${i}`);
    }
    const throttled = await f.token({ auth: f.basic('broker-1'), form: { ...cc, resource: ordersApi }, remoteAddress: address });
    assertOAuthError(throttled, 429, 'invalid_client');
    assert.match(String(throttled.headers['retry-after']), /^[1-9][0-9]*$/);
    const elsewhere = await f.token({ auth: f.basic('broker-1'), form: { ...cc, resource: ordersApi }, remoteAddress: '203.0.113.8' });
    assert.equal(elsewhere.statusCode, 200, 'another address is unaffected');

    const throttledEvents = await f.auditEvents('client.throttled');
    assert.equal(throttledEvents.length, 1);
    assert.equal((throttledEvents[0]!.details as Record<string, unknown>).source_address, address);
    const failed = await f.auditEvents('client.auth_failed');
    assert.equal(failed.length, 30);
    assert.ok(failed.every((e) => (e.details as Record<string, unknown>).source_address === address));
  });

  test('records a durable token.issued event naming client, audience, scopes and jti, never the token', async (t) => {
    const f = await protocolFixture(t);
    const response = await f.token({ auth: f.basic('broker-1'), form: { ...cc, resource: ordersApi, scope: 'order:cancel order:create' } });
    assert.equal(response.statusCode, 200, response.body);
    const accessToken = response.json().access_token as string;
    const { payload } = decodeJwt(accessToken);

    // Written before the response left: it is in the table now.
    const events = await f.auditEvents('token.issued');
    assert.equal(events.length, 1);
    const event = events[0]!;
    assert.equal(event.client, 'broker-1');
    assert.equal(event.subject, 'broker-1');
    assert.equal(event.audience, ordersApi);
    assert.deepEqual(event.scopes, ['order:cancel', 'order:create']);
    assert.equal((event.details as Record<string, unknown>).jti, payload.jti);
    assert.equal(event.issuer, f.issuer);
    assert.equal(typeof event.requestId, 'string');

    const text = await f.auditText();
    assert.ok(!text.includes(accessToken), 'the access token is not in the audit log');
    assert.ok(!text.includes(accessToken.split('.')[2]!), 'nor its signature');
    assert.ok(!text.includes(f.secrets['broker-1']!), 'nor the client secret');
  });

  test('records no secret or assertion in a client.auth_failed event', async (t) => {
    const f = await protocolFixture(t);
    const assertion = await f.assertion({ aud: 'https://elsewhere.example.com' });
    await f.token({ form: { ...cc, client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: assertion } });
    await f.token({ form: { ...cc, client_id: 'broker-2', client_secret: 'guess-of-a-secret' } });
    const failed = await f.auditEvents('client.auth_failed');
    assert.equal(failed.length, 2);
    const text = await f.auditText();
    assert.ok(!text.includes(assertion));
    assert.ok(!text.includes('guess-of-a-secret'));
  });
});
