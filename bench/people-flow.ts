import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { executeApply, planApply } from '../src/apply/index.ts';
import { loadConfig } from '../src/config.ts';
import { buildApp } from '../src/http/app.ts';
import { createLogger } from '../src/log.ts';
import { openContext } from '../src/server.ts';
import { openStorage, storageOptionsFor } from '../src/storage/database.ts';
import { csrfOf, HttpBrowser } from '../test/helpers/http-browser.ts';
import { freePort } from '../test/helpers/server.ts';
import type { BenchLine } from './harness.ts';

const redirectUri = 'http://127.0.0.1:8400/callback';

/**
 * `people-flow-roundtrips`: the database statements one person's complete flow costs —
 * PAR → authorize → sign-in page → login → consent page → consent → code → token → refresh —
 * counted from Kysely's query log (every statement, including BEGIN/COMMIT and the audit
 * events' group commits; the sealer is not running). A first flow warms the caches; the second,
 * by another person in a new browser (so a real sign-in and a first consent), is the one counted.
 */
export async function peopleFlowRoundTrips(): Promise<BenchLine> {
  const dir = mkdtempSync(join(tmpdir(), 'clearance-bench-flow-'));
  const port = await freePort();
  const config = loadConfig({ PORT: String(port), HOST: '127.0.0.1', CLEARANCE_ISSUER: `http://127.0.0.1:${port}`, CLEARANCE_DATA_DIR: dir });
  let counting = false;
  let statements = 0;
  const storage = openStorage({ ...storageOptionsFor(config), onQuery: (q) => { if (counting) { statements++; if (process.env.FLOW_SQL) console.error('   SQL', q.slice(0, 110).replace(/\s+/g, ' ')); } } });
  const ctx = await openContext(config, { storage, log: createLogger('silent') });
  const app = buildApp(ctx);
  await app.listen({ host: '127.0.0.1', port });
  try {
    const { plan, problems } = await planApply(ctx, {
      resource_servers: [{ identifier: 'https://orders.example.com/api', name: 'Order API', scopes: ['order:create'] }],
      clients: [
        {
          client_id: 'desk-app',
          kind: 'app',
          token_endpoint_auth_method: 'client_secret_basic',
          grant_types: ['authorization_code', 'refresh_token'],
          redirect_uris: [redirectUri],
          scope: 'openid order:create',
        },
      ],
      users: [
        { username: 'alice', password: 'correct-horse-battery-42', name: 'Alice Trader' },
        { username: 'bob', password: 'correct-horse-battery-43', name: 'Bob Operations' },
      ],
    });
    if (!plan) throw new Error(JSON.stringify(problems));
    const secret = (await executeApply(ctx, plan, { actor: 'bench', via: 'cli' })).secrets['desk-app']!;
    // Warm-up by another person (caches, prepared statements); the counted flow then needs consent too.
    await runFlow(config.issuer, secret, ['alice', 'correct-horse-battery-42'], async () => {});
    const steps: Record<string, number> = {};
    await runFlow(config.issuer, secret, ['bob', 'correct-horse-battery-43'], async (step) => {
      await (ctx.audit as { flush?: () => Promise<void> }).flush?.();
      if (process.env.FLOW_SQL) console.error('-- step', step, statements);
      steps[step] = statements;
      statements = 0;
    }, () => (counting = true));
    const total = Object.values(steps).reduce((a, b) => a + b, 0);
    return { scenario: 'people-flow-roundtrips', statements: total, ...Object.fromEntries(Object.entries(steps).map(([k, v]) => [`step_${k}`, v])) };
  } finally {
    await app.close();
    await (ctx.audit as { close?: () => Promise<void> }).close?.();
    await storage.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function runFlow(issuer: string, secret: string, [username, password]: [string, string], after: (step: string) => Promise<void>, start: () => void = () => {}): Promise<void> {
  const basic = `Basic ${Buffer.from(`desk-app:${secret}`).toString('base64')}`;
  const form = { 'content-type': 'application/x-www-form-urlencoded', authorization: basic };
  const verifier = randomBytes(32).toString('base64url');
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  const browser = new HttpBrowser();
  start();
  const par = await fetch(`${issuer}/par`, {
    method: 'POST',
    headers: form,
    body: new URLSearchParams({ response_type: 'code', client_id: 'desk-app', redirect_uri: redirectUri, scope: 'openid order:create', code_challenge: challenge, code_challenge_method: 'S256', state: 's', nonce: 'n' }),
  });
  const { request_uri } = (await par.json()) as { request_uri: string };
  await after('par');
  let { response, url } = await browser.follow(`${issuer}/authorize?client_id=desk-app&request_uri=${encodeURIComponent(request_uri)}`, issuer);
  const loginPage = await response.text();
  await after('authorize_to_login_page');
  const post = (fields: Record<string, string>) => ({ method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(fields).toString() });
  ({ response, url } = await browser.follow(`${url.href}/login`, issuer, post({ csrf_token: csrfOf(loginPage), username, password })));
  const consentPage = await response.text();
  if (response.status !== 200) throw new Error(`sign-in failed (${response.status} at ${url.href}): ${consentPage.slice(0, 400)}`);
  await after('login_to_consent_page');
  ({ url } = await browser.follow(`${url.href}/consent`, issuer, post({ csrf_token: csrfOf(consentPage), decision: 'approve' })));
  const code = url.searchParams.get('code');
  if (!code) throw new Error(`no code in ${url.href}`);
  await after('consent_to_code');
  const token = await fetch(`${issuer}/token`, { method: 'POST', headers: form, body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: redirectUri, code_verifier: verifier }) });
  const tokens = (await token.json()) as { refresh_token?: string };
  if (!tokens.refresh_token) throw new Error(`no refresh token: ${JSON.stringify(tokens)}`);
  await after('token');
  const refreshed = await fetch(`${issuer}/token`, { method: 'POST', headers: form, body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token }) });
  if (refreshed.status !== 200) throw new Error(`refresh failed: ${await refreshed.text()}`);
  await after('refresh');
}
