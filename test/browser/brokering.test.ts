import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import axe from 'axe-core';
import * as client from 'openid-client';
import type { Page } from 'playwright-core';
import { launchBrowser } from '../helpers/browser.ts';
import { personPage } from '../helpers/desk-app.ts';
import { authorizationRequest, startBrokering, upstreamAcr, type BrokeringHarness } from '../federation/upstream/fixture.ts';

// Identity brokering in Chromium: a portfolio manager at the partner fund signs in to the broker's
// desk application through the fund's own OpenID Provider (node-oidc-provider, whose sign-in
// finishes at once with `upstream.nextSignIn`). The browser follows every redirect itself — to
// the upstream (another site: Clearance is http://localhost:<port>, the upstream
// http://127.0.0.1:<port>), back to Clearance's callback, on to the consent page — under the
// pages' real CSP and cookies; openid-client redeems the code as the desk application.

const mfa = 'urn:clearance:acr:mfa';
const upstreamAmr = 'urn:clearance:amr:upstream';

/** axe-core's serious and critical violations on the page (run through the DevTools protocol: the page's CSP allows no script). */
async function accessibilityViolations(page: Page): Promise<string[]> {
  const results = (await page.evaluate(`${axe.source}; axe.run(document, { resultTypes: ['violations'] })`)) as axe.AxeResults;
  return results.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).join(', ')})`);
}

/** The harness, a person's page whose errors are collected, and a record of where its navigations went. */
async function scene(t: TestContext) {
  const browser = await launchBrowser(t);
  if (!browser) return undefined;
  // Clearance on localhost, the upstream on 127.0.0.1: the fund's provider is on another site, as it would be.
  const h = await startBrokering(t, { host: 'localhost' });
  const person = await personPage(browser, h.server.issuer);
  /** Every top-level navigation request, redirects included, in order. */
  const navigations: URL[] = [];
  /** The documents Clearance served (200) in the main frame: their URLs and bodies. */
  const clearancePages: Promise<{ url: string; body: string }>[] = [];
  person.page.on('request', (request) => {
    if (request.isNavigationRequest() && request.frame() === person.page.mainFrame()) navigations.push(new URL(request.url()));
  });
  person.page.on('response', (response) => {
    const request = response.request();
    if (request.isNavigationRequest() && request.frame() === person.page.mainFrame() && response.url().startsWith(h.server.issuer) && response.status() === 200) {
      clearancePages.push(response.text().then((body) => ({ url: response.url(), body })));
    }
  });
  return { h, ...person, navigations, clearancePages };
}

const atClient = (h: BrokeringHarness) => (url: URL) => url.href.startsWith(h.app.redirectUri);

async function redeem(h: BrokeringHarness, request: ReturnType<typeof authorizationRequest>, callback: string) {
  return client.authorizationCodeGrant(h.config, new URL(callback), { pkceCodeVerifier: request.verifier, expectedState: request.state, expectedNonce: request.nonce });
}

test('a fund’s portfolio manager signs in through the fund’s OpenID Provider from Clearance’s sign-in page in Chromium, and the ID token names the fund as the source of assurance', async (t) => {
  const s = await scene(t);
  if (!s) return;
  const { h, page } = s;
  h.upstream.nextSignIn = { sub: 'pm-101', claims: { name: 'Petra Manager', email: 'petra@fund-a.example', preferred_username: 'petra' }, acr: upstreamAcr.mfa, amr: ['pwd', 'otp', 'mfa'] };
  const request = authorizationRequest(h);

  // 1. The desk application sends the person to Clearance: the sign-in page, with the organisation section.
  const signIn = await page.goto((await request.url()).href);
  assert.equal(signIn?.status(), 200);
  assert.ok(page.url().startsWith(`${h.server.issuer}/interaction/`), page.url());
  await page.getByRole('heading', { level: 1, name: 'Sign in' }).waitFor();
  const section = page.getByRole('region', { name: 'Sign in through your organisation' });
  await section.getByRole('heading', { level: 2, name: 'Sign in through your organisation' }).waitFor();
  assert.deepEqual(await accessibilityViolations(page), [], 'the sign-in page: no serious accessibility violations');

  // 2. A domain no organisation has: said on the page, next to the field (and still accessible).
  const realm = section.getByLabel('Work email, or your firm’s LEI');
  await realm.fill('someone@elsewhere.example');
  const refused = page.waitForResponse((r) => r.url().endsWith('/upstream') && r.request().method() === 'POST');
  await section.getByRole('button', { name: 'Continue with your organisation' }).click();
  assert.equal((await refused).status(), 400);
  await page.waitForLoadState();
  await page.getByText('No organisation’s sign-in is set up for that.').waitFor();
  assert.equal(await realm.inputValue(), 'someone@elsewhere.example', 'what the person typed is kept');
  assert.equal(await realm.getAttribute('aria-invalid'), 'true');
  assert.deepEqual(await accessibilityViolations(page), [], 'the sign-in page with the organisation’s error: no serious accessibility violations');
  assert.equal(h.upstream.signIns, 0);

  // 3. Their work email: to the fund's provider (which signs them in at once), back to Clearance's consent page.
  await realm.fill('petra@fund-a.example');
  const before = s.navigations.length;
  await Promise.all([
    page.waitForURL((url) => url.href.startsWith(`${h.server.issuer}/interaction/`) && s.navigations.slice(before).some((u) => u.pathname === '/broker/oidc/callback')),
    section.getByRole('button', { name: 'Continue with your organisation' }).click(),
  ]);
  await page.getByRole('button', { name: 'Approve' }).waitFor();
  const trip = s.navigations.slice(before);
  t.diagnostic(`redirects: ${trip.map((u) => `${u.origin}${u.pathname}`).join(' → ')}`);
  assert.ok(trip.some((u) => u.origin === new URL(h.upstream.issuer).origin), `the browser went to the upstream: ${trip.map((u) => u.href).join(' → ')}`);
  const toUpstream = trip.find((u) => u.origin === new URL(h.upstream.issuer).origin)!;
  assert.equal(toUpstream.pathname, '/auth', `the upstream's authorization endpoint first: ${toUpstream.href}`);
  assert.equal(h.upstream.signIns, 1);
  assert.match(await page.content(), /Rates Desk/);

  // 4. Approve: the desk application's callback with a code, redeemed by openid-client.
  await Promise.all([page.waitForURL(atClient(h)), page.getByRole('button', { name: 'Approve' }).click()]);
  const callback = new URL(page.url());
  assert.equal(callback.searchParams.get('iss'), h.server.issuer);
  assert.equal(callback.searchParams.get('state'), request.state);
  assert.ok(callback.searchParams.get('code'));
  assert.ok(h.app.received.some((u) => u.searchParams.get('code') === callback.searchParams.get('code')), 'the callback server received the code');
  const tokens = await redeem(h, request, page.url());
  const idToken = tokens.claims()!;
  assert.equal(idToken.acr, mfa, 'the fund is trusted for two-factor sign-ins, and asserted one');
  assert.ok((idToken.amr as string[]).includes(upstreamAmr), `amr ${JSON.stringify(idToken.amr)}`);
  assert.deepEqual(new Set(idToken.amr as string[]), new Set(['pwd', 'otp', 'mfa', upstreamAmr]));
  assert.equal(idToken.assurance_source, h.upstream.issuer);

  // The 400 of step 2 is the page refusing an unknown domain, on purpose; nothing else went wrong.
  const unexpected = s.pageErrors.filter((e) => !(e.startsWith('400 ') && e.endsWith('/upstream')));
  assert.deepEqual(unexpected, [], 'no script errors and no CSP violations on the pages');
});

test('with idp_hint the browser goes straight to the fund’s provider and back to the consent page, never showing Clearance’s sign-in page', async (t) => {
  const s = await scene(t);
  if (!s) return;
  const { h, page } = s;
  h.upstream.nextSignIn = { sub: 'pm-102', claims: { name: 'Tom Manager', email: 'tom@fund-a.example' }, acr: upstreamAcr.mfa, amr: ['pwd', 'otp', 'mfa'] };
  const request = authorizationRequest(h, { idp_hint: 'fund-a', login_hint: 'tom@fund-a.example' });

  await page.goto((await request.url()).href);
  await page.getByRole('button', { name: 'Approve' }).waitFor();
  assert.ok(page.url().startsWith(`${h.server.issuer}/interaction/`), page.url());
  const upstreamOrigin = new URL(h.upstream.issuer).origin;
  const trip = s.navigations.map((u) => u.href).join(' → ');
  t.diagnostic(`redirects: ${s.navigations.map((u) => `${u.origin}${u.pathname}`).join(' → ')}`);
  const first = s.navigations.findIndex((u) => u.origin === upstreamOrigin);
  assert.ok(first > 0, `the browser went to the upstream: ${trip}`);
  assert.equal(s.navigations[first]!.pathname, '/auth', `the upstream's authorization endpoint first: ${trip}`);
  assert.ok(s.navigations.slice(first).some((u) => u.href.startsWith(`${h.server.issuer}/broker/oidc/callback`)), `and came back to Clearance’s callback: ${trip}`);
  assert.equal(h.upstream.signIns, 1);

  // The only page of Clearance's the browser showed is the consent page.
  const shown = await Promise.all(s.clearancePages);
  assert.equal(shown.length, 1, `Clearance showed one page: ${shown.map((p) => p.url).join(', ')}`);
  assert.doesNotMatch(shown[0]!.body, /<h1>Sign in<\/h1>|Sign in through your organisation|name="password"/, 'not the sign-in page');
  assert.match(shown[0]!.body, /Approve/);

  await Promise.all([page.waitForURL(atClient(h)), page.getByRole('button', { name: 'Approve' }).click()]);
  const idToken = (await redeem(h, request, page.url())).claims()!;
  assert.equal(idToken.acr, mfa);
  assert.ok((idToken.amr as string[]).includes(upstreamAmr));
  assert.equal(idToken.assurance_source, h.upstream.issuer);
  assert.deepEqual(s.pageErrors, [], 'no script errors and no CSP violations on the pages');
});
