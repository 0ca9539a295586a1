/**
 * Database faults over HTTP (issue 20, docs/operations.md "Failure model"): a lost connection, a
 * database that stops answering, a locked SQLite file. The server must keep running, answer a
 * fast JSON 503 `temporarily_unavailable` while it cannot reach the database, recover by itself,
 * and never acknowledge a token without its audit event; the audit log must still verify.
 *
 * The PostgreSQL half runs each test in a schema of its own and touches only its own sessions
 * (found by an application_name unique to the test, or by the schema's sealer lock); a paused
 * database is a TCP proxy that stops passing bytes on. The machine's PostgreSQL is never stopped.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { DatabaseSync } from 'node:sqlite';
import { describe, test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { AuditKeys } from '../../src/audit/audit-key.ts';
import { verifyStore } from '../../src/audit/verify.ts';
import { systemClock } from '../../src/clock.ts';
import { openStorage, type Storage } from '../../src/storage/database.ts';
import { DatabaseUnavailableError, isDatabaseUnavailable } from '../../src/storage/faults.ts';
import { isSqliteBusy } from '../../src/storage/node-sqlite-driver.ts';
import { eventually } from '../helpers/eventually.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { testDatabaseUrl } from '../helpers/storage.ts';
import { startTcpProxy } from '../helpers/tcp-proxy.ts';

const api = 'https://orders.example.com/api';

const configuration = {
  resource_servers: [{ identifier: api, scopes: ['order:create'] }],
  clients: [
    {
      client_id: 'loader',
      kind: 'service',
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['client_credentials'],
      scope: 'order:create',
    },
  ],
};

interface TokenOutcome {
  status: number;
  /** When the request was sent (Date.now()), and how long it took. */
  at: number;
  ms: number;
  /** The jti of the access token, on 200. */
  jti?: string;
  /** The `error` member, on anything else. */
  error?: string;
  cacheControl: string | null;
}

/** One client_credentials request to `base`. */
async function requestToken(base: string, secret: string): Promise<TokenOutcome> {
  const at = Date.now();
  const started = performance.now();
  const response = await fetch(`${base}/token`, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(`loader:${secret}`).toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'order:create', resource: api }),
  });
  const body = (await response.json()) as { access_token?: string; error?: string };
  const outcome: TokenOutcome = { status: response.status, at, ms: performance.now() - started, cacheControl: response.headers.get('cache-control') };
  if (response.status === 200) {
    const payload = JSON.parse(Buffer.from(body.access_token!.split('.')[1]!, 'base64url').toString()) as { jti: string };
    outcome.jti = payload.jti;
  } else {
    outcome.error = body.error;
  }
  return outcome;
}

/** `concurrency` loops per base URL requesting tokens until `done()`; every outcome, in order of completion. */
async function load(bases: string[], secret: string, done: () => boolean, concurrency = 4): Promise<TokenOutcome[]> {
  const outcomes: TokenOutcome[] = [];
  await Promise.all(
    bases.flatMap((base) =>
      Array.from({ length: concurrency }, async () => {
        while (!done()) outcomes.push(await requestToken(base, secret));
      }),
    ),
  );
  return outcomes;
}

/** Only 200s and JSON 503 `temporarily_unavailable` with no-store: never a 500, never a hang. */
function assertOnlySuccessOrUnavailable(outcomes: TokenOutcome[]): void {
  const other = outcomes.filter((o) => o.status !== 200 && !(o.status === 503 && o.error === 'temporarily_unavailable'));
  assert.deepEqual(other.map((o) => `${o.status} ${o.error}`), []);
  for (const o of outcomes) if (o.status === 503) assert.equal(o.cacheControl, 'no-store');
}

async function readyz(base: string): Promise<{ status: number; ms: number }> {
  const started = performance.now();
  const response = await fetch(`${base}/readyz`);
  await response.arrayBuffer();
  return { status: response.status, ms: performance.now() - started };
}

/** `eventually`, looked at every 100 ms (each look may be a request or a verification). */
function until(what: string, condition: () => Promise<boolean>, withinMs: number): Promise<number> {
  return eventually(condition, what, { withinMs, everyMs: 100 });
}

/** BEGIN IMMEDIATE on `db`: true once it holds the write lock, false while SQLite answers busy. */
function beginImmediate(db: DatabaseSync): boolean {
  try {
    db.exec('BEGIN IMMEDIATE');
    return true;
  } catch (error) {
    if (isSqliteBusy(error)) return false;
    throw error;
  }
}

describe('database faults on SQLite', () => {
  test('answers 503 temporarily_unavailable after the busy timeout while another connection holds the write lock, then serves again', async (t) => {
    const server = await startTestServer({ t, env: { CLEARANCE_SQLITE_BUSY_TIMEOUT_MS: '300' } });
    await server.apply(configuration);
    const secret = server.secrets.loader!;
    assert.equal((await requestToken(server.running.url, secret)).status, 200);

    // Another process (the CLI, a backup tool) takes the write lock and keeps it.
    const file = server.running.ctx.storage.location.replace(/^sqlite:/, '');
    const other = new DatabaseSync(file);
    t.after(() => other.close());
    // It waits its turn for the lock, as the CLI does: the server's sealer writes ten times a second,
    // and on a loaded machine one busy timeout can pass without a free moment (seen once in CI:
    // "database is locked" from BEGIN IMMEDIATE), so it tries again until it has the lock.
    other.exec('PRAGMA busy_timeout = 1000');
    await eventually(() => beginImmediate(other), 'the other connection holding the write lock', { withinMs: 30_000, everyMs: 1 });
    const locked = await requestToken(server.running.url, secret);
    assert.equal(locked.status, 503);
    assert.equal(locked.error, 'temporarily_unavailable');
    assert.equal(locked.cacheControl, 'no-store');
    assert.ok(locked.ms < 2000, `answered in ${Math.round(locked.ms)} ms`);
    // Readers are not blocked by a writer (WAL): the server is still ready.
    assert.equal((await readyz(server.running.url)).status, 200);

    other.exec('ROLLBACK');
    assert.equal((await requestToken(server.running.url, secret)).status, 200);
  });
});

test('recognises database faults, and nothing else, as the database being unavailable', () => {
  const withCode = (message: string, code: string) => Object.assign(new Error(message), { code });
  for (const fault of [
    withCode('terminating connection due to administrator command', '57P01'),
    withCode('canceling statement due to statement timeout', '57014'),
    withCode('connection failure', '08006'),
    withCode('read ECONNRESET', 'ECONNRESET'),
    new Error('Connection terminated unexpectedly'),
    new Error('timeout exceeded when trying to connect'),
    new DatabaseUnavailableError('the database did not answer within 1500 ms'),
    Object.assign(new Error('database is locked'), { code: 'ERR_SQLITE_ERROR', errcode: 5 }),
    new Error('the batch failed', { cause: withCode('read ECONNRESET', 'ECONNRESET') }),
    new AggregateError([withCode('connect ECONNREFUSED ::1:5432', 'ECONNREFUSED')], 'connect failed'),
  ]) {
    assert.equal(isDatabaseUnavailable(fault), true, fault.message);
  }
  for (const bug of [
    withCode('duplicate key value violates unique constraint', '23505'),
    withCode('relation "x" does not exist', '42P01'),
    Object.assign(new Error('UNIQUE constraint failed'), { code: 'ERR_SQLITE_ERROR', errcode: 19 }),
    new TypeError("Cannot read properties of undefined (reading 'x')"),
  ]) {
    assert.equal(isDatabaseUnavailable(bug), false, bug.message);
  }
});

/** One test's PostgreSQL setup: a schema of its own, N server nodes on it, and checks. */
interface PgCluster {
  schema: string;
  /** The application_name of this test's Clearance sessions (and of nobody else's). */
  appName: string;
  nodes: TestServer[];
  bases: string[];
  secret: string;
  /** Terminates this test's Clearance sessions (all of them, or the sealer's); returns how many. */
  terminate(which: 'all' | 'sealer'): Promise<number>;
  /** The pid of the session holding this schema's sealer lock, if any. */
  sealerPid(): Promise<number | undefined>;
  /** Waits until every recorded event is sealed and the log verifies; returns the events' jtis. */
  sealedAndVerified(): Promise<Set<string>>;
}

async function pgCluster(
  t: TestContext,
  options: { nodes: number; env?: NodeJS.ProcessEnv; through?: (url: URL) => URL },
): Promise<PgCluster> {
  const schema = `test_${randomBytes(8).toString('hex')}`;
  const appName = `clearance-fault-${schema}`;
  const admin = new pg.Client({ connectionString: testDatabaseUrl });
  await admin.connect();
  await admin.query(`create schema ${schema}`);
  // Runs last (after hooks run in reverse order of registration): the servers are closed first.
  t.after(async () => {
    await admin.query(`drop schema ${schema} cascade`);
    await admin.end();
  });
  const direct = new URL(testDatabaseUrl!);
  direct.searchParams.set('options', `-c search_path=${schema}`);
  direct.searchParams.set('application_name', appName);
  const url = options.through ? options.through(new URL(direct)) : direct;
  const masterKey = randomBytes(32).toString('hex');
  const env = {
    DATABASE_URL: url.toString(),
    // One issuer and one master key: the nodes of one deployment.
    CLEARANCE_ISSUER: 'http://127.0.0.1:9',
    CLEARANCE_MASTER_KEY: masterKey,
    CLEARANCE_DB_POOL_SIZE: '4',
    ...options.env,
  };
  const nodes: TestServer[] = [];
  for (let i = 0; i < options.nodes; i++) nodes.push(await startTestServer({ t, env }));
  await nodes[0]!.apply(configuration);
  // The other nodes see the configuration within their cache interval (a second).
  for (const node of nodes) {
    await until('every node to know the client', async () => (await requestToken(node.running.url, nodes[0]!.secrets.loader!)).status === 200, 5000);
  }
  const check: Storage = openStorage({ databaseUrl: testDatabaseUrl, pgSchema: schema, poolSize: 1, applicationName: `${appName}-check` });
  t.after(() => check.close());
  const keys = new AuditKeys(check.db, Buffer.from(masterKey, 'hex'), systemClock);
  const lockHolder = `select pid from pg_locks where locktype = 'advisory' and granted
    and objid = (hashtextextended('clearance.audit.sealer:' || $1, 0) & 4294967295)::oid`;
  const cluster: PgCluster = {
    schema,
    appName,
    nodes,
    bases: nodes.map((n) => n.running.url),
    secret: nodes[0]!.secrets.loader!,
    async terminate(which) {
      const { rows } =
        which === 'all'
          ? await admin.query('select pg_terminate_backend(pid) as done from pg_stat_activity where application_name = $1', [appName])
          : await admin.query(`select pg_terminate_backend(pid) as done from pg_stat_activity where application_name = $2 and pid in (${lockHolder})`, [schema, appName]);
      return rows.filter((r: { done: boolean }) => r.done).length;
    },
    async sealerPid() {
      const { rows } = await admin.query<{ pid: number }>(lockHolder, [schema]);
      return rows[0]?.pid;
    },
    async sealedAndVerified() {
      let report: Awaited<ReturnType<typeof verifyStore>> | undefined;
      await until(
        'the audit log to be sealed',
        async () => {
          report = await verifyStore(check.db, { keys: await keys.publicKeys() });
          return report.ok && report.unsealed === 0 && report.leaves > 0;
        },
        15_000,
      );
      assert.equal(report!.ok, true, report!.problem?.message);
      const rows = await check.db.selectFrom('audit_events').select('event').where('type', '=', 'token.issued').execute();
      return new Set(rows.map((r) => (JSON.parse(r.event) as { details: { jti: string } }).details.jti));
    },
  };
  return cluster;
}

/** Every token a client received has its `token.issued` event in the log. */
function assertEveryAcknowledgedTokenAudited(outcomes: TokenOutcome[], audited: Set<string>): void {
  const acknowledged = outcomes.filter((o) => o.status === 200).map((o) => o.jti!);
  assert.ok(acknowledged.length > 0);
  assert.deepEqual(acknowledged.filter((jti) => !audited.has(jti)), [], 'every acknowledged token has its audit event');
}

for (const nodeCount of [1, 2]) {
  const setup = nodeCount === 1 ? 'one node' : 'two nodes on one schema';
  describe(`PostgreSQL faults, ${setup}`, { skip: !testDatabaseUrl && 'TEST_DATABASE_URL is not set' }, () => {
    test('keeps serving while its connections are terminated under load, acknowledges nothing unaudited, and the log verifies', async (t) => {
      const cluster = await pgCluster(t, { nodes: nodeCount });
      let stop = false;
      const running = load(cluster.bases, cluster.secret, () => stop);
      let terminated = 0;
      for (let i = 0; i < 6; i++) {
        await sleep(250);
        terminated += await cluster.terminate('all');
      }
      await sleep(250);
      stop = true;
      const outcomes = await running;
      assert.ok(terminated >= 6, `terminated ${terminated} sessions`);
      assertOnlySuccessOrUnavailable(outcomes);
      // Still serving, on every node, with new connections.
      for (const base of cluster.bases) {
        const after = await requestToken(base, cluster.secret);
        assert.equal(after.status, 200);
        outcomes.push(after);
      }
      assertEveryAcknowledgedTokenAudited(outcomes, await cluster.sealedAndVerified());
    });

    test("resumes sealing when the sealer's connection is terminated, with no gap", async (t) => {
      const cluster = await pgCluster(t, { nodes: nodeCount });
      await until('a node to hold the sealer lock', async () => (await cluster.sealerPid()) !== undefined, 5000);
      const first = await cluster.sealerPid();
      let stop = false;
      const running = load(cluster.bases, cluster.secret, () => stop, 2);
      await sleep(300);
      assert.equal(await cluster.terminate('sealer'), 1);
      // The lock went with the session; a node takes it again on a new connection.
      await until('a node to take the sealer lock again', async () => ((await cluster.sealerPid()) ?? first) !== first, 8000);
      await sleep(300);
      stop = true;
      const outcomes = await running;
      assertOnlySuccessOrUnavailable(outcomes);
      assertEveryAcknowledgedTokenAudited(outcomes, await cluster.sealedAndVerified());
    });

    test('answers fast 503s and /readyz 503 while the database does not answer, and recovers by itself', async (t) => {
      const upstream = new URL(testDatabaseUrl!);
      const proxy = await startTcpProxy({ t, host: upstream.hostname, port: Number(upstream.port || 5432) });
      const cluster = await pgCluster(t, {
        nodes: nodeCount,
        through: (url) => {
          url.hostname = '127.0.0.1';
          url.port = String(proxy.port);
          return url;
        },
        env: { CLEARANCE_DB_STATEMENT_TIMEOUT_MS: '500', CLEARANCE_DB_ACQUIRE_TIMEOUT_MS: '500', CLEARANCE_READY_TIMEOUT_MS: '300' },
      });
      const before: TokenOutcome[] = [];
      for (const base of cluster.bases) before.push(await requestToken(base, cluster.secret));
      assert.deepEqual(before.map((o) => o.status), cluster.bases.map(() => 200));
      for (const base of cluster.bases) assert.equal((await readyz(base)).status, 200);

      proxy.pause();
      const pausedAt = Date.now();
      const during = await load(cluster.bases, cluster.secret, () => Date.now() - pausedAt > 3000, 3);
      const ready = await Promise.all(cluster.bases.map((base) => readyz(base)));
      proxy.resume();

      assertOnlySuccessOrUnavailable(during);
      const unavailable = during.filter((o) => o.status === 503);
      assert.ok(unavailable.length >= nodeCount, 'requests fail while the database does not answer');
      // Bounded by the timeouts (0.5 s statement + 1 s grace, 0.5 s acquire), far from hanging...
      const slowest = Math.max(...during.map((o) => o.ms));
      assert.ok(slowest < 4000, `slowest answer took ${Math.round(slowest)} ms`);
      // ...and once a connection has been given up, refused at once instead of waiting them out.
      const later = during.filter((o) => o.at > pausedAt + 2000);
      assert.ok(later.length > 0);
      const slowestLater = Math.max(...later.map((o) => o.ms));
      assert.ok(slowestLater < 300, `once known down, the slowest answer took ${Math.round(slowestLater)} ms`);
      for (const r of ready) {
        assert.equal(r.status, 503);
        assert.ok(r.ms < 1500, `/readyz took ${Math.round(r.ms)} ms`);
      }

      // Back by itself: ready again, tokens again, sealing again.
      for (const base of cluster.bases) await until('/readyz to answer 200', async () => (await readyz(base)).status === 200, 5000);
      const after: TokenOutcome[] = [];
      for (const base of cluster.bases) {
        await until('a token again', async () => {
          const outcome = await requestToken(base, cluster.secret);
          after.push(outcome);
          return outcome.status === 200;
        }, 5000);
      }
      assertOnlySuccessOrUnavailable(after);
      assertEveryAcknowledgedTokenAudited([...before, ...during, ...after], await cluster.sealedAndVerified());
    });
  });
}
