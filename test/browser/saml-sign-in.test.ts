import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import * as client from 'openid-client';
import { launchBrowser } from '../helpers/browser.ts';
import { personPage } from '../helpers/desk-app.ts';
import { authorizationRequest } from '../federation/upstream/fixture.ts';
import { bankEntityId } from '../federation/upstream/saml-idp.ts';
import { acr, olga, startSaml, type SamlHarness } from '../federation/upstream/saml-fixture.ts';

// SAML identity brokering in Chromium: the bank's IdP (samlify, behind a small page on 127.0.0.1 —
// another site than Clearance on localhost) answers Clearance's AuthnRequest with a form that posts
// the SAMLResponse to Clearance's ACS, as ADFS does. That POST is cross-site, so it brings none of
// Clearance's SameSite=Lax cookies: the ACS verifies and keeps the answer, and the browser's own GET
// to /broker/saml/continue (which does bring them) finishes the sign-in as this browser's.

test('a bank’s treasurer signs in through the bank’s SAML IdP in Chromium: the IdP’s form posts across sites, and the sign-in is finished by the browser that started it', async (t) => {
  const browser = await launchBrowser(t);
  if (!browser) return;
  let harness: SamlHarness | undefined;
  const idp = createServer((request, response) => {
    void (async () => {
      const url = new URL(request.url ?? '/', 'http://127.0.0.1');
      if (url.pathname !== '/sso') return void response.writeHead(404).end(); // the browser's favicon, say
      const samlResponse = await harness!.idp.respond(url, olga);
      const acs = `${harness!.server.issuer}/broker/saml/acs`;
      const escape = (text: string) => text.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');
      response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      response.end(`<!doctype html><html lang="en"><title>Bank B</title><main><h1>Bank B</h1><form method="post" action="${escape(acs)}">
<input type="hidden" name="SAMLResponse" value="${escape(samlResponse)}"><input type="hidden" name="RelayState" value="${escape(url.searchParams.get('RelayState') ?? '')}">
<button type="submit">Continue to the broker</button></form></main>`);
    })();
  });
  await new Promise<void>((resolve) => idp.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => idp.close(() => resolve())));
  const h = await startSaml(t, { host: 'localhost', ssoUrl: `http://127.0.0.1:${(idp.address() as AddressInfo).port}/sso` });
  harness = h;
  const { page, pageErrors } = await personPage(browser, h.server.issuer);
  const request = authorizationRequest(h);

  await page.goto((await request.url()).href);
  const section = page.getByRole('region', { name: 'Sign in through your organisation' });
  await section.getByLabel('Work email, or your firm’s LEI').fill('olga@bank-b.example');
  await Promise.all([page.waitForURL((u) => u.href.startsWith('http://127.0.0.1:')), section.getByRole('button', { name: 'Continue with your organisation' }).click()]);
  // At the bank: its form posts the answer to Clearance (a cross-site POST), then on to the consent page.
  await Promise.all([page.waitForURL((u) => u.href.startsWith(`${h.server.issuer}/interaction/`)), page.getByRole('button', { name: 'Continue to the broker' }).click()]);
  await page.getByRole('button', { name: 'Approve' }).waitFor();
  await Promise.all([page.waitForURL((u) => u.href.startsWith(h.app.redirectUri)), page.getByRole('button', { name: 'Approve' }).click()]);

  const tokens = await client.authorizationCodeGrant(h.config, new URL(page.url()), { pkceCodeVerifier: request.verifier, expectedState: request.state, expectedNonce: request.nonce });
  const idToken = tokens.claims()!;
  assert.equal(idToken.acr, acr.mfa);
  assert.equal(idToken.assurance_source, bankEntityId);
  assert.deepEqual(pageErrors, [], 'no script errors, CSP violations or failed requests on Clearance’s pages');
});
