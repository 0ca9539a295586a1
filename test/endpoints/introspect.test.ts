import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { SignJWT, createLocalJWKSet, generateKeyPair, jwtVerify, type JSONWebKeySet } from 'jose';
import { testDialects } from '../helpers/storage.ts';
import { assertOAuthError, clearingApi, decodeJwt, ordersApi, ordersTtl, protocolFixture, type ProtocolFixture } from './fixture.ts';

async function introspect(f: ProtocolFixture, callerId: string, token: string, headers: Record<string, string> = {}) {
  return f.post('/introspect', { auth: f.basic(callerId), form: { token }, headers });
}

/** The JSON answer of a successful introspection (RFC 7662 §2.2), checking the response's shape. */
async function answer(f: ProtocolFixture, callerId: string, token: string): Promise<Record<string, unknown>> {
  const response = await introspect(f, callerId, token);
  assert.equal(response.statusCode, 200, response.body);
  assert.match(String(response.headers['content-type']), /^application\/json/);
  assert.equal(response.headers['cache-control'], 'no-store');
  return response.json() as Record<string, unknown>;
}

describe('the introspection endpoint', () => {
  test('answers active with the claims for a token of the calling client', async (t) => {
    const f = await protocolFixture(t);
    const token = await f.accessToken('broker-1', { resource: ordersApi, scope: 'order:create' });
    const claims = decodeJwt(token).payload;
    const body = await answer(f, 'broker-1', token);
    assert.equal(body.active, true);
    assert.equal(body.token_type, 'Bearer');
    assert.equal(body.client_id, 'broker-1');
    assert.equal(body.sub, 'broker-1');
    assert.equal(body.aud, ordersApi);
    assert.equal(body.iss, f.issuer);
    assert.equal(body.scope, 'order:create');
    assert.equal(body.jti, claims.jti);
    assert.equal(body.exp, claims.exp);
    assert.equal(body.iat, claims.iat);
  });

  test('answers a private_key_jwt caller about its own token', async (t) => {
    const f = await protocolFixture(t);
    const type = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
    const issued = await f.token({ form: { grant_type: 'client_credentials', resource: ordersApi, client_assertion_type: type, client_assertion: await f.assertion() } });
    const token = issued.json().access_token as string;
    const response = await f.post('/introspect', { form: { token, client_assertion_type: type, client_assertion: await f.assertion() } });
    assert.equal(response.statusCode, 200, response.body);
    assert.equal(response.json().active, true);
    assert.equal(response.json().client_id, 'oms-service');
  });

  test('requires client authentication: none is 401 invalid_client', async (t) => {
    const f = await protocolFixture(t);
    const token = await f.accessToken('broker-1', { resource: ordersApi });
    assertOAuthError(await f.post('/introspect', { form: { token } }), 401, 'invalid_client');
    assertOAuthError(await f.post('/introspect', { form: { token, client_id: 'broker-1' } }), 401, 'invalid_client');
    assertOAuthError(await f.post('/introspect', { auth: f.basic('broker-1', 'wrong'), form: { token } }), 401, 'invalid_client');
  });

  test('refuses a request without token with invalid_request', async (t) => {
    const f = await protocolFixture(t);
    assertOAuthError(await f.post('/introspect', { auth: f.basic('broker-1'), form: {} }), 400, 'invalid_request');
    assertOAuthError(await f.post('/introspect', { auth: f.basic('broker-1'), form: { token: '' } }), 400, 'invalid_request');
  });

  test('refuses token sent twice with invalid_request', async (t) => {
    const f = await protocolFixture(t);
    const token = await f.accessToken('broker-1', { resource: ordersApi });
    assertOAuthError(await f.post('/introspect', { auth: f.basic('broker-1'), form: { token: [token, token] } }), 400, 'invalid_request');
  });

  test('refuses a JSON body with invalid_request', async (t) => {
    const f = await protocolFixture(t);
    const response = await f.inject({
      method: 'POST',
      url: '/introspect',
      headers: { 'content-type': 'application/json', authorization: f.basic('broker-1') },
      payload: JSON.stringify({ token: 'x' }),
    });
    assertOAuthError(response, 400, 'invalid_request');
  });

  test('answers GET /introspect with 405 and Allow: POST', async (t) => {
    const f = await protocolFixture(t);
    const response = await f.inject({ method: 'GET', url: '/introspect' });
    assertOAuthError(response, 405, 'invalid_request');
    assert.equal(response.headers.allow, 'POST');
  });

  test('answers inactive, and nothing more, for garbage', async (t) => {
    const f = await protocolFixture(t);
    for (const token of ['garbage', 'a.b.c', 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.', 'x'.repeat(20_000), '🙂.🙂.🙂']) {
      assert.deepEqual(await answer(f, 'broker-1', token), { active: false }, token.slice(0, 40));
    }
  });

  test('answers inactive for an expired token, and active one second before it expires', async (t) => {
    const f = await protocolFixture(t);
    const token = await f.accessToken('broker-1', { resource: ordersApi });
    const exp = decodeJwt(token).payload.exp as number;
    f.clock.set((exp - 1) * 1000);
    assert.equal((await answer(f, 'broker-1', token)).active, true);
    f.clock.set((exp + 1) * 1000);
    assert.deepEqual(await answer(f, 'broker-1', token), { active: false });
    assert.ok(ordersTtl > 1);
  });

  test('answers inactive for a token signed by another key under the server kid', async (t) => {
    const f = await protocolFixture(t);
    const genuine = decodeJwt(await f.accessToken('broker-1', { resource: ordersApi }));
    const { privateKey } = await generateKeyPair('ES256');
    const forged = await new SignJWT({ ...genuine.payload, jti: 'forged-1' })
      .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: genuine.header.kid as string })
      .sign(privateKey);
    assert.deepEqual(await answer(f, 'broker-1', forged), { active: false });
  });

  test('answers inactive for a token signed by an unknown key', async (t) => {
    const f = await protocolFixture(t);
    const genuine = decodeJwt(await f.accessToken('broker-1', { resource: ordersApi }));
    const { privateKey } = await generateKeyPair('ES256');
    const forged = await new SignJWT({ ...genuine.payload })
      .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: 'attacker-key' })
      .sign(privateKey);
    assert.deepEqual(await answer(f, 'broker-1', forged), { active: false });
  });

  test('answers inactive for an unsigned (alg none) copy of a token', async (t) => {
    const f = await protocolFixture(t);
    const genuine = decodeJwt(await f.accessToken('broker-1', { resource: ordersApi }));
    const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
    for (const alg of ['none', 'None', 'NONE']) {
      const unsigned = `${b64({ ...genuine.header, alg })}.${b64(genuine.payload)}.`;
      assert.deepEqual(await answer(f, 'broker-1', unsigned), { active: false }, alg);
    }
  });

  test('answers inactive for a JWT the server signed that is not an access token', async (t) => {
    const f = await protocolFixture(t);
    const claims = decodeJwt(await f.accessToken('broker-1', { resource: ordersApi })).payload;
    const notAnAccessToken = await f.ctx.keys.signJwt({ typ: 'JWT' }, { ...claims, jti: 'other-kind' });
    assert.deepEqual(await answer(f, 'broker-1', notAnAccessToken), { active: false });
    // A signed introspection response fed back as a token is not one either.
    const token = await f.accessToken('broker-1', { resource: ordersApi });
    const signed = (await introspect(f, 'broker-1', token, { accept: 'application/token-introspection+jwt' })).body;
    assert.deepEqual(await answer(f, 'broker-1', signed), { active: false });
  });

  test("answers inactive for another client's token", async (t) => {
    const f = await protocolFixture(t);
    const token = await f.accessToken('broker-1', { resource: ordersApi });
    assert.deepEqual(await answer(f, 'broker-3', token), { active: false });
    assert.deepEqual(await answer(f, 'admin-viewer', token), { active: false });
  });

  for (const dialect of testDialects()) {
    test(`an introspection by a client outside the token's audience is introspection.refused, by jti, never the token (${dialect.name})`, async (t) => {
      const f = await protocolFixture(t, { dialect });
      const token = await f.accessToken('broker-1', { resource: ordersApi });
      assert.deepEqual(await answer(f, 'broker-3', token), { active: false });
      const rows = await f.ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', 'introspection.refused').execute();
      assert.equal(rows.length, 1);
      const event = JSON.parse(rows[0]!.event) as { client: string; subject: string; details: Record<string, unknown> };
      assert.equal(event.client, 'broker-3');
      assert.equal(event.subject, 'broker-1');
      assert.equal(event.details.reason, 'outside_audience');
      assert.equal(event.details.jti, decodeJwt(token).payload.jti);
      assert.ok(!rows[0]!.event.includes(token));
    });
  }

  test("answers active for another client's token when the caller is an introspector of its audience", async (t) => {
    const f = await protocolFixture(t);
    const token = await f.accessToken('broker-1', { resource: ordersApi });
    const body = await answer(f, 'orders-gateway', token);
    assert.equal(body.active, true);
    assert.equal(body.client_id, 'broker-1');
  });

  test("answers inactive to an introspector of one audience for another audience's token", async (t) => {
    const f = await protocolFixture(t);
    const token = await f.accessToken('broker-1', { resource: clearingApi, scope: 'settlement:submit' });
    assert.deepEqual(await answer(f, 'orders-gateway', token), { active: false });
  });

  test('answers inactive once the token is revoked', async (t) => {
    const f = await protocolFixture(t);
    const token = await f.accessToken('broker-1', { resource: ordersApi });
    assert.equal((await answer(f, 'broker-1', token)).active, true);
    const revoked = await f.post('/revoke', { auth: f.basic('broker-1'), form: { token } });
    assert.equal(revoked.statusCode, 200, revoked.body);
    assert.deepEqual(await answer(f, 'broker-1', token), { active: false });
    assert.deepEqual(await answer(f, 'orders-gateway', token), { active: false });
  });

  test('returns a signed JWT response (RFC 9701) when asked with Accept: application/token-introspection+jwt', async (t) => {
    const f = await protocolFixture(t);
    const token = await f.accessToken('broker-1', { resource: ordersApi, scope: 'order:cancel' });
    const response = await introspect(f, 'orders-gateway', token, { accept: 'application/token-introspection+jwt' });
    assert.equal(response.statusCode, 200, response.body);
    assert.equal(response.headers['content-type'], 'application/token-introspection+jwt');
    assert.equal(response.headers['cache-control'], 'no-store');

    const jwks = (await f.inject({ method: 'GET', url: '/jwks' })).json() as JSONWebKeySet;
    const { payload, protectedHeader } = await jwtVerify(response.body, createLocalJWKSet(jwks), {
      issuer: f.issuer,
      audience: 'orders-gateway',
      typ: 'token-introspection+jwt',
      currentDate: new Date(f.clock.now()),
    });
    assert.equal(protectedHeader.typ, 'token-introspection+jwt');
    assert.equal(payload.aud, 'orders-gateway', 'addressed to the caller');
    assert.equal(typeof payload.iat, 'number');
    const inner = payload.token_introspection as Record<string, unknown>;
    assert.equal(inner.active, true);
    assert.equal(inner.client_id, 'broker-1');
    assert.equal(inner.scope, 'order:cancel');
    assert.equal(inner.aud, ordersApi);
  });

  test('signs an inactive answer too when asked for a JWT', async (t) => {
    const f = await protocolFixture(t);
    const response = await introspect(f, 'broker-3', 'garbage', { accept: 'application/json;q=0.5, application/token-introspection+jwt' });
    assert.equal(response.statusCode, 200, response.body);
    assert.equal(response.headers['content-type'], 'application/token-introspection+jwt');
    assert.deepEqual(decodeJwt(response.body).payload.token_introspection, { active: false });
    assert.equal(decodeJwt(response.body).payload.aud, 'broker-3');
  });
});
