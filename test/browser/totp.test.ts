import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as client from 'openid-client';
import { generate } from 'otplib';
import { launchBrowser } from '../helpers/browser.ts';
import { alicePassword, startDeskApp } from '../helpers/desk-app.ts';

// A trader in Chromium sets up an authenticator app on their account page — reading the secret the
// page shows, as they would type it into the app — then signs out and signs in again with their
// password and the app's code; openid-client, the relying party, gets an ID token at acr mfa.

const password = alicePassword;

test('a trader enrols an authenticator on the account page in Chromium, then signs in with password and TOTP at acr mfa', async (t) => {
  const browser = await launchBrowser(t);
  if (!browser) return;
  const { server, app, config } = await startDeskApp(t, { par: true });
  const authorize = async () => {
    const verifier = client.randomPKCECodeVerifier();
    const state = client.randomState();
    const nonce = client.randomNonce();
    const url = await client.buildAuthorizationUrlWithPAR(config, {
      redirect_uri: app.redirectUri,
      scope: 'openid order:create',
      code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
      nonce,
    });
    return { url, verifier, state, nonce };
  };

  const page = await (await browser.newContext()).newPage();
  const signInWithPassword = async () => {
    await page.getByLabel(/user ?name/i).fill('alice');
    await page.getByLabel(/password/i).fill(password);
    await Promise.all([page.waitForURL(/\/interaction\//), page.getByRole('button', { name: 'Sign in' }).click()]);
  };

  // First sign-in: the password alone (no authenticator yet), consent.
  const first = await authorize();
  await page.goto(first.url.href);
  await signInWithPassword();
  await Promise.all([page.waitForURL((url) => url.href.startsWith(app.redirectUri)), page.getByRole('button', { name: 'Approve' }).click()]);
  const before = await client.authorizationCodeGrant(config, new URL(page.url()), { pkceCodeVerifier: first.verifier, expectedState: first.state, expectedNonce: first.nonce });
  assert.equal(before.claims()!.acr, 'urn:clearance:acr:pwd');

  // The account page: set up an authenticator.
  await page.goto(`${server.issuer}/account`);
  assert.equal(await page.getByRole('heading', { name: 'Two-step sign-in' }).count(), 1);
  await Promise.all([page.waitForURL(/\/account\/totp$/), page.getByRole('button', { name: 'Set up an authenticator' }).click()]);
  assert.equal(await page.getByRole('img', { name: /QR code/ }).count(), 1, 'the QR code, as an image with a name');
  const secret = (await page.locator('#totp-secret').textContent())!.replaceAll(/\s+/g, '');
  assert.match(secret, /^[A-Z2-7]{32}$/);
  // The authenticator app, in the test: the code it shows now.
  await page.getByLabel('Code from your authenticator app').fill(await generate({ secret }));
  await Promise.all([page.waitForURL(/\/account\/totp\/confirm$/), page.getByRole('button', { name: 'Confirm' }).click()]);
  assert.equal(await page.getByRole('heading', { name: 'Your authenticator is set up' }).count(), 1);
  assert.equal(await page.locator('#recovery-code-list li').count(), 10);

  // Sign out, then sign in again: the password, then the second-factor page.
  await page.goto(`${server.issuer}/account`);
  assert.match(await page.content(), /Authenticator app/);
  await Promise.all([page.waitForResponse((r) => r.request().method() === 'POST' && r.status() === 303), page.getByRole('button', { name: 'Sign out' }).click()]);
  await page.waitForLoadState();

  const second = await authorize();
  await page.goto(second.url.href);
  await signInWithPassword();
  assert.match(new URL(page.url()).pathname, /^\/interaction\/[^/]+\/second-factor$/);
  assert.equal(await page.getByRole('heading', { name: 'Enter your code' }).count(), 1);
  assert.equal(await page.locator('input#code[autocomplete="one-time-code"][inputmode="numeric"]').count(), 1);
  // The confirming code's time step is used up: the app's next code (one step ahead is accepted).
  const next = await generate({ secret, epoch: Math.floor(Date.now() / 1000) + 30 });
  await page.getByLabel('Code from your authenticator app').fill(next);
  await Promise.all([page.waitForURL((url) => url.href.startsWith(app.redirectUri)), page.getByRole('button', { name: 'Verify' }).click()]);

  const tokens = await client.authorizationCodeGrant(config, new URL(page.url()), { pkceCodeVerifier: second.verifier, expectedState: second.state, expectedNonce: second.nonce });
  const claims = tokens.claims()!;
  assert.equal(claims.acr, 'urn:clearance:acr:mfa');
  assert.deepEqual(claims.amr, ['pwd', 'otp', 'mfa']);
});
