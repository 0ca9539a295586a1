import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as client from 'openid-client';
import { acr } from '../../src/identity/acr.ts';
import { listPasskeys } from '../../src/identity/passkeys/store.ts';
import { launchBrowser } from '../helpers/browser.ts';
import { alicePassword, freshSignInRequest, personPage, startDeskApp } from '../helpers/desk-app.ts';
import { passkeyPageCsp } from '../helpers/pages.ts';

// A person in Chromium, with a CDP virtual authenticator standing in for their device (a
// platform authenticator: CTAP2, internal transport, resident keys, user verification that
// succeeds): signs in with a password once, adds a passkey on /account, signs out, and then
// signs in with the passkey alone — no username typed — while openid-client completes the
// authorization code flow and receives an ID token at urn:clearance:acr:phr.

test('a trader enrols a passkey on /account in Chromium, then signs in with it alone and openid-client gets an ID token at phr', async (t) => {
  const browser = await launchBrowser(t);
  if (!browser) return;
  // WebAuthn's RP ID is a host name: the issuer is http://localhost:<port>.
  const { server, app, config, aliceId } = await startDeskApp(t, { host: 'localhost' });
  const ctx = server.running.ctx;
  /** An authorization request of the desk application: its URL and what redeems its code. */
  const authorizationRequest = () => freshSignInRequest(config, app.redirectUri);

  const { page, cdp, authenticatorId, pageErrors } = await personPage(browser, server.issuer);

  // 1. A password sign-in, to have a session for the account page.
  const first = await authorizationRequest();
  await page.goto(first.url.href);
  await page.getByLabel('Username').fill('alice');
  await page.getByLabel('Password').fill(alicePassword);
  await Promise.all([page.waitForURL(/\/interaction\//), page.getByRole('button', { name: 'Sign in', exact: true }).click()]);
  await Promise.all([page.waitForURL((url) => url.href.startsWith(app.redirectUri)), page.getByRole('button', { name: 'Approve' }).click()]);
  assert.equal((await first.redeem(page.url())).claims()?.acr, acr.password);

  // 2. Add a passkey on /account: the page's script runs the registration ceremony.
  const account = await page.goto(`${server.issuer}/account`);
  assert.equal(account!.headers()['content-security-policy'], passkeyPageCsp('ownForm', server.issuer));
  await page.getByLabel('Name for the new passkey').fill('Virtual laptop');
  await Promise.all([
    page.waitForResponse((r) => r.url() === `${server.issuer}/account/passkeys` && r.request().method() === 'POST' && r.status() === 303),
    page.getByRole('button', { name: 'Add a passkey' }).click(),
  ]);
  // The 303 brings the account page back, listing the passkey.
  await page.getByRole('heading', { level: 3, name: 'Virtual laptop' }).waitFor();
  assert.equal(await page.getByRole('heading', { level: 3, name: 'Virtual laptop' }).count(), 1);
  const [passkey] = await listPasskeys(ctx, aliceId);
  assert.equal(passkey!.name, 'Virtual laptop');
  const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
  assert.equal(credentials.length, 1);
  assert.equal(credentials[0]!.isResidentCredential, true, 'a discoverable credential');
  assert.equal(Buffer.from(credentials[0]!.credentialId, 'base64').toString('base64url'), passkey!.credentialId);

  // 3. Sign out on the account page.
  await Promise.all([page.waitForResponse((r) => r.request().method() === 'POST' && r.status() === 303), page.getByRole('button', { name: 'Sign out' }).click()]);
  await page.getByText('You are not signed in to Clearance in this browser.').waitFor();

  // 4. Sign in with the passkey alone: no username, no password.
  const second = await authorizationRequest();
  const signInPage = await page.goto(second.url.href);
  assert.equal(signInPage!.headers()['content-security-policy'], passkeyPageCsp('form', server.issuer));
  assert.equal(await page.getByLabel('Username').inputValue(), '');
  await Promise.all([page.waitForURL((url) => url.href.startsWith(app.redirectUri)), page.getByRole('button', { name: 'Use a passkey' }).click()]);
  const tokens = await second.redeem(page.url());
  const claims = tokens.claims()!;
  assert.equal(claims.sub, aliceId);
  assert.equal(claims.acr, acr.phishingResistant);
  assert.equal((await client.tokenIntrospection(config, tokens.access_token)).active, true);
  const [stored] = await listPasskeys(ctx, aliceId);
  assert.ok(stored!.lastUsedAt, 'the passkey’s last use is recorded');
  assert.deepEqual(pageErrors, [], 'no script errors and no CSP violations on the pages');
});
