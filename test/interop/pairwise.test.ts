import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as client from 'openid-client';
import { decidePassword, upsertUser } from '../../src/identity/users.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { HttpBrowser as Browser, csrfOf } from '../helpers/http-browser.ts';

// openid-client v6, a relying party nobody here wrote, registered with subject_type pairwise
// (OIDC Core §8.1): it validates the pairwise ID token, fetches userinfo expecting that same
// subject (§5.3.2, which openid-client enforces), and logs out with the pairwise ID token as hint.

const insecure = { execute: [client.allowInsecureRequests] }; // the test issuer is http on loopback
const ordersApi = 'https://orders.example.com/api';
const redirectUri = 'http://127.0.0.1/cb';
const password = 'correct horse battery staple';

async function signInAndApprove(browser: Browser, server: TestServer, authorizationUrl: URL): Promise<URL> {
  let { response, url } = await browser.follow(authorizationUrl, server.issuer);
  assert.equal(response.status, 200, `the sign-in page: ${url.href}`);
  const loginPage = await response.text();
  const form = (fields: Record<string, string>) => ({ method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(fields).toString() });
  ({ response, url } = await browser.follow(`${url.href}/login`, server.issuer, form({ csrf_token: csrfOf(loginPage), username: 'alice', password })));
  assert.equal(response.status, 200, `the consent page: ${url.href}`);
  const consentPage = await response.text();
  ({ response, url } = await browser.follow(`${url.href}/consent`, server.issuer, form({ csrf_token: csrfOf(consentPage), decision: 'approve' })));
  assert.equal(response.status, 303);
  return url;
}

test('openid-client validates a pairwise ID token, gets userinfo for that subject, and logs out with it as hint', async (t) => {
  const server = await startTestServer({ t });
  await server.apply({
    resource_servers: [{ identifier: ordersApi, name: 'Order API', scopes: ['order:create'] }],
    clients: [
      {
        client_id: 'pairwise-app',
        kind: 'app',
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: ['authorization_code', 'refresh_token'],
        redirect_uris: [redirectUri],
        post_logout_redirect_uris: ['http://127.0.0.1/bye'],
        scope: 'openid order:create',
        subject_type: 'pairwise',
      },
    ],
  });
  const ctx = server.running.ctx;
  const entry = { username: 'alice', name: 'Alice Trader', email: 'alice@broker.example.com', password };
  const decision = await decidePassword(ctx.storage.db, entry);
  const { id: localId } = await ctx.storage.db.transaction().execute((trx) => upsertUser(trx, ctx.clock.now(), entry, decision));

  const config = await client.discovery(new URL(server.issuer), 'pairwise-app', undefined, client.ClientSecretBasic(server.secrets['pairwise-app']!), insecure);
  assert.deepEqual(config.serverMetadata().subject_types_supported, ['public', 'pairwise']);
  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const authorizationUrl = client.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri,
    scope: 'openid order:create',
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    nonce,
  });
  const browser = new Browser();
  const callback = await signInAndApprove(browser, server, authorizationUrl);
  const tokens = await client.authorizationCodeGrant(config, callback, { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce });
  const sub = tokens.claims()!.sub;
  assert.notEqual(sub, localId, 'the relying party never sees the local id');
  assert.match(sub, /^[A-Za-z0-9_-]{43}$/);
  // Its access token is an opaque handle (no local sub to decode); introspecting it as its holder
  // (RFC 7662) gives the pairwise subject.
  assert.match(tokens.access_token, /^clr_at_/);
  const introspected = await client.tokenIntrospection(config, tokens.access_token);
  assert.equal(introspected.active, true);
  assert.equal(introspected.sub, sub);

  // openid-client refuses a userinfo response whose sub is not the expected one (OIDC Core §5.3.2).
  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token!, { resource: `${server.issuer}/userinfo` });
  assert.equal(refreshed.claims()!.sub, sub, 'the same pairwise subject after a refresh');
  const userinfo = await client.fetchUserInfo(config, refreshed.access_token, sub);
  assert.equal(userinfo.sub, sub);
  assert.equal(userinfo.name, 'Alice Trader');

  // RP-initiated logout: the pairwise hint names the signed-in person, so the session ends without asking.
  const logoutUrl = client.buildEndSessionUrl(config, { id_token_hint: refreshed.id_token!, post_logout_redirect_uri: 'http://127.0.0.1/bye', state: 'bye' });
  const out = await browser.fetch(logoutUrl);
  assert.equal(out.status, 303);
  assert.equal(out.headers.get('location'), 'http://127.0.0.1/bye?state=bye');
});
