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
 * `people-flow-roundtrips`: what one person's flows cost the database, counted from the storage's
 * statement log (`onQuery`; the sealer is not running). A first flow by alice warms the caches and
 * prepared statements; then bob, in a new browser, is counted:
 *
 * - the first-time flow — PAR → authorize → sign-in page → login → consent page → consent →
 *   code → token: a real sign-in and a first consent. Its total is `round_trips`;
 * - `refresh`: the refresh grant with the refresh token just issued (reported apart:
 *   `refresh_round_trips`);
 * - the returning person — a second PAR and /authorize in the same browser, whose live session
 *   and remembered consent give the code at once (no sign-in, no consent page), then the token:
 *   `returning_round_trips`.
 * - failed sign-ins on a new sign-in page: an unknown username (`failed_unknown_user_…`, after one
 *   more that made the address's personal-data key, `step_failed_first_of_address_…`) and bob's
 *   username with a wrong password (`failed_wrong_password_…`): alike, or the database's work
 *   would tell which usernames exist.
 *
 * Three figures per step (a step ends when the audit queue is flushed), and their sums per flow:
 * - `statements`: every statement sent — BEGIN, COMMIT, the audit writers' lock, all of them;
 * - `transactions`: how many of them were BEGINs;
 * - `round_trips`: how often the request waited for an answer from the database. On PostgreSQL
 *   this is measured at the connection (postgres-pool.ts): a statement starts a round trip when
 *   its connection was waiting for no other answer as it was written; a statement written behind
 *   others (a flight: the connections are in pipeline mode, storage/flight.ts) has its answer read
 *   with theirs. BEGIN and COMMIT are statements like any other: a transaction whose statements
 *   are awaited one by one costs one round trip for each of them, BEGIN and COMMIT included. On
 *   SQLite (no network) the same rule is applied to the flights the code sends; the figure then
 *   says how often the request waits for the database, not what a wait costs.
 *
 * The flows run one request at a time and nothing else runs, so every statement belongs to the
 * request being counted. One kind is counted apart, `cache_checks`: a cache (clients, resource
 * servers, keys, policies, …) re-reads its generation counter at most once a second
 * (storage/generations.ts), on whichever request needs it next, and the master key watcher reads
 * the sealing key's state once a second on its timer — costs per second and process, not per flow,
 * which land in a step or not depending on how long the password hashing took.
 *
 * SQLite by default; `FLOW_DATABASE_URL=postgres://…` runs it on PostgreSQL in a throwaway schema
 * (where each transaction that records events also takes the audit writers' lock: one more
 * statement, in the same round trip). `FLOW_SQL=1` prints every statement, `→` where a round trip
 * starts.
 */
export async function peopleFlowRoundTrips(): Promise<BenchLine> {
  const dir = mkdtempSync(join(tmpdir(), 'clearance-bench-flow-'));
  const port = await freePort();
  const config = loadConfig({ PORT: String(port), HOST: '127.0.0.1', CLEARANCE_ISSUER: `http://127.0.0.1:${port}`, CLEARANCE_DATA_DIR: dir });
  let counting = false;
  const tally = { statements: 0, transactions: 0, roundTrips: 0 };
  let cacheChecks = 0;
  // roundTrip is undefined for a storage that does not tell (then every statement waits for its answer).
  const onQuery = (q: string, roundTrip?: boolean) => {
    if (!counting) return;
    // Once a second per process, not per flow: a cache's generation check, and the master key
    // watcher's look at the sealing key (src/keys/master-key-state.ts), on a timer of its own.
    if (/^select "value" from "generations" where "name" = /.test(q) || /^select \* from "master_key_root"/.test(q)) {
      cacheChecks++;
      if (process.env.FLOW_SQL) console.error('    (cache check)', q);
      return;
    }
    tally.statements++;
    if (/^\s*(begin|start transaction)\b/i.test(q)) tally.transactions++;
    if (roundTrip !== false) tally.roundTrips++;
    if (process.env.FLOW_SQL) console.error(`   ${roundTrip !== false ? '→' : ' '} `, q.slice(0, 110).replace(/\s+/g, ' '));
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
    // Warm-up by another person (caches, prepared statements), both flows; the counted flow then needs consent too.
    const warm = new HttpBrowser();
    await runFlow(config.issuer, secret, warm, ['alice', 'correct-horse-battery-42'], async () => {});
    await runReturningFlow(config.issuer, secret, warm, async () => {});
    const steps: Record<string, typeof tally> = {};
    const after = async (step: string) => {
      await (ctx.audit as { flush?: () => Promise<void> }).flush?.();
      if (process.env.FLOW_SQL) console.error('-- step', step, JSON.stringify(tally));
      steps[step] = { ...tally };
      Object.assign(tally, { statements: 0, transactions: 0, roundTrips: 0 });
    };
    const browser = new HttpBrowser();
    await runFlow(config.issuer, secret, browser, ['bob', 'correct-horse-battery-43'], after, () => (counting = true));
    await runReturningFlow(config.issuer, secret, browser, after);
    await runFailedSignIns(config.issuer, secret, new HttpBrowser(), 'bob', after);
    const flows: Record<string, string[]> = {
      '': ['par', 'authorize_to_login_page', 'login_to_consent_page', 'consent_to_code', 'token'],
      refresh_: ['refresh'],
      returning_: ['again_par', 'again_authorize_to_code', 'again_token'],
      failed_unknown_user_: ['failed_unknown_user'],
      failed_wrong_password_: ['failed_wrong_password'],
    };
    const sum = (names: string[], pick: (s: typeof tally) => number) => names.reduce((a, name) => a + pick(steps[name]!), 0);
    return {
      scenario: 'people-flow-roundtrips',
      database: pgUrl ? 'postgres' : 'sqlite',
      cache_checks: cacheChecks,
      ...Object.fromEntries(
        Object.entries(flows).flatMap(([prefix, names]) => [
          [`${prefix}round_trips`, sum(names, (s) => s.roundTrips)],
          [`${prefix}statements`, sum(names, (s) => s.statements)],
          [`${prefix}transactions`, sum(names, (s) => s.transactions)],
        ]),
      ),
      ...Object.fromEntries(
        Object.entries(steps).flatMap(([k, v]) => [
          [`step_${k}_round_trips`, v.roundTrips],
          [`step_${k}_statements`, v.statements],
          [`step_${k}_transactions`, v.transactions],
        ]),
      ),
    };
  } finally {
    await app.close();
    await (ctx.audit as { close?: () => Promise<void> }).close?.();
    await storage.close();
    if (pgUrl) await adminQuery(pgUrl, `drop schema if exists ${pgSchema} cascade`);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A first-time flow in `browser`: sign-in and consent, the code, the token, then a refresh. */
async function runFlow(
  issuer: string,
  secret: string,
  browser: HttpBrowser,
  [username, password]: [string, string],
  after: (step: string) => Promise<void>,
  start: () => void = () => {},
): Promise<void> {
  const form = clientForm(secret);
  start();
  const { request_uri, verifier } = await push(issuer, form);
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
  const tokens = await redeem(issuer, form, code, verifier);
  await after('token');
  const refreshed = await fetch(`${issuer}/token`, { method: 'POST', headers: form, body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token }) });
  if (refreshed.status !== 200) throw new Error(`refresh failed: ${await refreshed.text()}`);
  await after('refresh');
}

/**
 * The same person again in the same browser: PAR, then /authorize, which finds the live session
 * and the remembered consent and answers with the code at once (no page), then the token.
 */
async function runReturningFlow(issuer: string, secret: string, browser: HttpBrowser, after: (step: string) => Promise<void>): Promise<void> {
  const form = clientForm(secret);
  const { request_uri, verifier } = await push(issuer, form);
  await after('again_par');
  const { response, url } = await browser.follow(`${issuer}/authorize?client_id=desk-app&request_uri=${encodeURIComponent(request_uri)}`, issuer);
  const code = url.searchParams.get('code');
  if (response.status !== 303 || !code) throw new Error(`the returning person got no code at once (${response.status} at ${url.href})`);
  await after('again_authorize_to_code');
  await redeem(issuer, form, code, verifier);
  await after('again_token');
}

/**
 * Failed sign-ins on one sign-in page, each counted on its own: two usernames nobody holds, then
 * `username` with a wrong password. The last two should cost the database alike (the page and the
 * status are the same; the password hashing too).
 */
async function runFailedSignIns(issuer: string, secret: string, browser: HttpBrowser, username: string, after: (step: string) => Promise<void>): Promise<void> {
  const { request_uri } = await push(issuer, clientForm(secret));
  const { response, url } = await browser.follow(`${issuer}/authorize?client_id=desk-app&request_uri=${encodeURIComponent(request_uri)}`, issuer);
  let page = await response.text();
  await after('failed_page');
  // The first event about this address makes its personal-data key (src/audit/subject-keys.ts):
  // a cost of the address's first failure, whatever the username, counted apart.
  const attempts = [['failed_first_of_address', 'nobody-holds-this-name'], ['failed_unknown_user', 'nor-this-one'], ['failed_wrong_password', username]] as const;
  for (const [step, name] of attempts) {
    const body = new URLSearchParams({ csrf_token: csrfOf(page), username: name, password: 'not-the-password-1' }).toString();
    const failed = await browser.follow(`${url.href}/login`, issuer, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body });
    page = await failed.response.text();
    if (failed.response.status !== 401) throw new Error(`a failed sign-in answered ${failed.response.status}: ${page.slice(0, 400)}`);
    await after(step);
  }
}

function clientForm(secret: string): Record<string, string> {
  return { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`desk-app:${secret}`).toString('base64')}` };
}

/** PAR with a fresh PKCE verifier. */
async function push(issuer: string, form: Record<string, string>): Promise<{ request_uri: string; verifier: string }> {
  const verifier = randomBytes(32).toString('base64url');
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  const par = await fetch(`${issuer}/par`, {
    method: 'POST',
    headers: form,
    body: new URLSearchParams({ response_type: 'code', client_id: 'desk-app', redirect_uri: redirectUri, scope: 'openid order:create', code_challenge: challenge, code_challenge_method: 'S256', state: 's', nonce: 'n' }),
  });
  const { request_uri } = (await par.json()) as { request_uri: string };
  if (!request_uri) throw new Error(`PAR failed (${par.status})`);
  return { request_uri, verifier };
}

async function redeem(issuer: string, form: Record<string, string>, code: string, verifier: string): Promise<{ refresh_token: string }> {
  const token = await fetch(`${issuer}/token`, { method: 'POST', headers: form, body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: redirectUri, code_verifier: verifier }) });
  const tokens = (await token.json()) as { refresh_token?: string };
  if (!tokens.refresh_token) throw new Error(`no refresh token: ${JSON.stringify(tokens)}`);
  return { refresh_token: tokens.refresh_token };
}
