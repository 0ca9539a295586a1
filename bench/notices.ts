/**
 * `npm run bench -- change-notices` (PostgreSQL: BENCH_DATABASE_URL or TEST_DATABASE_URL): how
 * long a change made through one node takes to be in force on another (issue 19: within 100 ms).
 * Two `clearance start` processes on one schema; BENCH_NOTICE_ROUNDS times (default 40), node B's
 * admin API replaces the client's key, and node A is asked for a token with the replaced key every
 * millisecond or so until it refuses it. The figure is from B's 200 to A's first refusal, so it
 * includes B's commit, the notice, A's reload and one token request on A.
 */
import { generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { adminQuery, clientAssertionParams, round, startServerProcess, withSearchPath, type BenchLine, type ServerProcess } from './harness.ts';

const resource = 'https://orders.bench.example/api';

/** The harness signs assertions with kid `<client>-1`: both of the client's keys have it in turn. */
const jwk = (key: KeyObject, kid: string) => ({ ...key.export({ format: 'jwk' }), kid, alg: 'ES256' });

async function tokenStatus(node: ServerProcess, clientId: string, key: KeyObject, scope: string, audience = resource): Promise<{ status: number; body: Record<string, unknown> }> {
  const body = `grant_type=client_credentials&scope=${encodeURIComponent(scope)}&resource=${encodeURIComponent(audience)}${clientAssertionParams(clientId, key, node.issuer)}`;
  const response = await fetch(`${node.issuer}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

export async function changeNotices(): Promise<BenchLine> {
  const url = process.env.BENCH_DATABASE_URL || process.env.TEST_DATABASE_URL;
  if (!url) return { scenario: 'change-notices', skipped: 'needs BENCH_DATABASE_URL or TEST_DATABASE_URL' };
  const rounds = Number(process.env.BENCH_NOTICE_ROUNDS ?? 40);
  const schema = `bench_notices_${randomBytes(6).toString('hex')}`;
  await adminQuery(url, `create schema ${schema}`);
  const keys = [generateKeyPairSync('ec', { namedCurve: 'P-256' }), generateKeyPairSync('ec', { namedCurve: 'P-256' })];
  const ops = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const document = {
    resource_servers: [{ identifier: resource, scopes: ['order:create'], access_token_ttl: 300 }],
    clients: [
      { client_id: 'bench-client', token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [jwk(keys[0]!.publicKey, 'bench-client-1')] }, grant_types: ['client_credentials'], scope: 'order:create' },
      { client_id: 'ops', token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [jwk(ops.publicKey, 'ops-1')] }, grant_types: ['client_credentials'], scope: 'admin:write' },
    ],
  };
  const env = { DATABASE_URL: withSearchPath(url, schema), CLEARANCE_MASTER_KEY: randomBytes(32).toString('hex') };
  let a: ServerProcess | undefined;
  let b: ServerProcess | undefined;
  try {
    a = await startServerProcess(document, env);
    b = await startServerProcess(document, env);
    const admin = await tokenStatus(b, 'ops', ops.privateKey, 'admin:write', `${b.issuer}/admin`);
    if (admin.status !== 200) throw new Error(`no admin token: ${JSON.stringify(admin.body)}`);
    const latencies: number[] = [];
    let requestsOnA = 0;
    for (let round = 0; round < rounds; round++) {
      const current = keys[round % 2]!;
      const next = keys[(round + 1) % 2]!;
      // The client holds `current` (the first round: from the document); node A accepts it.
      while ((await tokenStatus(a, 'bench-client', current.privateKey, 'order:create')).status !== 200) await sleep(1);
      const patched = await fetch(`${b.issuer}/admin/clients/bench-client`, {
        method: 'PATCH',
        headers: { authorization: `Bearer ${admin.body.access_token}`, 'content-type': 'application/merge-patch+json' },
        body: JSON.stringify({ jwks: { keys: [jwk(next.publicKey, 'bench-client-1')] } }),
      });
      if (patched.status !== 200) throw new Error(`PATCH answered ${patched.status}: ${await patched.text()}`);
      const changed = performance.now();
      for (;;) {
        requestsOnA++;
        const answer = await tokenStatus(a, 'bench-client', current.privateKey, 'order:create');
        if (answer.status === 401) break;
        if (performance.now() - changed > 10_000) throw new Error('node A still accepts the replaced key after 10 s');
      }
      latencies.push(performance.now() - changed);
    }
    latencies.sort((x, y) => x - y);
    const at = (p: number) => round(latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))]!);
    return { scenario: 'change-notices', rounds, p50_ms: at(0.5), p99_ms: at(0.99), max_ms: round(latencies.at(-1)!), target_ms: 100, requests_on_a: requestsOnA };
  } finally {
    await a?.stop();
    await b?.stop();
    await adminQuery(url, `drop schema if exists ${schema} cascade`);
  }
}
