/**
 * Graceful shutdown of `clearance start` (docs/operations.md "Graceful shutdown"), as an
 * orchestrator drives it: SIGTERM under load. /readyz answers 503 at once, the node keeps serving
 * through the drain delay, then finishes what is in flight, writes and seals its audit log and
 * exits 0; no request in flight at SIGTERM is answered 5xx or dropped, and every token it
 * acknowledged has its audit event. A second signal, or the bound, ends it at once.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { describe, test, type TestContext } from 'node:test';
import { decodeJwt } from 'jose';
import { main } from '../../src/cli/main.ts';
import { clientCredentialsRequest, startNode, type Cleanup, type Node } from '../helpers/cluster.ts';
import { freePort } from '../helpers/server.ts';

const resource = 'https://orders.drain.example/api';

interface Drained {
  node: Node;
  env: NodeJS.ProcessEnv;
  dataDir: string;
  tokenRequest(): string;
}

/** A node on SQLite with a private_key_jwt client, applied with the CLI before it starts. */
async function startDrainable(t: TestContext, env: Record<string, string>, args: string[] = []): Promise<Drained> {
  const cleanups: Cleanup[] = [];
  t.after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });
  const dataDir = mkdtempSync(join(tmpdir(), 'clearance-drain-'));
  cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const fullEnv: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOST: '127.0.0.1',
    CLEARANCE_ISSUER: issuer,
    CLEARANCE_DATA_DIR: dataDir,
    CLEARANCE_MASTER_KEY: randomBytes(32).toString('hex'),
    LOG_LEVEL: 'info',
    ...env,
  };
  const key = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  await applyClient(fullEnv, dataDir, key.publicKey);
  const node = await startNode(fullEnv, port, cleanups, args);
  return { node, env: fullEnv, dataDir, tokenRequest: () => clientCredentialsRequest({ issuer, clientId: 'drain-client', key: key.privateKey, kid: 'drain-1', resource }) };
}

async function applyClient(env: NodeJS.ProcessEnv, dataDir: string, publicKey: KeyObject): Promise<void> {
  const file = join(dataDir, 'config.json');
  writeFileSync(
    file,
    JSON.stringify({
      resource_servers: [{ identifier: resource, scopes: ['order:create'], access_token_ttl: 300 }],
      clients: [
        {
          client_id: 'drain-client',
          token_endpoint_auth_method: 'private_key_jwt',
          jwks: { keys: [{ ...publicKey.export({ format: 'jwk' }), kid: 'drain-1', alg: 'ES256' }] },
          grant_types: ['client_credentials'],
          scope: 'order:create',
        },
      ],
    }),
  );
  const lines: string[] = [];
  const code = await main(['apply', '-f', file], env, { out: (l) => lines.push(l), err: (l) => lines.push(l) });
  assert.equal(code, 0, lines.join('\n'));
}

interface Outcome {
  startedAt: number;
  status?: number;
  body?: Record<string, unknown>;
  error?: string;
}

/** One request on a connection of its own (as many clients behind a load balancer open them). */
function send(origin: string, method: 'GET' | 'POST', path: string, body?: string): Promise<Outcome> {
  const startedAt = performance.now();
  return new Promise((resolve) => {
    const req = request(`${origin}${path}`, { method, agent: false, headers: body ? { 'content-type': 'application/x-www-form-urlencoded' } : {} }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => (text += chunk));
      res.on('end', () => resolve({ startedAt, status: res.statusCode!, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} }));
      res.on('error', (error) => resolve({ startedAt, error: error.message }));
    });
    req.on('error', (error) => resolve({ startedAt, error: (error as NodeJS.ErrnoException).code ?? error.message }));
    req.end(body);
  });
}

/** The jtis of the token.issued events in the node's SQLite audit log. */
function issuedJtis(dataDir: string): Set<string> {
  const db = new DatabaseSync(join(dataDir, 'clearance.db'), { readOnly: true });
  try {
    const rows = db.prepare("select event from audit_events where type = 'token.issued'").all() as { event: string }[];
    return new Set(rows.map((row) => String((JSON.parse(row.event) as { details?: { jti?: string } }).details?.jti)));
  } finally {
    db.close();
  }
}

describe('clearance start on SIGTERM', () => {
  test('under load: /readyz 503 at once, serving through the drain delay, no request in flight answered 5xx or dropped, every acknowledged token audited, the log sealed, exit 0', async (t) => {
    const { node, env, dataDir, tokenRequest } = await startDrainable(t, { CLEARANCE_DRAIN_DELAY_MS: '1500', CLEARANCE_SHUTDOWN_TIMEOUT_MS: '20000' });
    assert.equal((await send(node.origin, 'GET', '/readyz')).status, 200);

    // Eight clients, each sending token requests one after another until the node is gone.
    let signalledAt = Infinity;
    let exited = false;
    void node.exited.then(() => (exited = true));
    const outcomes: Outcome[] = [];
    const client = async () => {
      while (!exited) {
        const outcome = await send(node.origin, 'POST', '/token', tokenRequest());
        outcomes.push(outcome);
        if (outcome.error === 'ECONNREFUSED') break;
      }
    };
    const clients = Array.from({ length: 8 }, client);
    await new Promise((resolve) => setTimeout(resolve, 700));

    signalledAt = performance.now();
    node.process.kill('SIGTERM');
    await node.logLine(/^draining: \/readyz answers 503/);
    const ready = await send(node.origin, 'GET', '/readyz');
    assert.equal(ready.status, 503, 'out of the load balancer at once');
    assert.deepEqual(ready.body, { status: 'unavailable', reason: 'draining' });
    // Still serving during the delay: a request sent now gets its token.
    const during = await send(node.origin, 'POST', '/token', tokenRequest());
    assert.equal(during.status, 200, JSON.stringify(during));

    const [code, signal] = await node.exited;
    await Promise.all(clients);
    assert.equal(signal, null);
    assert.equal(code, 0, node.stderr());
    const stoppedAt = node.logged.find((line) => line.msg === 'shutting down: no new connections, finishing in-flight requests');
    assert.ok(stoppedAt, 'it stopped accepting only after the delay');

    const before = outcomes.filter((o) => o.startedAt < signalledAt);
    assert.ok(before.length > 8, `load before the signal (${before.length} requests)`);
    for (const o of before) assert.equal(o.status, 200, `a request in flight or sent before SIGTERM: ${JSON.stringify(o)}`);
    for (const o of outcomes) {
      // After the delay a new request may find the door closed (refused, or 503 on a connection
      // still open), never a server error or a dropped answer.
      if (o.status !== undefined) assert.ok(o.status === 200 || o.status === 503, JSON.stringify(o));
      else assert.match(String(o.error), /^(ECONNREFUSED|ECONNRESET)$/, JSON.stringify(o));
      if (o.status === 503) assert.equal(o.body?.error, 'temporarily_unavailable');
    }
    // Requests answered 200 never lose their token's audit event; sent after SIGTERM, within the delay, too.
    const acknowledged = [...outcomes, during].filter((o) => o.status === 200).map((o) => String(decodeJwt(String(o.body!.access_token)).jti));
    assert.ok(outcomes.some((o) => o.status === 200 && o.startedAt > signalledAt), 'served after SIGTERM, during the delay');
    const audited = issuedJtis(dataDir);
    for (const jti of acknowledged) assert.ok(audited.has(jti), `token ${jti} was answered, so its token.issued is durable`);

    // Sealed before exiting: the log verifies with nothing left unsealed.
    const lines: string[] = [];
    const verified = await main(['audit', 'verify'], env, { out: (l) => lines.push(l), err: (l) => lines.push(l) });
    assert.equal(verified, 0, lines.join('\n'));
    assert.doesNotMatch(lines.join('\n'), /not sealed/);
  });

  test('with --workers 2, the primary tells every worker: each answers /readyz 503 and keeps serving through the delay, then all exit 0', async (t) => {
    const { node, tokenRequest } = await startDrainable(t, { CLEARANCE_DRAIN_DELAY_MS: '2000' }, ['--workers', '2']);
    node.process.kill('SIGTERM');
    await node.logLine(/^draining: /);
    // New connections go to either worker (the cluster hands them round): every one says draining.
    await new Promise((resolve) => setTimeout(resolve, 100));
    for (let i = 0; i < 6; i++) assert.equal((await send(node.origin, 'GET', '/readyz')).status, 503);
    for (let i = 0; i < 4; i++) assert.equal((await send(node.origin, 'POST', '/token', tokenRequest())).status, 200);
    const [code] = await node.exited;
    assert.equal(code, 0, node.stderr());
  });

  test('a second SIGTERM during the drain exits at once with 1 and a warning', async (t) => {
    const { node } = await startDrainable(t, { CLEARANCE_DRAIN_DELAY_MS: '60000' });
    node.process.kill('SIGTERM');
    await node.logLine(/^draining: /);
    const signalled = performance.now();
    node.process.kill('SIGTERM');
    const [code] = await node.exited;
    assert.equal(code, 1);
    assert.ok(performance.now() - signalled < 10_000, 'not the minute of the drain delay');
    assert.ok(node.logged.some((line) => line.level === 40 && /^second signal while shutting down/.test(String(line.msg))), 'warned');
  });

  test('a request that does not finish within CLEARANCE_SHUTDOWN_TIMEOUT_MS: the process exits at the bound with 1 and a warning', async (t) => {
    const { node } = await startDrainable(t, { CLEARANCE_DRAIN_DELAY_MS: '0', CLEARANCE_SHUTDOWN_TIMEOUT_MS: '500' });
    // In flight and never finished: headers and half a body, then silence.
    const url = new URL(node.origin);
    const socket = connect(Number(url.port), url.hostname);
    t.after(() => socket.destroy());
    await once(socket, 'connect');
    socket.on('error', () => undefined);
    socket.write('POST /token HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ngrant_type=');
    await new Promise((resolve) => setTimeout(resolve, 200));
    node.process.kill('SIGTERM');
    const [code] = await node.exited;
    assert.equal(code, 1);
    assert.ok(node.logged.some((line) => line.level === 40 && /longer than CLEARANCE_SHUTDOWN_TIMEOUT_MS/.test(String(line.msg))), 'warned');
  });
});
