import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { codeFlowFixture, type CodeFlowFixture, type Person } from '../authorization/fixture.ts';
import { accessTokenType, exchangeGrantType } from '../grants/exchange-fixture.ts';
import { testDialects } from '../helpers/storage.ts';
import { assertOAuthError, decodeJwt, ordersApi, protocolFixture, resourceServers, type ProtocolFixture } from './fixture.ts';

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

interface PersonTokens {
  access_token: string;
  refresh_token: string;
}

/** One code redemption of web-app for `person`: a refresh family of its own, under the person's one grant. */
async function family(f: CodeFlowFixture, person: Person): Promise<PersonTokens> {
  const { code, pkce } = await f.authorizeAndApprove({ person, query: { scope: 'openid order:create', resource: ordersApi } });
  const redeemed = await f.redeem('web-app', code, pkce.verifier);
  assert.equal(redeemed.statusCode, 200, redeemed.body);
  return redeemed.json() as PersonTokens;
}

describe('revoking a refresh token (RFC 7009 §2.1)', () => {
  for (const dialect of testDialects()) {
    test(`ends the access tokens of its family at introspection, at a protected resource and at token exchange, and not another family's of the same grant (${dialect.name})`, async (t) => {
      const f = await codeFlowFixture(t, { dialect });
      await f.apply({
        resource_servers: [{ ...resourceServers[0], exchange_clients: ['desk-backend'] }],
        clients: [{ client_id: 'desk-backend', kind: 'service', token_endpoint_auth_method: 'client_secret_basic', grant_types: [exchangeGrantType], scope: 'order:create' }],
      });
      const exchange = (subjectToken: string) =>
        f.post('/token', { auth: f.basic('desk-backend'), form: { grant_type: exchangeGrantType, subject_token: subjectToken, subject_token_type: accessTokenType, resource: ordersApi } });
      const userinfo = (token: string) => f.inject({ method: 'GET', url: '/userinfo', headers: { authorization: `Bearer ${token}` } });
      const person = await f.signIn('alice');
      const revoked = await family(f, person);
      // The same person's second device: another family of the same grant.
      const kept = await family(f, person);
      assert.equal(decodeJwt(kept.access_token).payload.grant_id, decodeJwt(revoked.access_token).payload.grant_id, 'one grant, two families');
      const refreshedResponse = await f.refresh('web-app', revoked.refresh_token, { resource: `${f.issuer}/userinfo` });
      assert.equal(refreshedResponse.statusCode, 200, refreshedResponse.body);
      const refreshed = refreshedResponse.json() as PersonTokens;
      assert.equal((await userinfo(refreshed.access_token)).statusCode, 200, 'the refreshed userinfo token works before the revocation');

      assertRevocationOk(await f.post('/revoke', { auth: f.basic('web-app'), form: { token: refreshed.refresh_token, token_type_hint: 'refresh_token' } }));

      assert.equal((await f.introspect('web-app', revoked.access_token)).active, false, 'the access token issued with the family');
      assert.equal((await f.introspect('web-app', refreshed.access_token)).active, false, 'the access token a refresh of the family issued');
      assert.equal((await f.introspect('web-app', kept.access_token)).active, true, "another family's access token of the same grant");
      assertOAuthError(await userinfo(refreshed.access_token), 401, 'invalid_token', 'userinfo');
      assertOAuthError(await exchange(revoked.access_token), 400, 'invalid_request', "token exchange of the family's token");
      assert.equal((await exchange(kept.access_token)).statusCode, 200, "another family's token is still exchanged");
      assertOAuthError(await f.refresh('web-app', revoked.refresh_token), 400, 'invalid_grant', 'the family itself');
      assert.equal((await f.refresh('web-app', kept.refresh_token)).statusCode, 200, 'the other family refreshes');
    });
  }

  test('ends a token exchanged from a token of the family, at every hop, and not one exchanged from another family', async (t) => {
    const f = await codeFlowFixture(t);
    await f.apply({
      resource_servers: [{ ...resourceServers[0], exchange_clients: ['desk-backend'] }],
      clients: [{ client_id: 'desk-backend', kind: 'service', token_endpoint_auth_method: 'client_secret_basic', grant_types: [exchangeGrantType], scope: 'order:create' }],
    });
    const exchange = async (subjectToken: string) => {
      const response = await f.post('/token', { auth: f.basic('desk-backend'), form: { grant_type: exchangeGrantType, subject_token: subjectToken, subject_token_type: accessTokenType, resource: ordersApi } });
      assert.equal(response.statusCode, 200, response.body);
      return (response.json() as { access_token: string }).access_token;
    };
    const person = await f.signIn('alice');
    const revoked = await family(f, person);
    const kept = await family(f, person);
    const hop1 = await exchange(revoked.access_token);
    const hop2 = await exchange(hop1);
    const otherHop = await exchange(kept.access_token);
    assert.equal((await f.introspect('desk-backend', hop2)).active, true, 'the second hop is live before the revocation');

    assertRevocationOk(await f.post('/revoke', { auth: f.basic('web-app'), form: { token: revoked.refresh_token, token_type_hint: 'refresh_token' } }));

    assert.equal((await f.introspect('desk-backend', hop1)).active, false, 'the first hop of the family');
    assert.equal((await f.introspect('desk-backend', hop2)).active, false, 'the second hop of the family');
    assert.equal((await f.introspect('desk-backend', otherHop)).active, true, "a hop of another family's token");
  });

  test('ends a reference token of its family too', async (t) => {
    const f = await codeFlowFixture(t);
    await f.apply({ resource_servers: [{ ...resourceServers[0], access_token_format: 'reference' }] });
    const tokens = await family(f, await f.signIn('alice'));
    assert.match(tokens.access_token, /^clr_at_/);
    assert.equal((await f.introspect('web-app', tokens.access_token)).active, true);
    assertRevocationOk(await f.post('/revoke', { auth: f.basic('web-app'), form: { token: tokens.refresh_token } }));
    assert.equal((await f.introspect('web-app', tokens.access_token)).active, false);
  });

  test('records the revocation of the family with the event, and leaves client_credentials tokens, which name no family, alone', async (t) => {
    const f = await codeFlowFixture(t);
    const machine = await f.accessToken('broker-1', { resource: ordersApi });
    assert.equal(decodeJwt(machine).payload.refresh_family, undefined, 'a client_credentials token names no refresh family');
    const tokens = await family(f, await f.signIn('alice'));
    const familyId = decodeJwt(tokens.access_token).payload.refresh_family;
    assert.equal(typeof familyId, 'string');
    assertRevocationOk(await f.post('/revoke', { auth: f.basic('web-app'), form: { token: tokens.refresh_token } }));
    const [event] = await f.auditEvents('token.revoked');
    assert.equal((event!.details as Record<string, unknown>).family_id, familyId);
    assert.equal(await active(f, 'broker-1', machine), true);
  });
});
