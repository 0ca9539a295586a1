import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as client from 'openid-client';
import { launchBrowser } from '../helpers/browser.ts';
import { alicePassword, startDeskApp } from '../helpers/desk-app.ts';
import { passkeyPageCsp } from '../helpers/pages.ts';

// After a completed code flow (openid-client as the relying party, Chromium as the person), the
// person opens their account page, revokes the application's access with its Revoke button, and
// the application's refresh token stops working at once; then they sign out from the same page.

const password = alicePassword;

test('a trader revokes an application’s access from their account page in Chromium, and its refresh token then fails', async (t) => {
  const browser = await launchBrowser(t);
  if (!browser) return;
  const { server, app, config } = await startDeskApp(t, { par: true, refreshTokens: true });
  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const authorizationUrl = await client.buildAuthorizationUrlWithPAR(config, {
    redirect_uri: app.redirectUri,
    scope: 'openid order:create',
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
  });

  const page = await (await browser.newContext()).newPage();
  await page.goto(authorizationUrl.href);
  await page.getByLabel(/user ?name/i).fill('alice');
  await page.getByLabel(/password/i).fill(password);
  await Promise.all([page.waitForURL(/\/interaction\//), page.getByRole('button', { name: 'Sign in' }).click()]);
  await Promise.all([page.waitForURL((url) => url.href.startsWith(app.redirectUri)), page.getByRole('button', { name: 'Approve' }).click()]);
  const tokens = await client.authorizationCodeGrant(config, new URL(page.url()), { pkceCodeVerifier: verifier, expectedState: state });
  assert.ok(tokens.refresh_token);
  assert.equal((await client.tokenIntrospection(config, tokens.access_token)).active, true);

  // The account page, in the same browser session.
  const account = await page.goto(`${server.issuer}/account`);
  assert.equal(account?.status(), 200);
  const headers = account!.headers();
  assert.match(headers['content-security-policy'] ?? '', /frame-ancestors 'none'/);
  // The passkey scripts, by their exact URLs, are the only scripts it may run.
  assert.equal(headers['content-security-policy'], passkeyPageCsp('ownForm', server.issuer));
  assert.equal(headers['cache-control'], 'no-store');
  assert.equal(await page.getByRole('heading', { level: 3, name: 'Rates Desk' }).count(), 1);
  assert.match(await page.content(), /Create orders at Order API \(order:create\)/);

  // Revoke: the form posts, the 303 brings the page back without the application.
  await Promise.all([page.waitForResponse((r) => r.request().method() === 'POST' && r.status() === 303), page.getByRole('button', { name: /Revoke/ }).click()]);
  await page.waitForLoadState();
  assert.equal(new URL(page.url()).pathname, '/account');
  assert.match(await page.content(), /You have not allowed any application to act for you./);

  // The application's refresh token now fails, and its access token is inactive.
  await assert.rejects(client.refreshTokenGrant(config, tokens.refresh_token!), (error: unknown) => (error as { error?: string }).error === 'invalid_grant');
  assert.equal((await client.tokenIntrospection(config, tokens.access_token)).active, false);

  // Sign out from the same page.
  await Promise.all([page.waitForResponse((r) => r.request().method() === 'POST' && r.status() === 303), page.getByRole('button', { name: 'Sign out' }).click()]);
  await page.waitForLoadState();
  assert.match(await page.content(), /You are not signed in to Clearance in this browser./);
});
