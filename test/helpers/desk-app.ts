/**
 * What the people tests in Chromium start from: a listening Clearance with the Order API, the
 * desk application (a confidential client whose redirect endpoint is a callback server, seen by
 * openid-client) and alice with a password; and a page with a CDP virtual authenticator standing
 * in for the person's device, whose script errors and CSP violations are collected.
 */
import type { TestContext } from 'node:test';
import * as client from 'openid-client';
import type { Browser, CDPSession, Page } from 'playwright-core';
import { decidePassword, upsertUser } from '../../src/identity/users.ts';
import { startCallbackServer, type CallbackServer } from './callback-server.ts';
import { startTestServer, type TestServer } from './server.ts';

export const ordersApi = 'https://orders.example.com/api';
export const alicePassword = 'correct horse battery staple';
const insecure = { execute: [client.allowInsecureRequests] }; // the test issuer is http on loopback

export interface DeskApp {
  server: TestServer;
  app: CallbackServer;
  /** openid-client's configuration of the desk application. */
  config: client.Configuration;
  aliceId: string;
}

/**
 * Starts it all. `host: 'localhost'` for WebAuthn (its RP ID is a host name); `par` registers the
 * desk application as requiring PAR, `refreshTokens` for the refresh_token grant; `apply` adds to
 * the document applied (e.g. `policies`).
 */
export async function startDeskApp(
  t: TestContext,
  options: { host?: 'localhost'; par?: boolean; refreshTokens?: boolean; apply?: Record<string, unknown> } = {},
): Promise<DeskApp> {
  const app = await startCallbackServer(t);
  const server = await startTestServer({ t, ...(options.host ? { host: options.host } : {}) });
  await server.apply({
    resource_servers: [{ identifier: ordersApi, name: 'Order API', scopes: ['order:create'] }],
    clients: [
      {
        client_id: 'desk-app',
        client_name: 'Rates Desk',
        kind: 'app',
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: options.refreshTokens ? ['authorization_code', 'refresh_token'] : ['authorization_code'],
        redirect_uris: [app.redirectUri],
        ...(options.par ? { require_pushed_authorization_requests: true } : {}),
        scope: 'openid order:create',
      },
    ],
    ...options.apply,
  });
  const ctx = server.running.ctx;
  const entry = { username: 'alice', name: 'Alice Trader', password: alicePassword };
  const decision = await decidePassword(ctx.storage.db, entry);
  const { id: aliceId } = await ctx.storage.db.transaction().execute((trx) => upsertUser(trx, ctx.clock.now(), entry, decision));
  const config = await client.discovery(new URL(server.issuer), 'desk-app', undefined, client.ClientSecretBasic(server.secrets['desk-app']!), insecure);
  return { server, app, config, aliceId };
}

/** An authorization request of the desk application asking a fresh sign-in (prompt=login): its URL, and what redeems its code. */
export async function freshSignInRequest(config: client.Configuration, redirectUri: string): Promise<{ url: URL; redeem(callback: string): ReturnType<typeof client.authorizationCodeGrant> }> {
  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri,
    scope: 'openid order:create',
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    prompt: 'login',
  });
  return { url, redeem: (callback) => client.authorizationCodeGrant(config, new URL(callback), { pkceCodeVerifier: verifier, expectedState: state }) };
}

export interface PersonPage {
  page: Page;
  cdp: CDPSession;
  /** The virtual authenticator: CTAP2, internal transport, resident keys, user verification that succeeds. */
  authenticatorId: string;
  /** Script errors, CSP violations and (with `issuer`) failed requests to Clearance. */
  pageErrors: string[];
}

/** A page in a new browser context, with a virtual authenticator and its errors collected. */
export async function personPage(browser: Browser, issuer?: string): Promise<PersonPage> {
  const page = await (await browser.newContext()).newPage();
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: { protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true },
  });
  const pageErrors: string[] = [];
  page.on('pageerror', (error) => pageErrors.push(error.message));
  page.on('console', (message) => {
    // Resource errors are checked by URL below (Chromium asks every origin for /favicon.ico).
    if (message.type() === 'error' && !message.text().startsWith('Failed to load resource')) pageErrors.push(message.text());
  });
  if (issuer) {
    page.on('response', (response) => {
      if (response.status() >= 400 && response.url().startsWith(issuer) && !response.url().endsWith('/favicon.ico')) pageErrors.push(`${response.status()} ${response.url()}`);
    });
  }
  return { page, cdp, authenticatorId, pageErrors };
}
