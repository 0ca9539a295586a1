/**
 * Two Clearance nodes — two `clearance start` processes, as an operator runs them behind a load
 * balancer — on one PostgreSQL and one Redis (docs/risk.md "Rate limits"): they share rate limits
 * and lockouts, and when Redis is killed each goes on limiting alone (per node, warned about, never
 * a 5xx) until Redis is back; and the workers of one `--workers 2` node count there directly.
 * Driven over HTTP; what each node did is read from its log lines.
 */
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, randomBytes, randomUUID, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'iovalkey';
import { main } from '../../src/cli/main.ts';
import { csrfOf, HttpBrowser } from '../helpers/http-browser.ts';
import { deleteKeys, ownRedisSkip, redisSkip, startOwnRedis, testRedisUrl, uniquePrefix } from '../helpers/redis.ts';
import { clientCredentialsRequest, startNode, type Cleanup, type Node } from '../helpers/cluster.ts';
import { freePort, freePorts } from '../helpers/server.ts';
import { adminQuery, testDatabaseUrl } from '../helpers/storage.ts';

const resource = 'https://orders.limits.example/api';
const redirectUri = 'http://127.0.0.1/callback';
const alicePassword = 'alice-correct-horse-42';

interface TwoNodes {
  a: Node;
  b: Node;
  issuer: string;
  /** The environment of a CLI command on the same store. */
  env: NodeJS.ProcessEnv;
  /** A client assertion of `limits-client` (private_key_jwt). */
  tokenRequest(): string;
}

/** Two nodes on a PostgreSQL schema of their own and the Redis at `redisUrl` (under a prefix of their own), configured. */
async function startTwoNodes(redisUrl: string, rateLimits: Record<string, unknown>, cleanups: Cleanup[]): Promise<TwoNodes> {
  const schema = `test_limits_${randomBytes(6).toString('hex')}`;
  await adminQuery(testDatabaseUrl!, `create schema ${schema}`);
  cleanups.push(() => adminQuery(testDatabaseUrl!, `drop schema if exists ${schema} cascade`));
  const url = new URL(testDatabaseUrl!);
  url.searchParams.set('options', `-c search_path=${schema}`);
  const dataDir = mkdtempSync(join(tmpdir(), 'clearance-limits-'));
  cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
  const prefix = uniquePrefix();
  cleanups.push(() => deleteKeys(redisUrl, prefix));
  const [portA, portB] = (await freePorts(2)) as [number, number];
  // One issuer, as behind a load balancer; each node on its own port.
  const issuer = `http://127.0.0.1:${portA}`;
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOST: '127.0.0.1',
    CLEARANCE_ISSUER: issuer,
    CLEARANCE_DATA_DIR: dataDir,
    CLEARANCE_MASTER_KEY: randomBytes(32).toString('hex'),
    DATABASE_URL: url.toString(),
    REDIS_URL: redisUrl,
    CLEARANCE_REDIS_PREFIX: prefix,
    // What is tested is counting in Redis, not its timeout: on a loaded machine (CI runs the suite
    // two files at a time) an answer can take longer than the 250 ms default, and a node would then
    // count that request in its own memory (the documented degradation, tested below).
    CLEARANCE_REDIS_TIMEOUT_MS: '5000',
    LOG_LEVEL: 'info',
  };
  // The first migrates the store; the second starts on it.
  const a = await startNode(env, portA, cleanups);
  const b = await startNode(env, portB, cleanups);
  // Both on Redis before anything is counted (on a busy machine a first connection may take a retry).
  await a.logLine(/^Redis (connected|answers again)/);
  await b.logLine(/^Redis (connected|answers again)/);

  const key = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  await applyConfig(env, dataDir, key.publicKey, rateLimits);
  return { a, b, issuer, env, tokenRequest: () => tokenRequest(issuer, key.privateKey) };
}

/** Applies the clients, alice and the rate limits with the CLI, as an operator would, and waits until every node has them. */
async function applyConfig(env: NodeJS.ProcessEnv, dataDir: string, publicKey: KeyObject, rateLimits: Record<string, unknown>): Promise<void> {
  const file = join(dataDir, 'config.json');
  writeFileSync(
    file,
    JSON.stringify({
      resource_servers: [{ identifier: resource, scopes: ['order:create'], access_token_ttl: 300 }],
      clients: [
        {
          client_id: 'limits-client',
          token_endpoint_auth_method: 'private_key_jwt',
          jwks: { keys: [{ ...publicKey.export({ format: 'jwk' }), kid: 'limits-1', alg: 'ES256' }] },
          grant_types: ['client_credentials'],
          scope: 'order:create',
        },
        { client_id: 'trading-ui', kind: 'app', token_endpoint_auth_method: 'none', grant_types: ['authorization_code'], redirect_uris: [redirectUri], scope: 'openid order:create' },
      ],
      users: [{ username: 'alice', name: 'Alice Trader', password: alicePassword }],
      rate_limits: rateLimits,
    }),
  );
  const lines: string[] = [];
  const code = await main(['apply', '-f', file], env, { out: (l) => lines.push(l), err: (l) => lines.push(l) });
  assert.equal(code, 0, lines.join('\n'));
  // Each process's caches see the change within a second (their generation counters).
  await new Promise((resolve) => setTimeout(resolve, 1100));
}

/** A client_credentials request of the limited client, with a fresh assertion signed with `privateKey`. */
function tokenRequest(issuer: string, privateKey: KeyObject): string {
  return clientCredentialsRequest({ issuer, clientId: 'limits-client', key: privateKey, kid: 'limits-1', resource });
}

interface Answer {
  node: 'a' | 'b';
  status: number;
  headers: Record<string, string | string[] | undefined>;
  json: Record<string, unknown>;
}

function post(node: Node, name: 'a' | 'b', path: string, body: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(`${node.origin}${path}`, { method: 'POST', agent: false, headers: { 'content-type': 'application/x-www-form-urlencoded' } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => (text += chunk));
      res.on('end', () => resolve({ node: name, status: res.statusCode!, headers: res.headers, json: text ? (JSON.parse(text) as Record<string, unknown>) : {} }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** `n` token requests at once, every other one at each node. */
function burst(nodes: TwoNodes, n: number): Promise<Answer[]> {
  return Promise.all(Array.from({ length: n }, (_, i) => (i % 2 === 0 ? post(nodes.a, 'a', '/token', nodes.tokenRequest()) : post(nodes.b, 'b', '/token', nodes.tokenRequest()))));
}

const allowed = (answers: Answer[], node?: 'a' | 'b') => answers.filter((a) => a.status === 200 && (node === undefined || a.node === node)).length;

/** A password sign-in at `node`: an authorization request there, its sign-in page, the form posted there. */
async function signInAt(node: Node, password: string): Promise<Response> {
  const browser = new HttpBrowser();
  const verifier = randomBytes(32).toString('base64url');
  const authorize = new URL(`${node.origin}/authorize`);
  for (const [name, value] of Object.entries({
    client_id: 'trading-ui',
    response_type: 'code',
    redirect_uri: redirectUri,
    scope: 'openid order:create',
    state: randomUUID(),
    code_challenge: createHash('sha256').update(verifier).digest('base64url'),
    code_challenge_method: 'S256',
  })) {
    authorize.searchParams.set(name, value);
  }
  const started = await browser.fetch(authorize);
  assert.equal(started.status, 303, await started.text());
  // The interaction's URL names the issuer; this browser stays on this node.
  const location = new URL(started.headers.get('location')!);
  const page = new URL(`${location.pathname}${location.search}`, node.origin);
  const signInPage = await browser.fetch(page);
  assert.equal(signInPage.status, 200);
  const body = new URLSearchParams({ csrf_token: csrfOf(await signInPage.text()), username: 'alice', password }).toString();
  return browser.fetch(`${page.origin}${page.pathname}/login`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body });
}

const twoNodesSkip = !testDatabaseUrl ? 'TEST_DATABASE_URL is not set: the two nodes share one PostgreSQL' : false;

describe('two nodes sharing one Redis', { skip: twoNodesSkip || redisSkip, timeout: 180_000 }, () => {
  const cleanups: Cleanup[] = [];
  let nodes: TwoNodes;
  before(async () => {
    nodes = await startTwoNodes(testRedisUrl, { client: { quota: 10, window: 3600 } }, cleanups);
  });
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  test('a burst over a client’s limit split across both nodes gets exactly the quota in all, and 429 from both', async () => {
    const answers = await burst(nodes, 30);
    assert.equal(allowed(answers), 10, answers.map((a) => `${a.node}:${a.status}`).join(' '));
    const refused = answers.filter((a) => a.status !== 200);
    assert.ok(refused.every((a) => a.status === 429 && a.json.error === 'temporarily_unavailable'), JSON.stringify(refused.map((a) => a.json)));
    assert.ok(refused.some((a) => a.node === 'a') && refused.some((a) => a.node === 'b'), 'both nodes refuse');
    for (const answer of refused) {
      assert.equal(answer.headers['ratelimit-policy'], '"client";q=10;w=3600');
      assert.match(String(answer.headers.ratelimit), /^"client";r=0;t=[1-9][0-9]*$/);
      assert.equal(answer.headers['retry-after'], String(answer.headers.ratelimit).split('t=')[1]);
      assert.equal(answer.headers['cache-control'], 'no-store');
    }
  });

  test('a login lockout reached through node A holds at node B', async () => {
    for (let i = 0; i < 5; i++) assert.equal((await signInAt(nodes.a, `wrong-${i}`)).status, 401);
    // Node B has seen none of the five: only the shared count refuses the right password there.
    const atB = await signInAt(nodes.b, alicePassword);
    assert.equal(atB.status, 429);
    // About 5 minutes: until the oldest of the five failures leaves the window.
    assert.ok(Number(atB.headers.get('retry-after')) > 240 && Number(atB.headers.get('retry-after')) <= 300, String(atB.headers.get('retry-after')));
    assert.match(await atB.text(), /Too many failed sign-in attempts/);
  });
});

describe('two nodes when their Redis is killed', { skip: twoNodesSkip || ownRedisSkip, timeout: 180_000 }, () => {
  const cleanups: Cleanup[] = [];
  let nodes: TwoNodes;
  let redis: Awaited<ReturnType<typeof startOwnRedis>>;
  before(async () => {
    redis = await startOwnRedis({ after: (fn: () => unknown) => void cleanups.push(fn as Cleanup) });
    nodes = await startTwoNodes(redis.url, { client: { quota: 4, window: 3600 } }, cleanups);
  });
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  test('each node limits alone while Redis is gone, with a warning and no 5xx, and they share again once it is back', async () => {
    const shared = await burst(nodes, 12);
    assert.equal(allowed(shared), 4, 'shared through Redis: 4 in all');

    await redis.stop();
    await nodes.a.logLine(/^Redis is not answering/);
    await nodes.b.logLine(/^Redis is not answering/);
    const alone = await burst(nodes, 24);
    assert.ok(alone.every((a) => a.status === 200 || a.status === 429), alone.map((a) => a.status).join(' '));
    // Each node's own bucket, full: 4 at each, never no limit.
    assert.equal(allowed(alone, 'a'), 4);
    assert.equal(allowed(alone, 'b'), 4);
    for (const node of [nodes.a, nodes.b]) assert.equal(node.logged.filter((l) => /^Redis is not answering/.test(String(l.msg))).length, 1, 'one warning per node');

    await redis.start();
    await nodes.a.logLine(/^Redis answers again/);
    await nodes.b.logLine(/^Redis answers again/);
    // The killed Redis kept nothing: a fresh bucket there, shared again.
    const again = await burst(nodes, 12);
    assert.equal(allowed(again), 4, again.map((a) => `${a.node}:${a.status}`).join(' '));
    assert.ok(again.every((a) => a.status === 200 || a.status === 429));
  });
});

describe('clearance start --workers 2 with Redis', { skip: redisSkip, timeout: 180_000 }, () => {
  const cleanups: Cleanup[] = [];
  let node: Node;
  let prefix: string;
  let key: ReturnType<typeof generateKeyPairSync>;
  let issuer: string;
  before(async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'clearance-limits-workers-'));
    cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
    prefix = uniquePrefix();
    cleanups.push(() => deleteKeys(testRedisUrl, prefix));
    const port = await freePort();
    issuer = `http://127.0.0.1:${port}`;
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOST: '127.0.0.1', CLEARANCE_ISSUER: issuer, CLEARANCE_DATA_DIR: dataDir, CLEARANCE_MASTER_KEY: randomBytes(32).toString('hex'), REDIS_URL: testRedisUrl, CLEARANCE_REDIS_PREFIX: prefix, CLEARANCE_REDIS_TIMEOUT_MS: '5000', LOG_LEVEL: 'info' };
    node = await startNode(env, port, cleanups, ['--workers', '2']);
    key = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    await applyConfig(env, dataDir, key.publicKey, { client: { quota: 6, window: 3600 } });
  });
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  test('counts in Redis from every worker: one client limit for the node, and the failure throttle there too', async () => {
    const answers = await Promise.all(Array.from({ length: 16 }, () => post(node, 'a', '/token', tokenRequest(issuer, key.privateKey))));
    // Per-worker buckets would have allowed up to 12.
    assert.equal(allowed(answers), 6, answers.map((a) => a.status).join(' '));
    const wrong = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const statuses = [];
    for (let i = 0; i < 14; i++) statuses.push((await post(node, 'a', '/token', tokenRequest(issuer, wrong))).status);
    assert.deepEqual(statuses, [...new Array(10).fill(401), ...new Array(4).fill(429)]);
    const redis = new Redis(testRedisUrl);
    try {
      assert.ok((await redis.keys(`${prefix}auth:ca:*`)).length > 0, 'the failures are counted in Redis');
    } finally {
      redis.disconnect();
    }
  });
});
