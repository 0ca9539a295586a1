import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { decodeJwt } from 'jose';
import * as client from 'openid-client';
import { newDemoClients } from '../../demo/clients.ts';
import { deskMandateId, demoDocument, loopbackAudiences, trader, withTrader } from '../../demo/config.ts';
import { startFirms } from '../../demo/services.ts';
import { launchBrowser } from '../helpers/browser.ts';
import { startCallbackServer } from '../helpers/callback-server.ts';
import { personPage } from '../helpers/desk-app.ts';
import { freePorts, startTestServer } from '../helpers/server.ts';

// Issue 17 item 7: the demo's chain started by a person. A trader signs in through Chromium at
// her desk's trading screen (openid-client as the app: PAR, PKCE, the code), asks to act under
// the pension fund's mandate to her firm, and places an order at the arranger; the arranger →
// broker → clearing hops carry her as the subject, under the same txn from her first token on.

const insecure = { execute: [client.allowInsecureRequests] }; // the test issuer is http on loopback
const policies = join(fileURLToPath(new URL('../..', import.meta.url)), 'examples', 'policies');

test('a trader signs in through the browser, orders under her desk mandate, and arranger → broker → clearing carry her as the subject', async (t) => {
  const browser = await launchBrowser(t);
  if (!browser) return;
  const app = await startCallbackServer(t);
  const server = await startTestServer({ t, host: 'localhost' }); // WebAuthn's RP ID is a host name
  const issuer = server.issuer;
  const [orders, execution, clearing] = (await freePorts(3)) as [number, number, number];
  const ports = { orders, execution, clearing };
  const audiences = loopbackAudiences(ports);
  const { clients, keys } = await newDemoClients();
  const now = new Date();
  await server.apply(withTrader(demoDocument(audiences, keys, policies, now), app, now));

  const started: { close(): Promise<unknown> }[] = [];
  t.after(async () => {
    for (const s of started.reverse()) await s.close();
  });
  const { arranger } = await startFirms(issuer, audiences, ports, clients, started);

  // The trading screen sends the trader to Clearance: the order API, under the desk's mandate.
  const config = await client.discovery(new URL(issuer), 'am-trading-app', undefined, client.ClientSecretBasic(server.secrets['am-trading-app']!), insecure);
  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const challenge = await client.calculatePKCECodeChallenge(verifier);
  const authorizationUrl = () => client.buildAuthorizationUrlWithPAR(config, {
    redirect_uri: app.redirectUri,
    scope: 'openid order:create settlement:submit',
    resource: audiences.orders,
    mandate: deskMandateId,
    // The trade starts with her order: Clearance mints its txn, carried from her first token on.
    txn: 'new',
    code_challenge: challenge,
    code_challenge_method: 'S256',
    state,
  });
  // Her device: Chromium with a virtual authenticator.
  const { page, pageErrors } = await personPage(browser, issuer);
  await page.goto((await authorizationUrl()).href);
  await page.getByLabel('Username').fill(trader.username);
  await page.getByLabel('Password').fill(trader.password);
  await Promise.all([page.waitForURL(/\/interaction\//), page.getByRole('button', { name: 'Sign in', exact: true }).click()]);
  // The example policies ask a passkey for trading scopes (examples/policies/step-up.cedar): she
  // has none yet, so she adds one on her account page and comes back to the trading screen.
  await page.getByText('You have not added a passkey to your account.').waitFor();
  await page.goto(`${issuer}/account`);
  await page.getByLabel('Name for the new passkey').fill('Trading desk laptop');
  await Promise.all([
    page.waitForResponse((r) => r.url() === `${issuer}/account/passkeys` && r.request().method() === 'POST' && r.status() === 303),
    page.getByRole('button', { name: 'Add a passkey' }).click(),
  ]);
  await page.getByRole('heading', { level: 3, name: 'Trading desk laptop' }).waitFor();
  await page.goto((await authorizationUrl()).href);
  await page.getByRole('button', { name: 'Use your passkey' }).click();
  await page.getByRole('button', { name: 'Approve' }).waitFor();
  assert.match(await page.content(), new RegExp(deskMandateId), 'the consent page names the mandate she acts under');
  await Promise.all([page.waitForURL((url) => url.href.startsWith(app.redirectUri)), page.getByRole('button', { name: 'Approve' }).click()]);
  const tokens = await client.authorizationCodeGrant(config, new URL(page.url()), { pkceCodeVerifier: verifier, expectedState: state }, { resource: audiences.orders });
  const first = decodeJwt(tokens.access_token);
  assert.equal(first.aud, audiences.orders);
  assert.deepEqual((first.mandate as { id: string }).id, deskMandateId);
  assert.equal(first.acr, 'urn:clearance:acr:phr', 'signed in with her passkey');
  const person = first.sub!;

  // Her order travels the chain, one exchanged token per hop.
  const order = { instrument: 'EURGBP', instrument_class: 'fx', side: 'sell', notional: 3_000_000, currency: 'EUR' };
  const placed = await fetch(`${arranger.url}/orders`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${tokens.access_token}` }, body: JSON.stringify(order) });
  const body = (await placed.json()) as Record<string, any>;
  assert.equal(placed.status, 200, JSON.stringify(body));
  assert.equal(body.execution.executed_for, person, 'the broker executes for the trader');
  assert.deepEqual(body.execution.chain, ['arranger-backend'], 'the broker sees who acts for her');
  assert.equal(body.execution.settlement.subject, person, 'the clearing firm settles for the trader');
  assert.deepEqual(body.execution.settlement.on_behalf_chain, ['broker-backend', 'arranger-backend'], 'newest actor first');
  assert.deepEqual(body.execution.settlement.mandate, body.mandate, 'the mandate version of her first token, at every hop');
  assert.match(String(first.txn), /^[0-9a-f-]{36}$/, 'her first token starts the trade');
  assert.equal(body.execution.txn, first.txn, 'the broker files the order under the txn of her first token');
  assert.equal(body.execution.settlement.txn, first.txn, 'and so does the clearing firm');
  // Everything Clearance did for the trade is filed under it, from her first token on.
  const filed = await server.running.ctx.storage.db.selectFrom('audit_events').select(['type', 'subject']).where('txn', '=', String(first.txn)).orderBy('seq').execute();
  assert.deepEqual(filed.map((e) => [e.type, e.subject]), [
    ['token.issued', person],
    ['token.exchanged', person],
    ['token.exchanged', person],
  ]);
  assert.deepEqual(pageErrors, []);
});
