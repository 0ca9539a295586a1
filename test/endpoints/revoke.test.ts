import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { assertOAuthError, decodeJwt, ordersApi, protocolFixture, type ProtocolFixture } from './fixture.ts';

async function active(f: ProtocolFixture, callerId: string, token: string): Promise<boolean> {
  const response = await f.post('/introspect', { auth: f.basic(callerId), form: { token } });
  assert.equal(response.statusCode, 200, response.body);
  return response.json().active as boolean;
}

/** RFC 7009 §2.2: 200 with an empty body, whatever happened to the token. */
function assertRevocationOk(response: LightMyRequestResponse): void {
  assert.equal(response.statusCode, 200, response.body);
  assert.equal(response.body, '');
  assert.equal(response.headers['cache-control'], 'no-store');
}

describe('the revocation endpoint', () => {
  test('revokes a valid token of the calling client with 200 and an empty body, then introspection says inactive', async (t) => {
    const f = await protocolFixture(t);
    const token = await f.accessToken('broker-1', { resource: ordersApi });
    assert.equal(await active(f, 'broker-1', token), true);
    assertRevocationOk(await f.post('/revoke', { auth: f.basic('broker-1'), form: { token, token_type_hint: 'access_token' } }));
    assert.equal(await active(f, 'broker-1', token), false);
  });

  test('records a token.revoked event with the jti, never the token', async (t) => {
    const f = await protocolFixture(t);
    const token = await f.accessToken('broker-1', { resource: ordersApi });
    assertRevocationOk(await f.post('/revoke', { auth: f.basic('broker-1'), form: { token } }));
    const events = await f.auditEvents('token.revoked');
    assert.equal(events.length, 1);
    assert.equal(events[0]!.actor, 'broker-1');
    assert.equal(events[0]!.client, 'broker-1');
    assert.equal(events[0]!.audience, ordersApi);
    assert.equal((events[0]!.details as Record<string, unknown>).jti, decodeJwt(token).payload.jti);
    assert.ok(!(await f.auditText()).includes(token));
  });

  test('answers 200 when a token is revoked twice, recording it once', async (t) => {
    const f = await protocolFixture(t);
    const token = await f.accessToken('broker-1', { resource: ordersApi });
    assertRevocationOk(await f.post('/revoke', { auth: f.basic('broker-1'), form: { token } }));
    assertRevocationOk(await f.post('/revoke', { auth: f.basic('broker-1'), form: { token } }));
    assert.equal(await active(f, 'broker-1', token), false);
  });

  test('answers 200 for garbage and revokes nothing', async (t) => {
    const f = await protocolFixture(t);
    for (const token of ['garbage', 'a.b.c', 'x'.repeat(20_000)]) {
      assertRevocationOk(await f.post('/revoke', { auth: f.basic('broker-1'), form: { token } }));
    }
    assert.equal((await f.auditEvents('token.revoked')).length, 0);
  });

  test("answers 200 for another client's token but leaves that token active", async (t) => {
    const f = await protocolFixture(t);
    const token = await f.accessToken('broker-1', { resource: ordersApi });
    assertRevocationOk(await f.post('/revoke', { auth: f.basic('broker-3'), form: { token } }));
    assert.equal(await active(f, 'broker-1', token), true);
    // Not even the audience's introspector may revoke it.
    assertRevocationOk(await f.post('/revoke', { auth: f.basic('orders-gateway'), form: { token } }));
    assert.equal(await active(f, 'broker-1', token), true);
    assert.equal((await f.auditEvents('token.revoked')).length, 0);
  });

  test('answers 200 for an expired token', async (t) => {
    const f = await protocolFixture(t);
    const token = await f.accessToken('broker-1', { resource: ordersApi });
    f.clock.set(((decodeJwt(token).payload.exp as number) + 1) * 1000);
    assertRevocationOk(await f.post('/revoke', { auth: f.basic('broker-1'), form: { token } }));
  });

  test('accepts the refresh_token hint', async (t) => {
    const f = await protocolFixture(t);
    assertRevocationOk(await f.post('/revoke', { auth: f.basic('broker-1'), form: { token: 'opaque', token_type_hint: 'refresh_token' } }));
  });

  test('refuses an unsupported token_type_hint with unsupported_token_type', async (t) => {
    const f = await protocolFixture(t);
    const token = await f.accessToken('broker-1', { resource: ordersApi });
    const response = await f.post('/revoke', { auth: f.basic('broker-1'), form: { token, token_type_hint: 'id_token' } });
    assertOAuthError(response, 400, 'unsupported_token_type');
    assert.equal(await active(f, 'broker-1', token), true);
  });

  test('requires client authentication: none is 401 invalid_client', async (t) => {
    const f = await protocolFixture(t);
    const token = await f.accessToken('broker-1', { resource: ordersApi });
    assertOAuthError(await f.post('/revoke', { form: { token } }), 401, 'invalid_client');
    assertOAuthError(await f.post('/revoke', { form: { token, client_id: 'broker-1' } }), 401, 'invalid_client');
    assertOAuthError(await f.post('/revoke', { auth: f.basic('broker-1', 'wrong'), form: { token } }), 401, 'invalid_client');
    assert.equal(await active(f, 'broker-1', token), true);
  });

  test('refuses a request without token with invalid_request', async (t) => {
    const f = await protocolFixture(t);
    assertOAuthError(await f.post('/revoke', { auth: f.basic('broker-1'), form: {} }), 400, 'invalid_request');
  });

  test('refuses a repeated parameter with invalid_request', async (t) => {
    const f = await protocolFixture(t);
    const token = await f.accessToken('broker-1', { resource: ordersApi });
    assertOAuthError(await f.post('/revoke', { auth: f.basic('broker-1'), form: { token: [token, 'x'] } }), 400, 'invalid_request');
    assert.equal(await active(f, 'broker-1', token), true);
  });

  test('answers GET /revoke with 405 and Allow: POST', async (t) => {
    const f = await protocolFixture(t);
    const response = await f.inject({ method: 'GET', url: '/revoke' });
    assertOAuthError(response, 405, 'invalid_request');
    assert.equal(response.headers.allow, 'POST');
  });
});
