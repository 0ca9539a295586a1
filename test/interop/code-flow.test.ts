import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import * as client from 'openid-client';
import { exportJWK, generateKeyPair, type CryptoKey } from 'jose';
import { decidePassword, upsertUser } from '../../src/identity/users.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { HttpBrowser as Browser, csrfOf } from '../helpers/http-browser.ts';

// openid-client v6 (on oauth4webapi), a relying party nobody here wrote, through the whole code
// flow against a listening Clearance: PAR or JAR, PKCE, the people side's real sign-in and consent
// pages, the code with iss (RFC 9207), ID token validation, refresh, userinfo and logout.

const insecure = { execute: [client.allowInsecureRequests] }; // the test issuer is http on loopback
const ordersApi = 'https://orders.example.com/api';
const redirectUri = 'http://127.0.0.1/cb';
const password = 'correct horse battery staple';


/** Signs in on the people side's page and approves on its consent page; returns the client's callback URL. */
async function signInAndApprove(browser: Browser, server: TestServer, authorizationUrl: URL): Promise<URL> {
  let { response, url } = await browser.follow(authorizationUrl, server.issuer);
  assert.equal(response.status, 200, `the sign-in page: ${url.href}`);
  const loginPage = await response.text();
  assert.match(loginPage, /password/);
  const form = (fields: Record<string, string>) => ({
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(fields).toString(),
  });
  ({ response, url } = await browser.follow(`${url.href}/login`, server.issuer, form({ csrf_token: csrfOf(loginPage), username: 'alice', password })));
  assert.equal(response.status, 200, `the consent page: ${url.href}`);
  const consentPage = await response.text();
  assert.match(consentPage, /Create orders at Order API/);
  ({ response, url } = await browser.follow(`${url.href}/consent`, server.issuer, form({ csrf_token: csrfOf(consentPage), decision: 'approve' })));
  assert.equal(response.status, 303);
  return url;
}

async function setUp(t: TestContext): Promise<{ server: TestServer; jarKey: CryptoKey }> {
  const server = await startTestServer({ t });
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  await server.apply({
    resource_servers: [{ identifier: ordersApi, name: 'Order API', scopes: ['order:create', 'order:cancel'] }],
    clients: [
      {
        client_id: 'desk-app',
        client_name: 'Desk',
        kind: 'app',
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: ['authorization_code', 'refresh_token'],
        redirect_uris: [redirectUri],
        post_logout_redirect_uris: ['http://127.0.0.1/bye'],
        require_pushed_authorization_requests: true,
        scope: 'openid order:create',
      },
      {
        client_id: 'signed-app',
        kind: 'app',
        token_endpoint_auth_method: 'private_key_jwt',
        jwks: { keys: [{ ...(await exportJWK(publicKey)), kid: 'signed-1', alg: 'ES256' }] },
        grant_types: ['authorization_code'],
        redirect_uris: [redirectUri],
        scope: 'openid order:create',
      },
    ],
  });
  const ctx = server.running.ctx;
  const entry = { username: 'alice', name: 'Alice Trader', email: 'alice@broker.example.com', password };
  const decision = await decidePassword(ctx.storage.db, entry);
  await ctx.storage.db.transaction().execute((trx) => upsertUser(trx, ctx.clock.now(), entry, decision));
  return { server, jarKey: privateKey };
}

test('openid-client runs PAR, sign-in, consent, the code with PKCE, refresh, userinfo and logout', async (t) => {
  const { server } = await setUp(t);
  const config = await client.discovery(new URL(server.issuer), 'desk-app', undefined, client.ClientSecretBasic(server.secrets['desk-app']!), insecure);
  assert.equal(config.serverMetadata().authorization_response_iss_parameter_supported, true);

  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const authorizationUrl = await client.buildAuthorizationUrlWithPAR(config, {
    redirect_uri: redirectUri,
    scope: 'openid order:create',
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    nonce,
  });
  assert.match(authorizationUrl.searchParams.get('request_uri')!, /^urn:ietf:params:oauth:request_uri:/);

  const browser = new Browser();
  const callback = await signInAndApprove(browser, server, authorizationUrl);
  assert.equal(callback.searchParams.get('iss'), server.issuer);

  // openid-client checks iss, state, the code exchange with PKCE, and the ID token (signature, nonce, aud, iss).
  const tokens = await client.authorizationCodeGrant(config, callback, { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce });
  const claims = tokens.claims()!;
  assert.equal(typeof claims.sub, 'string');
  assert.equal(typeof claims.auth_time, 'number');
  assert.equal(claims.acr, 'urn:clearance:acr:pwd');
  assert.equal(tokens.scope, 'order:create');

  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token!, { resource: `${server.issuer}/userinfo` });
  assert.notEqual(refreshed.refresh_token, tokens.refresh_token, 'rotated');
  const userinfo = await client.fetchUserInfo(config, refreshed.access_token, claims.sub);
  assert.equal(userinfo.name, 'Alice Trader');
  assert.equal(userinfo.preferred_username, 'alice');

  const introspected = await client.tokenIntrospection(config, tokens.access_token);
  assert.equal(introspected.active, true);
  assert.equal(introspected.sub, claims.sub);

  const logoutUrl = client.buildEndSessionUrl(config, { id_token_hint: refreshed.id_token!, post_logout_redirect_uri: 'http://127.0.0.1/bye', state: 'bye' });
  const out = await browser.fetch(logoutUrl);
  assert.equal(out.status, 303);
  assert.equal(out.headers.get('location'), 'http://127.0.0.1/bye?state=bye');

  // Signed out: a new request needs a sign-in again.
  const again = await client.buildAuthorizationUrlWithPAR(config, {
    redirect_uri: redirectUri,
    scope: 'openid order:create',
    code_challenge: await client.calculatePKCECodeChallenge(client.randomPKCECodeVerifier()),
    code_challenge_method: 'S256',
    prompt: 'none',
  });
  const refused = await browser.fetch(again);
  assert.equal(new URL(refused.headers.get('location')!).searchParams.get('error'), 'login_required');
});

test('openid-client sends a signed request object (JAR) with private_key_jwt and redeems the code', async (t) => {
  const { server, jarKey } = await setUp(t);
  const config = await client.discovery(new URL(server.issuer), 'signed-app', undefined, client.PrivateKeyJwt({ key: jarKey, kid: 'signed-1' }), insecure);
  const verifier = client.randomPKCECodeVerifier();
  const nonce = client.randomNonce();
  const authorizationUrl = await client.buildAuthorizationUrlWithJAR(
    config,
    { redirect_uri: redirectUri, scope: 'openid order:create', code_challenge: await client.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256', nonce },
    { key: jarKey, kid: 'signed-1' },
  );
  assert.ok(authorizationUrl.searchParams.get('request'));
  const callback = await signInAndApprove(new Browser(), server, authorizationUrl);
  const tokens = await client.authorizationCodeGrant(config, callback, { pkceCodeVerifier: verifier, expectedNonce: nonce });
  assert.equal(tokens.claims()!.aud, 'signed-app');
});
