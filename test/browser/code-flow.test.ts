import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as client from 'openid-client';
import { decidePassword, upsertUser } from '../../src/identity/users.ts';
import { launchBrowser } from '../helpers/browser.ts';
import { startCallbackServer } from '../helpers/callback-server.ts';
import { startTestServer } from '../helpers/server.ts';

// A person in a real browser (Debian's Chromium via playwright-core) signs in and consents on
// Clearance's own pages, while openid-client v6 plays the relying party: PAR, PKCE, the code with
// iss, ID token validation, refresh, userinfo and RP-initiated logout.

const insecure = { execute: [client.allowInsecureRequests] }; // the test issuer is http on loopback
const ordersApi = 'https://orders.example.com/api';
const password = 'correct horse battery staple';

test('a trader signs in and consents in Chromium while openid-client completes the code flow, refresh, userinfo and logout', async (t) => {
  const browser = await launchBrowser(t);
  if (!browser) return;
  const app = await startCallbackServer(t);
  const server = await startTestServer({ t });
  await server.apply({
    resource_servers: [{ identifier: ordersApi, name: 'Order API', scopes: ['order:create', 'order:cancel'] }],
    clients: [
      {
        client_id: 'desk-app',
        client_name: 'Rates Desk',
        kind: 'app',
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: ['authorization_code', 'refresh_token'],
        redirect_uris: [app.redirectUri],
        post_logout_redirect_uris: [`${app.origin}/signed-out`],
        require_pushed_authorization_requests: true,
        scope: 'openid order:create',
      },
    ],
  });
  const ctx = server.running.ctx;
  const entry = { username: 'alice', name: 'Alice Trader', email: 'alice@broker.example.com', password };
  const decision = await decidePassword(ctx.storage.db, entry);
  await ctx.storage.db.transaction().execute((trx) => upsertUser(trx, ctx.clock.now(), entry, decision));

  const config = await client.discovery(new URL(server.issuer), 'desk-app', undefined, client.ClientSecretBasic(server.secrets['desk-app']!), insecure);
  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const authorizationUrl = await client.buildAuthorizationUrlWithPAR(config, {
    redirect_uri: app.redirectUri,
    scope: 'openid order:create',
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    nonce,
  });

  const page = await (await browser.newContext()).newPage();
  const login = await page.goto(authorizationUrl.href);
  assert.equal(login?.status(), 200);
  assert.match(login!.headers()['content-security-policy'] ?? '', /frame-ancestors 'none'/);
  // The login page as a person and a password manager see it.
  await page.getByLabel(/user ?name/i).fill('alice');
  await page.getByLabel(/password/i).fill('not the password');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForLoadState();
  assert.equal(await page.locator('input[name=username][autocomplete=username]').count(), 1, 'still on the sign-in page');
  assert.match(await page.content(), /incorrect|invalid|not recognised|did not match/i);

  await page.getByLabel(/password/i).fill(password);
  await Promise.all([page.waitForURL(/\/interaction\//), page.getByRole('button', { name: 'Sign in' }).click()]);
  // The consent page says in plain words what the app asks for.
  assert.match(await page.content(), /Rates Desk/);
  assert.match(await page.content(), /Create orders at Order API/);
  await Promise.all([page.waitForURL((url) => url.href.startsWith(app.redirectUri)), page.getByRole('button', { name: 'Approve' }).click()]);

  const callback = new URL(page.url());
  assert.equal(callback.searchParams.get('iss'), server.issuer);
  assert.equal(callback.searchParams.get('state'), state);
  const tokens = await client.authorizationCodeGrant(config, callback, { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce });
  const claims = tokens.claims()!;
  assert.equal(claims.aud, 'desk-app');
  assert.equal(typeof claims.auth_time, 'number');
  assert.equal(tokens.scope, 'order:create');

  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token!, { resource: `${server.issuer}/userinfo` });
  assert.notEqual(refreshed.refresh_token, tokens.refresh_token);
  const userinfo = await client.fetchUserInfo(config, refreshed.access_token, claims.sub);
  assert.equal(userinfo.name, 'Alice Trader');

  // RP-initiated logout in the same browser ends the session and returns to the app.
  const logoutUrl = client.buildEndSessionUrl(config, { id_token_hint: refreshed.id_token!, post_logout_redirect_uri: `${app.origin}/signed-out`, state: 'bye' });
  await page.goto(logoutUrl.href);
  await page.waitForURL((url) => url.href.startsWith(`${app.origin}/signed-out`));
  assert.equal(new URL(page.url()).searchParams.get('state'), 'bye');

  // Signed out: prompt=none now answers login_required.
  const silent = await client.buildAuthorizationUrlWithPAR(config, {
    redirect_uri: app.redirectUri,
    scope: 'openid order:create',
    code_challenge: await client.calculatePKCECodeChallenge(client.randomPKCECodeVerifier()),
    code_challenge_method: 'S256',
    prompt: 'none',
  });
  await page.goto(silent.href);
  await page.waitForURL((url) => url.href.startsWith(app.redirectUri));
  assert.equal(new URL(page.url()).searchParams.get('error'), 'login_required');
});
