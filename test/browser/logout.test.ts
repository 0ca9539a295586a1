import assert from 'node:assert/strict';
import { test } from 'node:test';
import { launchBrowser } from '../helpers/browser.ts';
import { alicePassword, freshSignInRequest, startDeskApp } from '../helpers/desk-app.ts';

// RP-initiated logout without an id_token_hint (OpenID RP-Initiated Logout 1.0 §2): Clearance asks
// the person to confirm on its own page. Chromium posts that form with `Origin: null`, as the
// page's Referrer-Policy is no-referrer (Fetch "append a request Origin header"): the confirmation
// must still end the session.

test('a trader confirms their sign-out on Clearance’s own page in Chromium, and is signed out', async (t) => {
  const browser = await launchBrowser(t);
  if (!browser) return;
  const { server, app, config } = await startDeskApp(t);
  const request = await freshSignInRequest(config, app.redirectUri);
  const page = await (await browser.newContext()).newPage();
  await page.goto(request.url.href);
  await page.getByLabel(/user ?name/i).fill('alice');
  await page.getByLabel(/password/i).fill(alicePassword);
  await Promise.all([page.waitForURL(/\/interaction\//), page.getByRole('button', { name: 'Sign in' }).click()]);
  await Promise.all([page.waitForURL((url) => url.href.startsWith(app.redirectUri)), page.getByRole('button', { name: 'Approve' }).click()]);

  const confirm = await page.goto(`${server.issuer}/logout`);
  assert.equal(confirm?.status(), 200);
  assert.match(await page.content(), /Do you want to sign out of Clearance\?/);
  const [posted] = await Promise.all([page.waitForRequest((r) => r.method() === 'POST'), page.getByRole('button', { name: 'Sign out' }).click()]);
  await page.waitForLoadState();
  assert.equal(await posted.headerValue('origin'), 'null', 'what Chromium sends from a no-referrer page');
  assert.match(await page.content(), /You are signed out of Clearance/);
  await page.goto(`${server.issuer}/account`);
  assert.match(await page.content(), /You are not signed in to Clearance in this browser./);
});
