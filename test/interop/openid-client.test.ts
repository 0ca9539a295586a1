import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as client from 'openid-client';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { executionApi, m2mFixture } from './m2m-fixture.ts';

// openid-client v6, a client nobody here wrote, against a listening Clearance.
const insecure = { execute: [client.allowInsecureRequests] }; // the test issuer is http on loopback

test('openid-client gets a token with private_key_jwt, introspects it and revokes it', async (t) => {
  const { server, jwtClient } = await m2mFixture(t);
  const config = await client.discovery(
    new URL(server.issuer),
    jwtClient.id,
    undefined,
    client.PrivateKeyJwt({ key: jwtClient.privateKey, kid: jwtClient.kid }),
    insecure,
  );
  const tokens = await client.clientCredentialsGrant(config, { scope: 'order:create', resource: executionApi });
  assert.equal(tokens.token_type.toLowerCase(), 'bearer');
  assert.equal(tokens.scope, 'order:create');

  const { payload, protectedHeader } = await jwtVerify(tokens.access_token, createRemoteJWKSet(new URL(`${server.issuer}/jwks`)), {
    issuer: server.issuer,
    audience: executionApi,
    typ: 'at+jwt',
  });
  assert.equal(protectedHeader.alg, 'ES256');
  assert.equal(payload.client_id, jwtClient.id);
  assert.equal(payload.sub, jwtClient.id);

  const active = await client.tokenIntrospection(config, tokens.access_token);
  assert.equal(active.active, true);
  assert.equal(active.client_id, jwtClient.id);
  assert.equal(active.aud, executionApi);

  await client.tokenRevocation(config, tokens.access_token);
  const after = await client.tokenIntrospection(config, tokens.access_token);
  assert.equal(after.active, false);
});

test('openid-client gets a token with client_secret_basic and introspects it', async (t) => {
  const { server, secretClient } = await m2mFixture(t);
  const config = await client.discovery(
    new URL(server.issuer),
    secretClient.id,
    undefined,
    client.ClientSecretBasic(secretClient.secret),
    insecure,
  );
  const tokens = await client.clientCredentialsGrant(config, { scope: 'position:view', resource: executionApi });
  assert.equal(tokens.scope, 'position:view');
  const active = await client.tokenIntrospection(config, tokens.access_token);
  assert.equal(active.active, true);
  assert.equal(active.scope, 'position:view');
  await client.tokenRevocation(config, tokens.access_token);
  assert.equal((await client.tokenIntrospection(config, tokens.access_token)).active, false);
});

test('openid-client surfaces invalid_client for a wrong secret', async (t) => {
  const { server, secretClient } = await m2mFixture(t);
  const config = await client.discovery(new URL(server.issuer), secretClient.id, undefined, client.ClientSecretBasic('wrong'), insecure);
  await assert.rejects(client.clientCredentialsGrant(config, { scope: 'position:view', resource: executionApi }), (error: unknown) => {
    // A 401 with a WWW-Authenticate challenge (RFC 6749 §5.2) surfaces as a challenge error.
    assert.ok(error instanceof client.WWWAuthenticateChallengeError, String(error));
    assert.equal(error.status, 401);
    assert.equal(error.cause[0]?.scheme, 'basic');
    assert.equal((error.response as Response).headers.get('cache-control'), 'no-store');
    return true;
  });
});
