import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { test, type TestContext } from 'node:test';
import fastify from 'fastify';
import { calculateJwkThumbprint, decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair, type CryptoKey } from 'jose';
import * as oauth from 'oauth4webapi';
import * as client from 'openid-client';
import { createGuard } from 'clearance/guard';
import { clearanceGuard } from 'clearance/guard/fastify';
import { decidePassword, upsertUser } from '../../src/identity/users.ts';
import { HttpBrowser, signInAndApprove } from '../helpers/http-browser.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

// Ed25519 keys in the hands of oauth4webapi and openid-client 6, which sign with the fully-specified
// `alg: "Ed25519"` (RFC 9864 §2.2), not `EdDSA`: client assertions, DPoP proofs at the token
// endpoint, at userinfo and at a resource server behind the guard, and a signed request object.

const insecure = { execute: [client.allowInsecureRequests] }; // the test issuer is http on loopback
const ordersApi = 'https://orders.example.com/api';
const redirectUri = 'http://127.0.0.1/cb';
const person = { username: 'alice', password: 'correct horse battery staple' };

interface Setup {
  server: TestServer;
  /** The Ed25519 private key every client here authenticates and signs request objects with (kid ed-1). */
  key: CryptoKey;
}

async function setUp(t: TestContext): Promise<Setup> {
  const server = await startTestServer({ t, env: { CLEARANCE_DPOP_NONCE: 'required' } });
  const { privateKey, publicKey } = await generateKeyPair('Ed25519', { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid: 'ed-1' };
  await server.apply({
    resource_servers: [{ identifier: ordersApi, name: 'Order API', scopes: ['order:create'] }],
    clients: [
      // Registered with the polymorphic name: its Ed25519 assertions are the same algorithm.
      { client_id: 'algo-ed', kind: 'agent', token_endpoint_auth_method: 'private_key_jwt', token_endpoint_auth_signing_alg: 'EdDSA', jwks: { keys: [{ ...jwk, alg: 'EdDSA' }] }, grant_types: ['client_credentials'], scope: 'order:create' },
      {
        client_id: 'desk-ed',
        client_name: 'Desk',
        kind: 'app',
        token_endpoint_auth_method: 'private_key_jwt',
        jwks: { keys: [{ ...jwk, alg: 'Ed25519' }] },
        grant_types: ['authorization_code', 'refresh_token'],
        redirect_uris: [redirectUri],
        profile: 'fapi2',
        scope: 'openid order:create',
      },
      { client_id: 'jar-ed', kind: 'app', token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [jwk] }, grant_types: ['authorization_code'], redirect_uris: [redirectUri], scope: 'openid order:create' },
    ],
  });
  const ctx = server.running.ctx;
  const entry = { ...person, name: 'Alice Trader', email: 'alice@broker.example.com' };
  const decision = await decidePassword(ctx.storage.db, entry);
  await ctx.storage.db.transaction().execute((trx) => upsertUser(trx, ctx.clock.now(), entry, decision));
  return { server, key: privateKey };
}

test('discovery lists Ed25519 for DPoP proofs, client assertions and request objects', async (t) => {
  const { server, key } = await setUp(t);
  const metadata = (await client.discovery(new URL(server.issuer), 'algo-ed', undefined, client.PrivateKeyJwt({ key, kid: 'ed-1' }), insecure)).serverMetadata();
  for (const name of ['dpop_signing_alg_values_supported', 'token_endpoint_auth_signing_alg_values_supported', 'request_object_signing_alg_values_supported'] as const) {
    const values = metadata[name] as string[];
    assert.ok(values.includes('Ed25519') && values.includes('EdDSA'), `${name}: ${values}`);
  }
});

test('openid-client authenticates with an Ed25519 assertion and binds a client_credentials token to an Ed25519 DPoP key', async (t) => {
  const { server, key } = await setUp(t);
  const config = await client.discovery(new URL(server.issuer), 'algo-ed', undefined, client.PrivateKeyJwt({ key, kid: 'ed-1' }), insecure);
  // What the library sends, to see which algorithm names it uses.
  const sent: { dpop: string[]; assertions: string[] } = { dpop: [], assertions: [] };
  config[client.customFetch] = (url, options) => {
    const dpop = new Headers(options.headers).get('dpop');
    if (dpop) sent.dpop.push(dpop);
    const assertion = new URLSearchParams(String(options.body ?? '')).get('client_assertion');
    if (assertion) sent.assertions.push(assertion);
    return fetch(url, options);
  };
  const keyPair = await client.randomDPoPKeyPair('Ed25519');
  const jkt = await calculateJwkThumbprint(await exportJWK(keyPair.publicKey), 'sha256');
  const tokens = await client.clientCredentialsGrant(config, { scope: 'order:create', resource: ordersApi }, { DPoP: client.getDPoPHandle(config, keyPair) });
  assert.equal(tokens.token_type.toLowerCase(), 'dpop');
  assert.deepEqual(decodeJwt(tokens.access_token).cnf, { jkt });
  assert.ok(sent.dpop.length > 0 && sent.assertions.length > 0);
  for (const jwt of [...sent.dpop, ...sent.assertions]) assert.equal(decodeProtectedHeader(jwt).alg, 'Ed25519');
});

test('openid-client runs PAR, the code, refresh and userinfo with Ed25519 DPoP proofs and Ed25519 client assertions', async (t) => {
  const { server, key } = await setUp(t);
  const config = await client.discovery(new URL(server.issuer), 'desk-ed', undefined, client.PrivateKeyJwt({ key, kid: 'ed-1' }), insecure);
  const keyPair = await client.randomDPoPKeyPair('Ed25519');
  const DPoP = client.getDPoPHandle(config, keyPair);
  const jkt = await calculateJwkThumbprint(await exportJWK(keyPair.publicKey), 'sha256');
  const verifier = client.randomPKCECodeVerifier();
  const nonce = client.randomNonce();
  const authorizationUrl = await client.buildAuthorizationUrlWithPAR(
    config,
    { redirect_uri: redirectUri, scope: 'openid order:create', code_challenge: await client.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256', nonce },
    { DPoP },
  );
  const callback = await signInAndApprove(new HttpBrowser(), server.issuer, authorizationUrl, person);
  const tokens = await client.authorizationCodeGrant(config, callback, { pkceCodeVerifier: verifier, expectedNonce: nonce }, undefined, { DPoP });
  assert.deepEqual(decodeJwt(tokens.access_token).cnf, { jkt });

  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token!, { resource: `${server.issuer}/userinfo` }, { DPoP });
  assert.deepEqual(decodeJwt(refreshed.access_token).cnf, { jkt });
  const userinfo = await client.fetchUserInfo(config, refreshed.access_token, tokens.claims()!.sub, { DPoP });
  assert.equal(userinfo.preferred_username, 'alice');
});

test('openid-client sends a request object (JAR) signed with an Ed25519 key and redeems the code', async (t) => {
  const { server, key } = await setUp(t);
  const config = await client.discovery(new URL(server.issuer), 'jar-ed', undefined, client.PrivateKeyJwt({ key, kid: 'ed-1' }), insecure);
  const verifier = client.randomPKCECodeVerifier();
  const nonce = client.randomNonce();
  const authorizationUrl = await client.buildAuthorizationUrlWithJAR(
    config,
    { redirect_uri: redirectUri, scope: 'openid order:create', code_challenge: await client.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256', nonce },
    { key, kid: 'ed-1' },
  );
  assert.equal(decodeProtectedHeader(authorizationUrl.searchParams.get('request')!).alg, 'Ed25519');
  const callback = await signInAndApprove(new HttpBrowser(), server.issuer, authorizationUrl, person);
  const tokens = await client.authorizationCodeGrant(config, callback, { pkceCodeVerifier: verifier, expectedNonce: nonce });
  assert.equal(tokens.claims()!.aud, 'jar-ed');
});

test('oauth4webapi gets an Ed25519-bound token and the guard accepts its Ed25519 DPoP proof at a resource server', async (t) => {
  const { server, key } = await setUp(t);
  const issuer = new URL(server.issuer);
  const as = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, { algorithm: 'oauth2', [oauth.allowInsecureRequests]: true }));
  const me: oauth.Client = { client_id: 'algo-ed' };
  const auth = oauth.PrivateKeyJwt({ key, kid: 'ed-1' });
  const keyPair = await oauth.generateKeyPair('Ed25519');
  const DPoP = oauth.DPoP(me, keyPair);
  const grant = () => oauth.clientCredentialsGrantRequest(as, me, auth, new URLSearchParams({ scope: 'order:create', resource: ordersApi }), { DPoP, [oauth.allowInsecureRequests]: true });
  let response = await grant();
  // The server asks for its nonce first (CLEARANCE_DPOP_NONCE=required); oauth4webapi keeps it for the retry.
  const tokens = await oauth.processClientCredentialsResponse(as, me, response).catch(async (error: unknown) => {
    assert.ok(oauth.isDPoPNonceError(error), String(error));
    response = await grant();
    return oauth.processClientCredentialsResponse(as, me, response);
  });
  assert.equal(tokens.token_type, 'dpop');

  const app = fastify();
  await app.register(clearanceGuard, { guard: createGuard({ issuer: server.issuer, audience: ordersApi, jwksUri: `${server.issuer}/jwks` }) });
  app.get('/api/positions', { config: { clearance: { scopes: ['order:create'] } } }, async (request) => ({ binding: request.access!.binding }));
  await app.listen({ host: '127.0.0.1', port: 0 });
  t.after(() => app.close());
  const resource = new URL(`http://127.0.0.1:${(app.server.address() as AddressInfo).port}/api/positions`);
  const answer = await oauth.protectedResourceRequest(tokens.access_token, 'GET', resource, new Headers(), null, { DPoP, [oauth.allowInsecureRequests]: true });
  assert.equal(answer.status, 200, await answer.clone().text());
  const { binding } = (await answer.json()) as { binding: { method: string; jkt: string } };
  assert.deepEqual(binding, { method: 'dpop', jkt: await calculateJwkThumbprint(await exportJWK(keyPair.publicKey), 'sha256') });
});
