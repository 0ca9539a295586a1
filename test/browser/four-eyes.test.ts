import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as client from 'openid-client';
import { decodeJwt } from 'jose';
import type { Page } from 'playwright-core';
import { AuditKeys, auditOrigin } from '../../src/audit/audit-key.ts';
import { exportBundle, verifyBundle } from '../../src/audit/bundle.ts';
import { createSealer } from '../../src/audit/lifecycle.ts';
import { findApprovalRequest, listPendingApprovalRequests } from '../../src/approvals/requests.ts';
import { findUserByUsername } from '../../src/identity/users.ts';
import { approvalDigest } from '../../src/jose/approval-digest.ts';
import { resolveMasterKey } from '../../src/keys/master-key.ts';
import { launchBrowser } from '../helpers/browser.ts';
import { alicePassword, ordersApi, personPage, startDeskApp, type DeskApp } from '../helpers/desk-app.ts';
import { exampleEntities, examplePolicyText } from '../policy/fixture.ts';

// The four-eyes flow end to end, as issue 15 states it done: a trader's order above the threshold
// of the example four-eyes policy yields a token only after a supervisor of her desk approves it on
// their own device with a passkey, and the transaction's evidence bundle shows both people and what
// each saw, verified offline. Two browser contexts in Chromium, each with its own virtual
// authenticator: the trader's device and the supervisor's.

const cibaGrant = 'urn:openid:params:grant-type:ciba';
const gracePassword = 'grace supervises the rates desk';
const order = {
  type: 'order',
  instrument: { class: 'rates', symbol: 'UKT 4.25 2032' },
  side: 'buy',
  max_notional: { amount: '35000000', currency: 'GBP' },
  venue: 'XEXD',
  account: 'GB-RATES-001',
};

/** Signs a person in through the desk application (password), then adds a passkey on /account. */
async function enrolPasskey(desk: DeskApp, page: Page, username: string, password: string): Promise<void> {
  const url = client.buildAuthorizationUrl(desk.config, {
    redirect_uri: desk.app.redirectUri,
    scope: 'openid',
    code_challenge: await client.calculatePKCECodeChallenge(client.randomPKCECodeVerifier()),
    code_challenge_method: 'S256',
  });
  await page.goto(url.href);
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(password);
  await Promise.all([page.waitForURL(/\/interaction\//), page.getByRole('button', { name: 'Sign in', exact: true }).click()]);
  await Promise.all([page.waitForURL((u) => u.href.startsWith(desk.app.redirectUri)), page.getByRole('button', { name: 'Approve' }).click()]);
  await page.goto(`${desk.server.issuer}/account`);
  await page.getByLabel('Name for the new passkey').fill(`${username}'s device`);
  await Promise.all([
    page.waitForResponse((r) => r.url() === `${desk.server.issuer}/account/passkeys` && r.request().method() === 'POST' && r.status() === 303),
    page.getByRole('button', { name: 'Add a passkey' }).click(),
  ]);
  await page.getByRole('heading', { level: 3, name: `${username}'s device` }).waitFor();
}

/** Opens the one waiting request on /account/approvals, checks what it shows, approves it with the passkey. */
async function approveOnDevice(issuer: string, page: Page, requestId: string, bindingMessage: string): Promise<void> {
  await page.goto(`${issuer}/account/approvals`);
  await page.locator(`a[href$="/account/approvals/${requestId}"]`).click();
  await page.waitForURL(`${issuer}/account/approvals/${requestId}`);
  assert.equal(await page.locator('#binding-message').innerText(), bindingMessage);
  const shown = await page.getByRole('list', { name: 'What is asked:' }).getByRole('listitem').allInnerTexts();
  assert.equal(shown.length, 1);
  assert.match(shown[0]!, /UKT 4\.25 2032/);
  assert.match(shown[0]!, /35,000,000/);
  await Promise.all([page.waitForURL(`${issuer}/account/approvals`), page.getByRole('button', { name: 'Approve with passkey' }).click()]);
}

test('a trader’s order above the four-eyes threshold is issued only after a supervisor approves it on their own device, and the bundle shows both', async (t) => {
  const browser = await launchBrowser(t);
  if (!browser) return;
  const desk = await startDeskApp(t, { host: 'localhost' });
  const { server } = desk;
  const ctx = server.running.ctx;
  await server.apply({
    ...exampleEntities(),
    resource_servers: [{ identifier: ordersApi, name: 'Order API', scopes: ['order:create'] }],
    clients: [
      {
        client_id: 'desk-ciba',
        client_name: 'Rates Desk',
        kind: 'app',
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: [cibaGrant],
        backchannel_token_delivery_mode: 'poll',
        scope: 'openid order:create',
      },
    ],
    users: [
      { username: 'alice', desks: ['rates'], roles: ['trader'], attributes: { kyc_status: 'verified', suitability: ['rates'] } },
      { username: 'grace', name: 'Grace Supervisor', password: gracePassword, desks: ['rates'], roles: ['approver'], attributes: { kyc_status: 'verified', supervises: ['rates'], approval_limit: 100_000_000 } },
    ],
    policies: [{ version: 'v1', text: examplePolicyText({ stepUp: true, approval: true, fourEyes: true }), change_ref: 'CHG-4', author: 'a', approver: 'b', active: true }],
  });
  const alice = (await findUserByUsername(ctx, 'alice'))!;
  const grace = (await findUserByUsername(ctx, 'grace'))!;
  const trader = await personPage(browser, server.issuer);
  const supervisor = await personPage(browser, server.issuer);
  await enrolPasskey(desk, trader.page, 'alice', alicePassword);
  await enrolPasskey(desk, supervisor.page, 'grace', gracePassword);

  // 1. The desk application asks, decoupled, for alice's token for the order (CIBA, poll mode).
  const basic = `Basic ${Buffer.from(`desk-ciba:${server.secrets['desk-ciba']!}`).toString('base64')}`;
  const post = async (path: string, body: Record<string, string>) => {
    const response = await fetch(`${server.issuer}${path}`, { method: 'POST', headers: { authorization: basic }, body: new URLSearchParams(body) });
    return { status: response.status, json: (await response.json()) as Record<string, unknown> };
  };
  const bindingMessage = 'ORDER-4711';
  const started = await post('/bc-authorize', {
    scope: 'openid order:create',
    login_hint: 'alice',
    binding_message: bindingMessage,
    resource: ordersApi,
    authorization_details: JSON.stringify([order]),
  });
  assert.equal(started.status, 200, JSON.stringify(started.json));
  const [request] = await listPendingApprovalRequests(ctx, { subject: alice.id });
  assert.equal(request!.requiredApprovals, 1, 'the example policy asks one second person above 30 million');
  // The server's clock is real here: each poll waits out the interval since the last (CIBA §7.3).
  let lastPoll = 0;
  const poll = async () => {
    const wait = lastPoll + Number(started.json.interval) * 1000 + 100 - Date.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    lastPoll = Date.now();
    return post('/token', { grant_type: cibaGrant, auth_req_id: started.json.auth_req_id as string });
  };
  assert.equal((await poll()).json.error, 'authorization_pending');

  // 2. The trader approves on her device: still pending, a second person is missing.
  await approveOnDevice(server.issuer, trader.page, request!.id, bindingMessage);
  assert.equal((await findApprovalRequest(ctx.storage.db, request!.id))!.status, 'pending');
  assert.equal((await poll()).json.error, 'authorization_pending');

  // 3. The supervisor approves on theirs: the request is approved and the token issued.
  await approveOnDevice(server.issuer, supervisor.page, request!.id, bindingMessage);
  const tokens = await poll();
  assert.equal(tokens.status, 200, JSON.stringify(tokens.json));
  const claims = decodeJwt(tokens.json.access_token as string);
  assert.equal(claims.sub, alice.id);
  assert.equal(claims.txn, request!.id);
  assert.equal(claims.authorization_details_digest, approvalDigest([order]));
  const approvals = claims.approvals as { sub: string; acr: string; evidence_digest: string }[];
  assert.deepEqual(approvals.map((a) => a.sub), [grace.id]);
  assert.match(approvals[0]!.acr, /^urn:clearance:acr:phrh?$/);
  assert.deepEqual([...trader.pageErrors, ...supervisor.pageErrors], [], 'no script errors and no CSP violations');

  // 4. The transaction's evidence bundle: both people, what each signed, verified offline.
  const masterKey = resolveMasterKey(ctx.config).key;
  await createSealer(ctx, masterKey).sealOnce();
  const key = await new AuditKeys(ctx.storage.db, masterKey, ctx.clock).signingKey(auditOrigin(ctx.config.issuer));
  const { text } = await exportBundle(ctx.storage.db, { query: { txn: request!.id }, key, jwksInForce: (from, to) => ctx.keys.jwksInForce(from, to), now: ctx.clock.now() });
  const report = verifyBundle(text);
  assert.deepEqual(report.problems, []);
  assert.equal(report.approvals, 2);
  const who = report.approvers!.map((a) => ({ approver: a.approver, role: a.role, verified: a.signatureVerified, digest: a.digest }));
  assert.deepEqual(who, [
    { approver: alice.id, role: 'subject', verified: true, digest: request!.digest },
    { approver: grace.id, role: 'approver', verified: true, digest: request!.digest },
  ]);
  assert.ok(text.includes('ORDER-4711'), 'the bundle holds what both saw: the content with the binding message');
});
