import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import * as client from 'openid-client';
import { calculateJwkThumbprint, decodeJwt, exportJWK, generateKeyPair, type CryptoKey } from 'jose';
import { decidePassword, upsertUser } from '../../src/identity/users.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { HttpBrowser, signInAndApprove } from '../helpers/http-browser.ts';

// openid-client v6 with its DPoP handle (RFC 9449), a client nobody here wrote, against a listening
// Clearance: client credentials and the code flow (PAR with a proof, the code, refresh, userinfo),
// the admin API as a DPoP-protected resource, with and without server nonces.

const insecure = { execute: [client.allowInsecureRequests] }; // the test issuer is http on loopback
const ordersApi = 'https://orders.example.com/api';
const redirectUri = 'http://127.0.0.1/cb';
const password = 'correct horse battery staple';

async function setUp(t: TestContext, env: NodeJS.ProcessEnv = {}): Promise<{ server: TestServer; key: CryptoKey }> {
  const server = await startTestServer({ t, env });
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const jwks = { keys: [{ ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' }] };
  await server.apply({
    resource_servers: [{ identifier: ordersApi, name: 'Order API', scopes: ['order:create'], require_sender_constraint: true }],
    clients: [
      { client_id: 'algo-1', kind: 'agent', token_endpoint_auth_method: 'private_key_jwt', jwks, grant_types: ['client_credentials'], scope: 'order:create admin:read' },
      {
        client_id: 'desk-app',
        client_name: 'Desk',
        kind: 'app',
        token_endpoint_auth_method: 'private_key_jwt',
        jwks,
        grant_types: ['authorization_code', 'refresh_token'],
        redirect_uris: [redirectUri],
        profile: 'fapi2',
        scope: 'openid order:create',
      },
    ],
  });
  const ctx = server.running.ctx;
  const entry = { username: 'alice', name: 'Alice Trader', email: 'alice@broker.example.com', password };
  const decision = await decidePassword(ctx.storage.db, entry);
  await ctx.storage.db.transaction().execute((trx) => upsertUser(trx, ctx.clock.now(), entry, decision));
  return { server, key: privateKey };
}

/** The token endpoint's refusal of a bearer token where only sender-constrained ones may go. */
function refusedBearer(error: unknown): boolean {
  assert.ok(error instanceof client.ResponseBodyError, String(error));
  assert.equal(error.error, 'invalid_request');
  assert.match(String(error.error_description), /sender-constrained/);
  return true;
}

for (const nonces of ['off', 'required'] as const) {
  test(`openid-client gets a DPoP-bound client_credentials token and calls the admin API with it (nonces ${nonces})`, async (t) => {
    const { server, key } = await setUp(t, { CLEARANCE_DPOP_NONCE: nonces });
    const config = await client.discovery(new URL(server.issuer), 'algo-1', undefined, client.PrivateKeyJwt({ key, kid: 'k1' }), insecure);
    assert.deepEqual(config.serverMetadata().dpop_signing_alg_values_supported, ['ES256', 'EdDSA', 'Ed25519', 'PS256']);
    const keyPair = await client.randomDPoPKeyPair('ES256');
    const DPoP = client.getDPoPHandle(config, keyPair);
    const jkt = await calculateJwkThumbprint(await exportJWK(keyPair.publicKey), 'sha256');

    // The Order API only takes sender-constrained tokens: a bearer request is refused.
    await assert.rejects(client.clientCredentialsGrant(config, { scope: 'order:create', resource: ordersApi }), refusedBearer);
    const tokens = await client.clientCredentialsGrant(config, { scope: 'order:create', resource: ordersApi }, { DPoP });
    assert.equal(tokens.token_type.toLowerCase(), 'dpop');
    assert.deepEqual(decodeJwt(tokens.access_token).cnf, { jkt });

    const admin = await client.clientCredentialsGrant(config, { resource: `${server.issuer}/admin`, scope: 'admin:read' }, { DPoP });
    const response = await client.fetchProtectedResource(config, admin.access_token, new URL(`${server.issuer}/admin/clients`), 'GET', undefined, undefined, { DPoP });
    assert.equal(response.status, 200);
    // Another key cannot use the token.
    const thief = client.getDPoPHandle(config, await client.randomDPoPKeyPair('ES256'));
    await assert.rejects(
      client.fetchProtectedResource(config, admin.access_token, new URL(`${server.issuer}/admin/clients`), 'GET', undefined, undefined, { DPoP: thief }),
      (error: unknown) => error instanceof client.WWWAuthenticateChallengeError && error.cause[0]?.scheme === 'dpop',
    );
  });
}

test('openid-client runs PAR with a DPoP proof, the code, refresh and userinfo for a FAPI 2.0 client', async (t) => {
  const { server, key } = await setUp(t, { CLEARANCE_DPOP_NONCE: 'required' });
  const config = await client.discovery(new URL(server.issuer), 'desk-app', undefined, client.PrivateKeyJwt({ key, kid: 'k1' }), insecure);
  const keyPair = await client.randomDPoPKeyPair('ES256');
  const DPoP = client.getDPoPHandle(config, keyPair);
  const jkt = await calculateJwkThumbprint(await exportJWK(keyPair.publicKey), 'sha256');
  const verifier = client.randomPKCECodeVerifier();
  const nonce = client.randomNonce();
  const authorizationUrl = await client.buildAuthorizationUrlWithPAR(
    config,
    { redirect_uri: redirectUri, scope: 'openid order:create', code_challenge: await client.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256', nonce },
    { DPoP },
  );
  const callback = await signInAndApprove(new HttpBrowser(), server.issuer, authorizationUrl, { username: 'alice', password });
  const tokens = await client.authorizationCodeGrant(config, callback, { pkceCodeVerifier: verifier, expectedNonce: nonce }, undefined, { DPoP });
  assert.equal(tokens.token_type.toLowerCase(), 'dpop');
  assert.deepEqual(decodeJwt(tokens.access_token).cnf, { jkt });

  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token!, { resource: `${server.issuer}/userinfo` }, { DPoP });
  assert.deepEqual(decodeJwt(refreshed.access_token).cnf, { jkt });
  const userinfo = await client.fetchUserInfo(config, refreshed.access_token, tokens.claims()!.sub, { DPoP });
  assert.equal(userinfo.preferred_username, 'alice');

  // A FAPI 2.0 client gets no bearer token: the same exchange without DPoP is refused.
  await assert.rejects(client.refreshTokenGrant(config, refreshed.refresh_token!, { resource: `${server.issuer}/userinfo` }), refusedBearer);
});
