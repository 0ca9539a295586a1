import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as client from 'openid-client';
import { decodeJwt } from 'jose';
import { AuditKeys, auditOrigin } from '../../src/audit/audit-key.ts';
import { exportBundle, verifyBundle } from '../../src/audit/bundle.ts';
import { createSealer } from '../../src/audit/lifecycle.ts';
import { approvalDigest } from '../../src/jose/approval-digest.ts';
import { resolveMasterKey } from '../../src/keys/master-key.ts';
import { launchBrowser } from '../helpers/browser.ts';
import { alicePassword, ordersApi, personPage, startDeskApp } from '../helpers/desk-app.ts';
import { passkeyPageCsp } from '../helpers/pages.ts';
import { approvalPolicySet as policies } from '../policy/fixture.ts';

// What-you-see-is-what-you-sign in Chromium with a CDP virtual authenticator: a trader adds a
// passkey, then asks (through openid-client) for an order above the policy's threshold; the
// consent page shows exactly that order and approves it with the passkey; the access token
// carries the order's digest, and the transaction's evidence bundle verifies offline.

const order = { type: 'order', instrument: { class: 'bond', symbol: 'UST 10Y' }, side: 'buy', max_notional: { amount: '2500000', currency: 'USD' }, venue: 'XNYS', account: 'ACC-7781' };

test('a trader approves an order with a passkey in Chromium: the token carries its digest and the evidence verifies offline', async (t) => {
  const browser = await launchBrowser(t);
  if (!browser) return;
  // WebAuthn's RP ID is a host name: the issuer is http://localhost:<port>.
  const { server, app, config } = await startDeskApp(t, {
    host: 'localhost',
    apply: { policies: [{ version: 'v1', text: policies, change_ref: 'CHG-14', author: 'alice.author', approver: 'bob.approver', active: true }] },
  });
  const ctx = server.running.ctx;
  const authorizationRequest = async (details?: unknown[]) => {
    const verifier = client.randomPKCECodeVerifier();
    const state = client.randomState();
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri: app.redirectUri,
      scope: 'openid order:create',
      ...(details ? { resource: ordersApi, authorization_details: JSON.stringify(details) } : {}),
      code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
    });
    return { url, redeem: (callback: string) => client.authorizationCodeGrant(config, new URL(callback), { pkceCodeVerifier: verifier, expectedState: state }) };
  };

  const { page, pageErrors } = await personPage(browser);

  // 1. A password sign-in, then a passkey added on /account.
  const first = await authorizationRequest();
  await page.goto(first.url.href);
  await page.getByLabel('Username').fill('alice');
  await page.getByLabel('Password').fill(alicePassword);
  await Promise.all([page.waitForURL(/\/interaction\//), page.getByRole('button', { name: 'Sign in', exact: true }).click()]);
  await Promise.all([page.waitForURL((url) => url.href.startsWith(app.redirectUri)), page.getByRole('button', { name: 'Approve' }).click()]);
  await first.redeem(page.url());
  await page.goto(`${server.issuer}/account`);
  await page.getByLabel('Name for the new passkey').fill('Virtual laptop');
  await Promise.all([
    page.waitForResponse((r) => r.url() === `${server.issuer}/account/passkeys` && r.request().method() === 'POST' && r.status() === 303),
    page.getByRole('button', { name: 'Add a passkey' }).click(),
  ]);
  await page.getByRole('heading', { level: 3, name: 'Virtual laptop' }).waitFor();

  // 2. An order of 2.5 million: the consent page shows exactly it, and approves only with the passkey.
  const second = await authorizationRequest([order]);
  const consentPage = await page.goto(second.url.href);
  assert.equal(consentPage!.headers()['content-security-policy'], passkeyPageCsp('form', server.issuer));
  const signed = page.getByRole('list', { name: 'Your passkey will sign exactly this, and nothing else:' });
  assert.deepEqual(await signed.getByRole('listitem').allInnerTexts(), ['Create buy orders in UST 10Y (bond) up to USD 2,500,000 on venue XNYS for account ACC-7781']);
  assert.equal(await page.getByRole('button', { name: 'Approve', exact: true }).count(), 0, 'no approval without the passkey');
  await Promise.all([page.waitForURL((url) => url.href.startsWith(app.redirectUri)), page.getByRole('button', { name: 'Approve with passkey' }).click()]);
  const tokens = await second.redeem(page.url());
  const claims = decodeJwt(tokens.access_token);
  assert.equal(claims.authorization_details_digest, approvalDigest([order]));
  assert.deepEqual(pageErrors, [], 'no script errors and no CSP violations on the pages');

  // 3. The transaction's evidence bundle verifies offline, the passkey's signature with it.
  const masterKey = resolveMasterKey(ctx.config).key;
  await createSealer(ctx, masterKey).sealOnce();
  const key = await new AuditKeys(ctx.storage.db, masterKey, ctx.clock).signingKey(auditOrigin(ctx.config.issuer));
  const { text } = await exportBundle(ctx.storage.db, { query: { txn: String(claims.txn) }, key, jwksInForce: (from, to) => ctx.keys.jwksInForce(from, to), now: ctx.clock.now() });
  const report = verifyBundle(text);
  assert.deepEqual(report.problems, []);
  assert.equal(report.approvals, 1);
});
