import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as client from 'openid-client';
import { Agent } from 'undici';
import { acr } from '../../src/identity/acr.ts';
import { upsertUser } from '../../src/identity/users.ts';
import { freshSignInRequest } from '../helpers/desk-app.ts';
import { launchBrowser } from '../helpers/browser.ts';
import { startCallbackServer } from '../helpers/callback-server.ts';
import { hardwarePolicy, makePersonPki } from '../helpers/person-pki.ts';
import { makePki } from '../helpers/pki.ts';
import { startTestServer } from '../helpers/server.ts';
import { applyPersonCertificates, lastEvent } from '../identity/certificates/fixture.ts';

// Certificate sign-in in a real browser (issue 22 item 6's done-when): Clearance serves HTTPS on
// its own TLS listener and asks for client certificates; Chromium (Debian's, via playwright-core)
// presents the person's smart-card certificate — made by openssl's `openssl ca`, with the firm's
// hardware policy OID — through playwright-core's clientCertificates. The person signs in without
// a password and openid-client gets an ID token at the phishing-resistant hardware level; once the
// CA revokes the certificate (its OCSP responder, `openssl ocsp`, says so) the same certificate is
// refused on the sign-in page.

const ordersApi = 'https://orders.example.com/api';

test('a trader signs in with her smart card in Chromium without a password at phrh, and after its revocation the same card is refused', async (t) => {
  const browser = await launchBrowser(t);
  if (!browser) return;
  const tls = makePki(t); // the server's certificate for 127.0.0.1
  const people = await makePersonPki(t); // the firm's smart-card CA, its OCSP responder
  const app = await startCallbackServer(t);
  const server = await startTestServer({ t, env: { CLEARANCE_TLS_CERT: tls.server.certFile, CLEARANCE_TLS_KEY: tls.server.keyFile, CLEARANCE_TLS_CLIENT_CA: `${people.dir}/ca.crt` } });
  assert.match(server.issuer, /^https:/);
  await server.apply({
    resource_servers: [{ identifier: ordersApi, name: 'Order API', scopes: ['order:create'] }],
    clients: [{ client_id: 'desk-app', client_name: 'Rates Desk', kind: 'app', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['authorization_code'], redirect_uris: [app.redirectUri], scope: 'openid order:create' }],
  });
  const ctx = server.running.ctx;
  // Alice has no password at all: her smart card is how she signs in.
  const { id: aliceId } = await ctx.storage.db.transaction().execute((trx) => upsertUser(trx, ctx.clock.now(), { username: 'alice', name: 'Alice Trader', email: 'alice@broker.example.com' }, { keep: true }));
  await applyPersonCertificates(ctx, {
    authorities: [
      { name: 'broker-smartcards', certificates: people.caPem, hardware_policy_oids: [hardwarePolicy], revocation: { method: 'ocsp', timeout_ms: 3000, allow_private_network: true }, mapping: [{ certificate: 'san_email', person: 'email' }] },
    ],
  });
  const card = people.issue('alice-card', { subject: '/O=Broker Ltd/CN=Alice Trader', san: 'email:alice@broker.example.com', policies: [hardwarePolicy] });

  // openid-client trusts the test CA of Clearance's TLS listener.
  const dispatcher = new Agent({ connect: { ca: tls.ca.cert } });
  const config = await client.discovery(new URL(server.issuer), 'desk-app', undefined, client.ClientSecretBasic(server.secrets['desk-app']!), {
    [client.customFetch]: (url, options) => fetch(url, { ...options, dispatcher } as RequestInit),
    execute: [client.allowInsecureRequests], // the app's own redirect URI is http on loopback
  });
  const authorizationRequest = () => freshSignInRequest(config, app.redirectUri);

  // The browser holds the card's certificate and key for Clearance's origin (the test CA of the
  // server certificate is not in Chromium's store: its errors are ignored).
  const context = await browser.newContext({ ignoreHTTPSErrors: true, clientCertificates: [{ origin: server.issuer, certPath: card.certFile, keyPath: card.keyFile }] });
  const page = await context.newPage();

  const first = await authorizationRequest();
  await page.goto(first.url.href);
  await page.getByRole('heading', { name: 'Sign in with your smart card' }).waitFor();
  await Promise.all([page.waitForURL(/\/interaction\/[^/]+$/), page.getByRole('button', { name: 'Sign in with your smart card' }).click()]);
  assert.match(await page.content(), /Rates Desk/, 'the consent page');
  await Promise.all([page.waitForURL((url) => url.href.startsWith(app.redirectUri)), page.getByRole('button', { name: 'Approve' }).click()]);
  const claims = (await first.redeem(page.url())).claims()!;
  assert.equal(claims.sub, aliceId);
  assert.equal(claims.acr, acr.phishingResistantHardware);
  assert.deepEqual(claims.amr, ['sc', 'hwk', 'pin', 'mfa']);
  const signedIn = await lastEvent(ctx, 'user.login_succeeded');
  assert.equal(signedIn.details.via, 'tls', 'from Clearance’s own TLS listener');
  assert.equal(signedIn.details.revocation, 'good');

  // The CA revokes the card; its OCSP responder says so at the next sign-in.
  people.revoke(card);
  const second = await authorizationRequest();
  await page.goto(second.url.href);
  const refused = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith('/certificate') && r.request().method() === 'POST'),
    page.getByRole('button', { name: 'Sign in with your smart card' }).click(),
  ]);
  assert.equal(refused[0].status(), 401);
  await page.getByRole('alert').filter({ hasText: 'revoked' }).first().waitFor();
  assert.match(await page.getByRole('alert').first().innerText(), /Your certificate has been revoked, so it no longer signs you in/);
  const failed = await lastEvent(ctx, 'user.login_failed');
  assert.deepEqual(failed.decision?.reasons, ['revoked']);
  assert.equal(failed.details.authority, 'broker-smartcards');
  assert.equal(app.received.filter((url) => url.pathname === '/callback').length, 1, 'the application heard nothing of the refused sign-in');
});
