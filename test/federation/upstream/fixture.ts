/**
 * What the identity-brokering tests start from: a listening Clearance with the Order API and the
 * desk application (openid-client), a partner fund (legal entity and desk) whose people sign in
 * through the fund's own OpenID Provider (node-oidc-provider, ./upstream.ts), declared in apply as
 * `fund-a`: trusted to assert two-factor sign-ins, not phishing-resistant ones.
 */
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import * as client from 'openid-client';
import { startDeskApp, type DeskApp } from '../../helpers/desk-app.ts';
import { csrfOf, HttpBrowser } from '../../helpers/http-browser.ts';
import { startUpstream, upstreamAcr, type TestUpstream } from './upstream.ts';

export const brokerLei = '5493001KJTIIGC8Y1R12';
export const fundLei = '529900T8BM49AURSDO55';
export { upstreamAcr };

export interface BrokeringHarness extends DeskApp {
  upstream: TestUpstream;
  /** The fund's provider declaration as applied; `apply({ ...providerEntry, enabled: false })` changes it. */
  providerEntry: Record<string, unknown>;
}

export async function startBrokering(t: TestContext, options: { host?: 'localhost'; apply?: Record<string, unknown>; refreshTokens?: boolean; privateKeyJwt?: boolean } = {}): Promise<BrokeringHarness> {
  // The redirect URI is known once Clearance listens: the upstream is started after, from its issuer.
  let upstream: TestUpstream | undefined;
  const desk = await startDeskApp(t, { ...(options.host ? { host: options.host } : {}), ...(options.refreshTokens ? { refreshTokens: true } : {}) });
  upstream = await startUpstream({ redirectUri: `${desk.server.issuer}/broker/oidc/callback`, clearance: desk.server.issuer, ...(options.privateKeyJwt ? { privateKeyJwt: true } : {}) });
  t.after(() => upstream!.close());
  const providerEntry = {
    id: 'fund-a',
    name: 'Fund A',
    issuer: upstream.issuer,
    client_id: upstream.clientId,
    ...(options.privateKeyJwt ? { token_endpoint_auth_method: 'private_key_jwt' } : { client_secret: upstream.clientSecret }),
    legal_entity: fundLei,
    desks: ['fund-a-pm'],
    domains: ['fund-a.example'],
    claims: { name: 'name', email: 'email', username: 'preferred_username' },
    acr: { map: { [upstreamAcr.mfa]: 'urn:clearance:acr:mfa', [upstreamAcr.phr]: 'urn:clearance:acr:phr' }, max: 'urn:clearance:acr:mfa' },
    allow_private_network: true,
  };
  await desk.server.apply({
    regions: [{ id: 'eu', name: 'Europe' }],
    legal_entities: [
      { lei: brokerLei, name: 'Example Broker Ltd', jurisdiction: 'GB', home_region: 'eu', roles: ['broker'] },
      { lei: fundLei, name: 'Fund A Asset Management', jurisdiction: 'GB', home_region: 'eu', roles: ['asset_manager'], desks: [{ id: 'fund-a-pm', name: 'Portfolio management', product_classes: ['bond'] }] },
    ],
    identity_providers: [providerEntry],
    ...options.apply,
  });
  return { ...desk, upstream, providerEntry };
}

/** An authorization request of the desk application: its URL, and what completes it. */
export function authorizationRequest(h: Pick<DeskApp, 'config' | 'app'>, extra: Record<string, string> = {}) {
  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  return {
    verifier,
    state,
    nonce,
    url: async () =>
      client.buildAuthorizationUrl(h.config, {
        redirect_uri: h.app.redirectUri,
        scope: 'openid order:create',
        code_challenge: await client.calculatePKCECodeChallenge(verifier),
        code_challenge_method: 'S256',
        state,
        nonce,
        ...extra,
      }),
  };
}

export const form = (fields: Record<string, string>): RequestInit => ({
  method: 'POST',
  headers: { 'content-type': 'application/x-www-form-urlencoded' },
  body: new URLSearchParams(fields).toString(),
});

/** Follows redirects through Clearance and the upstream until a page, or a redirect to elsewhere (the client). */
export async function followAll(browser: HttpBrowser, start: string | URL, init: RequestInit, stopAt: (url: URL) => boolean): Promise<{ response: Response; url: URL; visited: URL[] }> {
  let url = new URL(start);
  let response = await browser.fetch(url, init);
  const visited = [url];
  while ((response.status === 303 || response.status === 302) && !stopAt(new URL(response.headers.get('location')!, url))) {
    url = new URL(response.headers.get('location')!, url);
    visited.push(url);
    response = await browser.fetch(url);
  }
  return { response, url, visited };
}

/**
 * From the desk application's authorization URL: Clearance's sign-in page, "Sign in through your
 * organisation" with `realm`, the upstream, back to Clearance; returns where that ends (a page of
 * Clearance's — consent, step-up, an error — or the 303 to the client).
 */
export async function signInThroughOrganisation(h: BrokeringHarness, browser: HttpBrowser, authorizationUrl: URL, realm: string) {
  const page = await browser.follow(authorizationUrl, h.server.issuer);
  assert.equal(page.response.status, 200, 'the sign-in page');
  const html = await page.response.text();
  assert.match(html, /Sign in through your organisation/);
  return followAll(browser, `${page.url.href}/upstream`, form({ csrf_token: csrfOf(html), realm }), (url) => url.href.startsWith(h.app.redirectUri));
}

/** Approves on the consent page `at` shows (unless the person's consent is remembered: then `at` is already the way to the client); returns the client's callback URL. */
export async function approve(browser: HttpBrowser, at: { response: Response; url: URL }): Promise<URL> {
  if (at.response.status === 303) return new URL(at.response.headers.get('location')!, at.url);
  assert.equal(at.response.status, 200, `the consent page at ${at.url.href}`);
  const html = await at.response.text();
  assert.match(html, /Approve/);
  const issuer = at.url.origin;
  const { response, url } = await browser.follow(`${at.url.href}/consent`, issuer, form({ csrf_token: csrfOf(html), decision: 'approve' }));
  assert.equal(response.status, 303, 'redirected to the client');
  return url;
}
