/**
 * `clearance start --workers 2` from the outside, as an operator runs it: the real entry point in a
 * child process on a fresh store (a SQLite data directory; a PostgreSQL schema of its own when
 * TEST_DATABASE_URL is set), driven over HTTP, each request on a connection of its own so that the
 * cluster hands them to both workers. Which worker served what is read afterwards from the audit
 * log, whose events name the process that recorded them (`node`), not from anything the server
 * tells its clients.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { main } from '../../src/cli/main.ts';
import { openStorage, type StorageOptions } from '../../src/storage/database.ts';
import { childrenOf, clientCredentialsRequest, startNode, type LogLine } from '../helpers/cluster.ts';
import { freePort } from '../helpers/server.ts';
import { adminQuery, testDatabaseUrl } from '../helpers/storage.ts';

const resource = 'https://orders.cluster.example/api';

interface Cluster {
  origin: string;
  env: NodeJS.ProcessEnv;
  storage: StorageOptions;
  primary: ChildProcess;
  exited: Promise<[number | null, NodeJS.Signals | null]>;
  /** The first log line with this msg (and matching `where`) from now or earlier; fails if the primary exits first. */
  logLine(msg: string, where?: (line: LogLine) => boolean): Promise<LogLine>;
  logged: LogLine[];
  stderr(): string;
}

/** Starts `clearance start --workers 2` on an empty store; resolves once the primary says it listens. */
async function startCluster(database: 'sqlite' | 'postgres', cleanups: (() => Promise<void> | void)[]): Promise<Cluster> {
  const dataDir = mkdtempSync(join(tmpdir(), 'clearance-cluster-'));
  cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
  const port = await freePort();
  const origin = `http://127.0.0.1:${port}`;
  // Development mode with no master key: the primary generates it into the data directory before
  // any worker starts, as it creates the signing and audit keys.
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, PORT: String(port), HOST: '127.0.0.1', CLEARANCE_ISSUER: origin, CLEARANCE_DATA_DIR: dataDir, LOG_LEVEL: 'debug' };
  let storage: StorageOptions = { dataDir };
  if (database === 'postgres') {
    const schema = `test_cluster_${randomBytes(6).toString('hex')}`;
    await adminQuery(testDatabaseUrl!, `create schema ${schema}`);
    cleanups.push(() => adminQuery(testDatabaseUrl!, `drop schema if exists ${schema} cascade`));
    const url = new URL(testDatabaseUrl!);
    url.searchParams.set('options', `-c search_path=${schema}`);
    env.DATABASE_URL = url.toString();
    storage = { databaseUrl: testDatabaseUrl, pgSchema: schema };
  }
  const node = await startNode(env, port, cleanups, ['--workers', '2']);
  const listening = await node.logLine('clearance is listening');
  assert.equal(listening.workers, 2);
  return { origin, env, storage, primary: node.process, exited: node.exited, logLine: node.logLine, logged: node.logged, stderr: node.stderr };
}

/** One HTTP request on a connection of its own (closed after), so the cluster hands it to the next worker. */
function send(origin: string, method: string, path: string, body?: string): Promise<{ status: number; json: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request(`${origin}${path}`, { method, agent: false, headers: body === undefined ? {} : { 'content-type': 'application/x-www-form-urlencoded' } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode!, json: text ? (JSON.parse(text) as Record<string, unknown>) : {} }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** A client_credentials request with a fresh ES256 client assertion (RFC 7523 §2.2) of `clientId`. */
function tokenRequest(origin: string, clientId: string, key: KeyObject, scope = 'order:create'): string {
  return clientCredentialsRequest({ issuer: origin, clientId, key, resource, scope });
}

/** The audit events of the store, parsed, in commit order. */
async function auditEvents(options: StorageOptions): Promise<LogLine[]> {
  const storage = openStorage(options);
  try {
    const rows = await storage.db.selectFrom('audit_events').select('event').orderBy('seq').execute();
    return rows.map((row) => JSON.parse(row.event) as LogLine);
  } finally {
    await storage.close();
  }
}

async function cli(env: NodeJS.ProcessEnv, ...args: string[]): Promise<{ code: number; out: string }> {
  const lines: string[] = [];
  const code = await main(args, env, { out: (l) => lines.push(l), err: (l) => lines.push(l) });
  return { code, out: lines.join('\n') };
}

for (const database of ['sqlite', 'postgres'] as const) {
  describe(`clearance start --workers 2 on ${database}`, { skip: database === 'postgres' && !testDatabaseUrl ? 'TEST_DATABASE_URL is not set' : false, timeout: 180_000 }, () => {
    const cleanups: (() => Promise<void> | void)[] = [];
    let cluster: Cluster;
    const client = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const guessed = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const wrongKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;

    before(async () => {
      cluster = await startCluster(database, cleanups);
    });
    after(async () => {
      for (const cleanup of cleanups.reverse()) await cleanup();
    });

    test('creates one signing key on a fresh store, which every worker publishes', async () => {
      const kids = new Set<string>();
      for (let i = 0; i < 6; i++) {
        const { status, json } = await send(cluster.origin, 'GET', '/jwks');
        assert.equal(status, 200);
        const keys = json.keys as { kid: string }[];
        assert.equal(keys.length, 1);
        kids.add(keys[0]!.kid);
      }
      assert.equal(kids.size, 1);
      assert.equal(childrenOf(cluster.primary.pid!).length, 2, 'two workers');
    });

    test('issues tokens from both workers, with clients applied while it runs', async () => {
      const file = join(String(cluster.env.CLEARANCE_DATA_DIR), 'clients.json');
      const jwk = (key: KeyObject, kid: string) => ({ ...key.export({ format: 'jwk' }), kid, alg: 'ES256' });
      const definition = (id: string, key: KeyObject) => ({
        client_id: id,
        token_endpoint_auth_method: 'private_key_jwt',
        jwks: { keys: [jwk(key, `${id}-1`)] },
        grant_types: ['client_credentials'],
        scope: 'order:create order:cancel',
      });
      writeFileSync(
        file,
        JSON.stringify({
          resource_servers: [{ identifier: resource, scopes: ['order:create', 'order:cancel'], access_token_ttl: 300 }],
          clients: [definition('cluster-client', client.publicKey), definition('guessed-client', guessed.publicKey)],
        }),
      );
      const applied = await cli(cluster.env, 'apply', '-f', file);
      assert.equal(applied.code, 0, applied.out);
      // Every worker's caches see the change within a second (their generation counters). Waited
      // out rather than polled: a refused request would count against the client's throttle.
      await new Promise((r) => setTimeout(r, 1100));

      const responses = [];
      for (let batch = 0; batch < 5; batch++) {
        responses.push(...(await Promise.all(Array.from({ length: 8 }, () => send(cluster.origin, 'POST', '/token', tokenRequest(cluster.origin, 'cluster-client', client.privateKey))))));
      }
      assert.deepEqual(responses.map((r) => r.status), new Array(40).fill(200));
    });

    test('refuses a client assertion replayed on the other worker', async () => {
      const body = tokenRequest(cluster.origin, 'cluster-client', client.privateKey, 'order:cancel');
      const statuses = [];
      for (let i = 0; i < 6; i++) {
        const { status, json } = await send(cluster.origin, 'POST', '/token', body);
        statuses.push(status);
        if (status !== 200) assert.equal(json.error, 'invalid_client');
      }
      assert.equal(statuses.filter((s) => s === 200).length, 1, `one use: ${statuses.join(', ')}`);
    });

    test('counts failed client authentications once for the node, not once per worker', async () => {
      const statuses = [];
      for (let i = 0; i < 14; i++) statuses.push((await send(cluster.origin, 'POST', '/token', tokenRequest(cluster.origin, 'guessed-client', wrongKey))).status);
      // 10 failures naming a client from one address per 60 s (src/clients/authentication/throttle.ts);
      // counters per worker would have allowed 20.
      assert.deepEqual(statuses, [...new Array(10).fill(401), ...new Array(4).fill(429)]);
    });

    test('answers /metrics with every worker’s counts summed, whichever worker the scrape reaches', async () => {
      const scraper = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const file = join(String(cluster.env.CLEARANCE_DATA_DIR), 'scraper.json');
      writeFileSync(
        file,
        JSON.stringify({
          clients: [{ client_id: 'scraper', token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [{ ...scraper.publicKey.export({ format: 'jwk' }), kid: 'scraper-1', alg: 'ES256' }] }, grant_types: ['client_credentials'], scope: 'metrics:read' }],
        }),
      );
      assert.equal((await cli(cluster.env, 'apply', '-f', file)).code, 0);
      await new Promise((r) => setTimeout(r, 1100));
      // Each scrape on a connection of its own: the cluster hands them to both workers in turn.
      const scrape = async () => {
        const grant = await send(cluster.origin, 'POST', '/token', clientCredentialsRequest({ issuer: cluster.origin, clientId: 'scraper', key: scraper.privateKey, resource: `${cluster.origin}/admin`, scope: 'metrics:read' }));
        assert.equal(grant.status, 200, JSON.stringify(grant.json));
        const response = await fetch(`${cluster.origin}/metrics`, { headers: { authorization: `Bearer ${String(grant.json.access_token)}`, connection: 'close' } });
        assert.equal(response.status, 200);
        const text = await response.text();
        const issued = /^clearance_tokens_issued_total\{grant_type="client_credentials"\} (\d+)$/m.exec(text);
        assert.ok(issued, text.slice(0, 500));
        assert.doesNotMatch(text, /clearance_metrics_aggregation_failed/);
        assert.equal(text.match(/^# TYPE clearance_audit_seal_lag_events gauge$/gm)?.length, 1, 'the database facts once, not once per worker');
        return Number(issued[1]);
      };
      const first = await scrape();
      const second = await scrape();
      // Between two scrapes the cluster issued exactly one token (the second scrape's own), whichever
      // worker counted it and whichever answered: the counts are the cluster's, not one worker's.
      assert.equal(second - first, 1);
      // 40 + the replay test's 1 + the scrapes' 2, at least: more than either worker issued alone.
      assert.ok(second >= 43, String(second));
    });

    test('starts another worker when one is killed, and goes on serving', async () => {
      const workers = childrenOf(cluster.primary.pid!);
      assert.equal(workers.length, 2);
      const exitedWorker = cluster.logLine('worker exited; starting another', (line) => line.pid === workers[0]);
      process.kill(workers[0]!, 'SIGKILL');
      const exit = await exitedWorker;
      assert.equal(exit.signal, 'SIGKILL');
      await cluster.logLine('worker is listening', (line) => Number(String(line.node).split(':').pop()) !== workers[0] && Number(String(line.node).split(':').pop()) !== workers[1]);
      const now = childrenOf(cluster.primary.pid!);
      assert.equal(now.length, 2);
      assert.ok(now.includes(workers[1]!) && !now.includes(workers[0]!));
      for (let i = 0; i < 6; i++) assert.equal((await send(cluster.origin, 'POST', '/token', tokenRequest(cluster.origin, 'cluster-client', client.privateKey))).status, 200);
    });

    test('on SIGTERM finishes the request in flight, stops every worker and exits 0', async () => {
      const workers = childrenOf(cluster.primary.pid!);
      // An in-flight request on a keep-alive connection: headers and half the body sent.
      const url = new URL(cluster.origin);
      const socket = connect(Number(url.port), url.hostname);
      await once(socket, 'connect');
      let response = '';
      socket.on('data', (chunk) => (response += chunk));
      const socketClosed = once(socket, 'close');
      const body = tokenRequest(cluster.origin, 'cluster-client', client.privateKey);
      socket.write(`POST /token HTTP/1.1\r\nHost: ${url.host}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 40)}`);
      await cluster.logLine('incoming request', (line) => (line.req as { method?: string } | undefined)?.method === 'POST' && !cluster.logged.some((l) => l.reqId === line.reqId && l.msg === 'request completed'));

      cluster.primary.kill('SIGTERM');
      // Each worker is closing (it logs so as it starts closing), not only the primary: the
      // primary's line comes before the workers even receive its SIGTERM.
      for (const pid of [cluster.primary.pid!, ...workers]) {
        await cluster.logLine('shutting down: no new connections, finishing in-flight requests', (line) => String(line.node).endsWith(`:${pid}`));
      }
      socket.write(body.slice(40));
      const [code, signal] = await cluster.exited;
      await socketClosed;
      assert.equal(signal, null);
      assert.equal(code, 0, cluster.stderr());
      assert.match(response, /^HTTP\/1\.1 200 OK\r\n/, 'the in-flight request got its token');
      assert.match(response, /\r\nconnection: close\r\n/i);
      assert.deepEqual(childrenOf(cluster.primary.pid!), []);
      for (const pid of workers) assert.throws(() => process.kill(pid, 0), 'the worker is gone');
    });

    test('leaves one audit log that verifies, with the events of each worker and the replay refused by the other', async () => {
      const verified = await cli(cluster.env, 'audit', 'verify');
      assert.equal(verified.code, 0, verified.out);
      assert.match(verified.out, /intact/);
      assert.doesNotMatch(verified.out, /not sealed/, 'the primary sealed everything before it exited');

      const events = await auditEvents(cluster.storage);
      const issued = events.filter((e) => e.type === 'token.issued' && e.client === 'cluster-client');
      assert.equal(issued.length, 40 + 1 + 6 + 1);
      const nodes = new Set(issued.map((e) => e.node));
      assert.ok(nodes.size >= 3, `tokens issued by ${nodes.size} processes: both workers, and the one started after the kill`);
      const replayed = issued.find((e) => (e.scopes as string[]).includes('order:cancel'))!;
      const refusals = events.filter((e) => e.type === 'client.auth_failed' && e.client === 'cluster-client');
      assert.equal(refusals.length, 5, JSON.stringify(refusals.map((e) => e.decision)));
      assert.ok(refusals.every((e) => /already used/.test(JSON.stringify(e.decision))), JSON.stringify(refusals.map((e) => e.decision)));
      assert.ok(refusals.some((e) => e.node !== replayed.node), 'a worker that did not issue the token refused its assertion');
      const keys = openStorage(cluster.storage);
      try {
        assert.equal((await keys.db.selectFrom('signing_keys').select('kid').execute()).length, 1, 'one signing key');
        assert.equal((await keys.db.selectFrom('audit_keys').select('key_id').execute()).length, 1, 'one audit key');
      } finally {
        await keys.close();
      }
    });
  });
}
