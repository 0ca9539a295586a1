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
import { adminQuery, type BenchLine } from './harness.ts';

const redirectUri = 'http://127.0.0.1:8400/callback';

/**
 * `people-flow-roundtrips`: what one person's complete flow costs the database —
 * PAR → authorize → sign-in page → login → consent page → consent → code → token → refresh —
 * counted from Kysely's query log (the sealer is not running). A first flow warms the caches;
 * the second, by another person in a new browser (so a real sign-in and a first consent), is the
 * one counted. Two figures, overall and per step (a step ends when the audit queue is flushed):
 *
 * - `statements`: every statement sent, BEGIN and COMMIT (or ROLLBACK) included, the audit
 *   events' group commits too.
 * - `round_trips`: one per transaction (BEGIN … COMMIT counts 1, whatever it holds) plus one per
 *   statement outside a transaction. That is what the flow costs in network round trips to
 *   PostgreSQL when a transaction's statements are pipelined (sent together, the answers read
 *   together). It is a lower bound for a transaction whose later statements depend on an
 *   earlier one's answer (a conditional UPDATE deciding whether the INSERT after it runs): sent
 *   one by one, those pay a round trip each. On SQLite there is no network; the figure then
 *   tells how often the request waits for the database rather than what each wait costs.
 *
 * The count assumes the counted flow's statements do not interleave with other transactions
 * (it runs one request at a time; nothing else runs): a statement between BEGIN and COMMIT is
 * taken to belong to that transaction.
 *
 * SQLite by default; `FLOW_DATABASE_URL=postgres://…` runs it on PostgreSQL in a throwaway
 * schema (the audit writers' lock then shows as one more statement inside each transaction that
 * records events). `FLOW_SQL=1` prints every statement, indented inside transactions.
 */
export async function peopleFlowRoundTrips(): Promise<BenchLine> {
  const dir = mkdtempSync(join(tmpdir(), 'clearance-bench-flow-'));
  const port = await freePort();
  const config = loadConfig({ PORT: String(port), HOST: '127.0.0.1', CLEARANCE_ISSUER: `http://127.0.0.1:${port}`, CLEARANCE_DATA_DIR: dir });
  let counting = false;
  let statements = 0;
  let roundTrips = 0;
  let inTransaction = false;
  const count = (q: string) => {
    statements++;
    const keyword = /^\s*(\w+)/.exec(q)?.[1]?.toLowerCase();
    if (keyword === 'begin') {
      inTransaction = true;
      roundTrips++;
    } else if (keyword === 'commit' || keyword === 'rollback') {
      inTransaction = false;
    } else if (!inTransaction) {
      roundTrips++;
    }
    if (process.env.FLOW_SQL) console.error(`   SQL ${inTransaction || keyword === 'commit' || keyword === 'rollback' ? '  ' : ''}`, q.slice(0, 110).replace(/\s+/g, ' '));
  };
  const onQuery = (q: string) => {
    if (counting) count(q);
  };
  const pgUrl = process.env.FLOW_DATABASE_URL;
  const pgSchema = `bench_flow_${randomBytes(6).toString('hex')}`;
  if (pgUrl) await adminQuery(pgUrl, `create schema ${pgSchema}`);
  const storage = openStorage(pgUrl ? { databaseUrl: pgUrl, pgSchema, onQuery } : { ...storageOptionsFor(config), onQuery });
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
    const steps: Record<string, { statements: number; roundTrips: number }> = {};
    await runFlow(config.issuer, secret, ['bob', 'correct-horse-battery-43'], async (step) => {
      await (ctx.audit as { flush?: () => Promise<void> }).flush?.();
      if (process.env.FLOW_SQL) console.error('-- step', step, 'statements', statements, 'round_trips', roundTrips);
      steps[step] = { statements, roundTrips };
      statements = 0;
      roundTrips = 0;
    }, () => (counting = true));
    const sum = (pick: (s: { statements: number; roundTrips: number }) => number) => Object.values(steps).reduce((a, s) => a + pick(s), 0);
    return {
      scenario: 'people-flow-roundtrips',
      database: pgUrl ? 'postgres' : 'sqlite',
      statements: sum((s) => s.statements),
      round_trips: sum((s) => s.roundTrips),
      ...Object.fromEntries(Object.entries(steps).flatMap(([k, v]) => [[`step_${k}`, v.statements], [`step_${k}_round_trips`, v.roundTrips]])),
    };
  } finally {
    await app.close();
    await (ctx.audit as { close?: () => Promise<void> }).close?.();
    await storage.close();
    if (pgUrl) await adminQuery(pgUrl, `drop schema if exists ${pgSchema} cascade`);
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
