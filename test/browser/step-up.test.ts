import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import fastify from 'fastify';
import * as client from 'openid-client';
import type { Page } from 'playwright-core';
import { createGuard } from 'clearance/guard';
import { clearanceGuard } from 'clearance/guard/fastify';
import { acr } from '../../src/identity/acr.ts';
import { launchBrowser } from '../helpers/browser.ts';
import type { CallbackServer } from '../helpers/callback-server.ts';
import { alicePassword, ordersApi, personPage, startDeskApp } from '../helpers/desk-app.ts';
import type { TestServer } from '../helpers/server.ts';

// Step-up in Chromium, with a CDP virtual authenticator standing in for the person's device and
// openid-client as the relying party: a person signed in with a password is asked for their
// passkey when the application asks for urn:clearance:acr:phr — by acr_values, or because a
// resource server behind the guard answered its token with the RFC 9470 challenge — and can go
// back to the application when a level is required that they cannot reach.

const password = alicePassword;

interface Scene {
  server: TestServer;
  app: CallbackServer;
  page: Page;
  config: client.Configuration;
  aliceId: string;
  /** Script errors, CSP violations and failed requests seen on Clearance's pages. */
  pageErrors: string[];
}

async function scene(t: TestContext): Promise<Scene | undefined> {
  const browser = await launchBrowser(t);
  if (!browser) return undefined;
  // WebAuthn's RP ID is a host name: the issuer is http://localhost:<port>.
  const { server, app, config, aliceId } = await startDeskApp(t, { host: 'localhost' });
  const { page, pageErrors } = await personPage(browser, server.issuer);
  return { server, app, page, config, aliceId, pageErrors };
}

/** An authorization request of the desk application: its URL and what redeems its code. */
async function authorizationRequest(s: Scene, extra: Record<string, string> = {}) {
  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const url = client.buildAuthorizationUrl(s.config, {
    redirect_uri: s.app.redirectUri,
    scope: 'openid order:create',
    resource: ordersApi,
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    nonce,
    ...extra,
  });
  const checks = { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce, ...(extra.max_age ? { maxAge: Number(extra.max_age) } : {}) };
  return { url, redeem: (callback: string) => client.authorizationCodeGrant(s.config, new URL(callback), checks) };
}

const atClient = (s: Scene) => (url: URL) => url.href.startsWith(s.app.redirectUri);

/** A password sign-in and the consent, in the browser: the tokens (urn:clearance:acr:pwd). */
async function signInWithPassword(s: Scene) {
  const request = await authorizationRequest(s);
  await s.page.goto(request.url.href);
  await s.page.getByLabel('Username').fill('alice');
  await s.page.getByLabel('Password').fill(password);
  await Promise.all([s.page.waitForURL(/\/interaction\//), s.page.getByRole('button', { name: 'Sign in', exact: true }).click()]);
  await Promise.all([s.page.waitForURL(atClient(s)), s.page.getByRole('button', { name: 'Approve' }).click()]);
  const tokens = await request.redeem(s.page.url());
  assert.equal(tokens.claims()?.acr, acr.password);
  return tokens;
}

/** Adds a passkey on /account from the browser's session (the page's script runs the registration). */
async function addPasskey(s: Scene): Promise<void> {
  await s.page.goto(`${s.server.issuer}/account`);
  await s.page.getByLabel('Name for the new passkey').fill('Virtual laptop');
  await Promise.all([
    s.page.waitForResponse((r) => r.url() === `${s.server.issuer}/account/passkeys` && r.request().method() === 'POST' && r.status() === 303),
    s.page.getByRole('button', { name: 'Add a passkey' }).click(),
  ]);
  await s.page.getByRole('heading', { level: 3, name: 'Virtual laptop' }).waitFor();
}

test('an application asking acr_values phr makes a person signed in with a password use their passkey, and the ID token says phr; a required level they cannot reach, they decline', async (t) => {
  const s = await scene(t);
  if (!s) return;
  await signInWithPassword(s);

  // 1. A required passkey (an essential acr claim) before Alice has one: the page says so, and she goes back.
  const required = await authorizationRequest(s, { claims: JSON.stringify({ id_token: { acr: { essential: true, values: [acr.phishingResistant] } } }) });
  await s.page.goto(required.url.href);
  await s.page.getByText('You are signed in as alice with your password. Rates Desk needs a passkey to continue.').waitFor();
  await s.page.getByText('You have not added a passkey to your account.').waitFor();
  assert.equal(await s.page.getByRole('button', { name: 'Use your passkey' }).count(), 0, 'no passkey to use');
  await Promise.all([s.page.waitForURL(atClient(s)), s.page.getByRole('button', { name: 'Go back to Rates Desk' }).click()]);
  await required.redeem(s.page.url()).then(
    () => assert.fail('a declined request gave a code'),
    (error: unknown) => {
      assert.ok(error instanceof client.AuthorizationResponseError, String(error));
      assert.equal(error.error, 'unmet_authentication_requirements');
    },
  );

  // 2. She adds a passkey; the application asks acr_values=phr: her password session is not enough.
  await addPasskey(s);
  const stronger = await authorizationRequest(s, { acr_values: acr.phishingResistant });
  await s.page.goto(stronger.url.href);
  await s.page.getByRole('heading', { level: 1, name: 'A passkey is asked for' }).waitFor();
  await s.page.getByText('You are signed in as alice with your password. Rates Desk asks for a passkey to continue.').waitFor();
  await Promise.all([s.page.waitForURL(atClient(s)), s.page.getByRole('button', { name: 'Use your passkey' }).click()]);
  const claims = (await stronger.redeem(s.page.url())).claims()!;
  assert.equal(claims.sub, s.aliceId);
  assert.equal(claims.acr, acr.phishingResistant);
  assert.deepEqual(claims.amr, ['hwk', 'user', 'mfa']);
  assert.deepEqual(s.pageErrors, [], 'no script errors and no CSP violations on the pages');
});

test('openid-client completes a step-up round trip driven by the guard’s RFC 9470 challenge, the person using their passkey in Chromium', async (t) => {
  const s = await scene(t);
  if (!s) return;
  // The order API: placing an order needs a phishing-resistant sign-in within the last 10 minutes.
  const api = fastify();
  t.after(() => api.close());
  await api.register(clearanceGuard, { guard: createGuard({ issuer: s.server.issuer, audience: ordersApi, jwksUri: `${s.server.issuer}/jwks` }) });
  api.post('/api/orders', { config: { clearance: { scopes: ['order:create'], acr: acr.phishingResistant, maxAge: 600 } } }, async (request) => ({
    placed_by: request.access!.subject,
    acr: request.access!.acr,
  }));
  const apiUrl = new URL('/api/orders', await api.listen({ host: '127.0.0.1', port: 0 }));

  // 1. Alice signs in with her password (and has a passkey, added on /account).
  const tokens = await signInWithPassword(s);
  await addPasskey(s);

  // 2. The order API answers the password-level token with the RFC 9470 challenge.
  const order = JSON.stringify({ instrument: 'EURUSD', side: 'buy', quantity: 1_000_000 });
  const json = new Headers({ 'content-type': 'application/json' });
  const challenge = await client.fetchProtectedResource(s.config, tokens.access_token, apiUrl, 'POST', order, json).then(
    () => assert.fail('the order API let a password-level token through'),
    (error: unknown) => {
      assert.ok(error instanceof client.WWWAuthenticateChallengeError, String(error));
      assert.equal(error.status, 401);
      return error.cause[0]!;
    },
  );
  assert.equal(challenge.parameters.error, 'insufficient_user_authentication');
  assert.equal(challenge.parameters.acr_values, acr.phishingResistant);
  assert.equal(challenge.parameters.max_age, '600');

  // 3. openid-client authorizes again with what the challenge asks; in the browser, the sign-in
  //    page asks Alice for her passkey, and she uses it.
  const again = await authorizationRequest(s, { acr_values: challenge.parameters.acr_values!, max_age: challenge.parameters.max_age! });
  await s.page.goto(again.url.href);
  await s.page.getByText('Rates Desk asks for a passkey to continue.').waitFor();
  await Promise.all([s.page.waitForURL(atClient(s)), s.page.getByRole('button', { name: 'Use your passkey' }).click()]);
  const steppedUp = await again.redeem(s.page.url());
  assert.equal(steppedUp.claims()!.acr, acr.phishingResistant);

  // 4. The new token passes the route.
  const placed = await client.fetchProtectedResource(s.config, steppedUp.access_token, apiUrl, 'POST', order, json);
  assert.equal(placed.status, 200);
  assert.deepEqual(await placed.json(), { placed_by: s.aliceId, acr: acr.phishingResistant });

  // The step-up is in the audit log: asked by the client's acr_values, met with the passkey.
  const events = await s.server.running.ctx.storage.db.selectFrom('audit_events').select('event').where('type', 'in', ['step_up.requested', 'step_up.completed']).orderBy('seq').execute();
  const [requested, completed] = events.map((r) => JSON.parse(r.event) as { details: Record<string, unknown> });
  assert.deepEqual(requested!.details.trigger, ['acr_values']);
  assert.equal(completed!.details.outcome, 'met');
  assert.deepEqual(completed!.details.factor_used, ['hwk', 'user', 'mfa']);
  assert.deepEqual(s.pageErrors, [], 'no script errors and no CSP violations on the pages');
});
