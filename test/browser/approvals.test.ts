import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as client from 'openid-client';
import { verifyApprovalEvidence, type RequestApprovalEvidence } from '../../src/approvals/evidence.ts';
import { decisionsOf, findApprovalRequest } from '../../src/approvals/requests.ts';
import { decidePassword, upsertUser } from '../../src/identity/users.ts';
import { openOrderRequest, useTestKind } from '../approvals/fixture.ts';
import { launchBrowser } from '../helpers/browser.ts';
import { personPage, startDeskApp } from '../helpers/desk-app.ts';
import { passkeyPageCsp } from '../helpers/pages.ts';

// The approver's side in Chromium with a CDP virtual authenticator: a supervisor signs in, adds a
// passkey, finds the trader's order waiting on /account/approvals, reads it, and approves it with
// the passkey; the request is approved and the evidence verifies as an auditor would.

test('a supervisor approves a pending request with a passkey on /account/approvals in Chromium', async (t) => {
  const browser = await launchBrowser(t);
  if (!browser) return;
  const { server, app, config, aliceId } = await startDeskApp(t, { host: 'localhost' });
  useTestKind(t);
  const ctx = server.running.ctx;
  const password = 'a supervisor’s long passphrase';
  const entry = { username: 'sup-1', name: 'Sam Supervisor', password };
  const passwordDecision = await decidePassword(ctx.storage.db, entry);
  await ctx.storage.db.transaction().execute((trx) => upsertUser(trx, ctx.clock.now(), entry, passwordDecision));
  const { page, pageErrors } = await personPage(browser, server.issuer);

  // 1. The supervisor signs in through the desk application, then adds a passkey on /account.
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: app.redirectUri,
    scope: 'openid',
    code_challenge: await client.calculatePKCECodeChallenge(client.randomPKCECodeVerifier()),
    code_challenge_method: 'S256',
  });
  await page.goto(url.href);
  await page.getByLabel('Username').fill('sup-1');
  await page.getByLabel('Password').fill(password);
  await Promise.all([page.waitForURL(/\/interaction\//), page.getByRole('button', { name: 'Sign in', exact: true }).click()]);
  await Promise.all([page.waitForURL((u) => u.href.startsWith(app.redirectUri)), page.getByRole('button', { name: 'Approve' }).click()]);
  await page.goto(`${server.issuer}/account`);
  await page.getByLabel('Name for the new passkey').fill('Virtual laptop');
  await Promise.all([
    page.waitForResponse((r) => r.url() === `${server.issuer}/account/passkeys` && r.request().method() === 'POST' && r.status() === 303),
    page.getByRole('button', { name: 'Add a passkey' }).click(),
  ]);
  await page.getByRole('heading', { level: 3, name: 'Virtual laptop' }).waitFor();

  // 2. The trader's order waits for a second person.
  const request = await openOrderRequest(ctx, aliceId, { requester: 'desk-app', clientId: 'desk-app' });
  await page.getByRole('link', { name: 'Requests waiting for your approval' }).click();
  await page.getByRole('link', { name: 'Large order' }).click();
  await page.waitForURL(`${server.issuer}/account/approvals/${request.id}`);
  const shown = await page.request.get(page.url());
  assert.equal(shown.headers()['content-security-policy'], passkeyPageCsp('ownForm', server.issuer));
  assert.equal(await page.locator('#binding-message').innerText(), 'Order 7781 for ACC-7781');
  assert.equal((await page.getByRole('list', { name: 'What is asked:' }).getByRole('listitem').allInnerTexts()).length, 1);

  // 3. Approve with the passkey: back to the list, which is empty now.
  await Promise.all([page.waitForURL(`${server.issuer}/account/approvals`), page.getByRole('button', { name: 'Approve with passkey' }).click()]);
  await page.getByText('Nothing is waiting for your approval.').waitFor();
  assert.deepEqual(pageErrors, [], 'no script errors and no CSP violations on the pages');

  assert.equal((await findApprovalRequest(ctx.storage.db, request.id))!.status, 'approved');
  const [decision] = await decisionsOf(ctx.storage.db, request.id);
  assert.equal(decision!.method, 'passkey');
  const given = await ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', 'approval.given').executeTakeFirstOrThrow();
  const evidence = JSON.parse(given.event).details.evidence as RequestApprovalEvidence;
  assert.equal(evidence.origin, server.issuer);
  assert.deepEqual(verifyApprovalEvidence(evidence), []);
});
