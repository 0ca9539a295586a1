/**
 * Two Clearance nodes — two `clearance start` processes on one PostgreSQL, as behind a load
 * balancer — coordinated by change notices (src/storage/notices.ts, docs/operations.md "Several
 * nodes"): a change made through one node is in force on the other when its notice arrives, not
 * at that node's next poll; and a node killed under load loses no token it acknowledged. Driven
 * over HTTP and the CLI, as an operator would; what is durable is read from the database.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { main } from '../../src/cli/main.ts';
import { openStorage } from '../../src/storage/database.ts';
import { clientCredentialsRequest, startTwoNodesOnSchema, type Cleanup, type Node } from '../helpers/cluster.ts';
import { testDatabaseUrl } from '../helpers/storage.ts';

const resource = 'https://orders.notices.example/api';

interface Answer {
  status: number;
  body: Record<string, unknown>;
}

async function postForm(node: Node, path: string, body: string): Promise<Answer> {
  const response = await fetch(`${node.origin}${path}`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

async function cli(env: NodeJS.ProcessEnv, ...args: string[]): Promise<{ code: number; out: string }> {
  const lines: string[] = [];
  const code = await main(args, env, { out: (l) => lines.push(l), err: (l) => lines.push(l) });
  return { code, out: lines.join('\n') };
}

const jwk = (key: KeyObject, kid: string) => ({ ...key.export({ format: 'jwk' }), kid, alg: 'ES256' });

describe('two nodes on one PostgreSQL, coordinated by change notices', { skip: testDatabaseUrl ? false : 'TEST_DATABASE_URL is not set', timeout: 180_000 }, () => {
  const cleanups: Cleanup[] = [];
  let a: Node;
  let b: Node;
  let issuer: string;
  let env: NodeJS.ProcessEnv;
  let schema: string;
  const desk = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const replacement = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const ops = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const deskToken = (key: KeyObject, kid: string) => clientCredentialsRequest({ issuer, clientId: 'desk-algo', key, kid, resource });

  before(async () => {
    let dataDir: string;
    ({ a, b, issuer, env, dataDir, schema } = await startTwoNodesOnSchema(testDatabaseUrl!, 'test_notices', cleanups));

    const file = join(dataDir, 'clearance.json');
    writeFileSync(
      file,
      JSON.stringify({
        resource_servers: [{ identifier: resource, scopes: ['order:create'], access_token_ttl: 300 }],
        clients: [
          { client_id: 'desk-algo', token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [jwk(desk.publicKey, 'desk-1')] }, grant_types: ['client_credentials'], scope: 'order:create' },
          { client_id: 'ops', token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [jwk(ops.publicKey, 'ops-1')] }, grant_types: ['client_credentials'], scope: 'admin:read admin:write' },
        ],
      }),
    );
    const applied = await cli(env, 'apply', '-f', file);
    assert.equal(applied.code, 0, applied.out);
  });

  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  test('a client whose key is revoked through node B is refused on node A as soon as the notice arrives, not at A’s next poll', async (t) => {
    // The CLI's apply (a process that does not listen) reached both nodes through the trigger's notice.
    for (const node of [a, b]) {
      const answer = await postForm(node, '/token', deskToken(desk.privateKey, 'desk-1'));
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
    }
    const admin = await postForm(b, '/token', clientCredentialsRequest({ issuer, clientId: 'ops', key: ops.privateKey, kid: 'ops-1', resource: `${issuer}/admin`, scope: 'admin:write' }));
    assert.equal(admin.status, 200, JSON.stringify(admin.body));

    const patched = await fetch(`${b.origin}/admin/clients/desk-algo`, {
      method: 'PATCH',
      headers: { authorization: `Bearer ${admin.body.access_token}`, 'content-type': 'application/merge-patch+json' },
      body: JSON.stringify({ jwks: { keys: [jwk(replacement.publicKey, 'desk-2')] } }),
    });
    assert.equal(patched.status, 200, await patched.text());
    const revokedAt = performance.now();

    let refused: Answer | undefined;
    while (!refused) {
      const answer = await postForm(a, '/token', deskToken(desk.privateKey, 'desk-1'));
      if (answer.status !== 200) refused = answer;
      else if (performance.now() - revokedAt > 5000) assert.fail('node A still accepts the revoked key 5 s after node B revoked it');
      else await sleep(2);
    }
    const tookMs = performance.now() - revokedAt;
    t.diagnostic(`node A refused the revoked key ${tookMs.toFixed(1)} ms after node B answered the change`);
    assert.equal(refused.status, 401);
    assert.equal(refused.body.error, 'invalid_client');
    // While it listens, node A checks its caches' generations only every 30 s (the safety net):
    // a refusal within 5 s of the change is the notice's doing, not a poll's.
    assert.ok(!a.logged.some((line) => /^change notices interrupted/.test(String(line.msg))), 'node A listened throughout');
    const replaced = await postForm(a, '/token', deskToken(replacement.privateKey, 'desk-2'));
    assert.equal(replaced.status, 200, JSON.stringify(replaced.body));
  });

  test('a node killed under load loses no token it acknowledged, and the audit log verifies', async () => {
    const acknowledged: string[] = [];
    let servedByBAfterTheKill = 0;
    let sent = 0;
    let killed = false;
    // Eight callers, each alternating between the nodes, until 160 requests were sent; node A is
    // killed once 40 tokens were acknowledged, with requests in flight on it.
    const caller = async (n: number) => {
      for (let i = 0; sent < 160; i++) {
        sent++;
        const node = (n + i) % 2 === 0 ? a : b;
        try {
          const answer = await postForm(node, '/token', deskToken(replacement.privateKey, 'desk-2'));
          if (answer.status === 200) {
            acknowledged.push(String(answer.body.access_token));
            if (killed && node === b) servedByBAfterTheKill++;
          }
        } catch {
          // node A's connection reset: nothing was acknowledged
        }
        if (!killed && acknowledged.length >= 40) {
          killed = true;
          a.process.kill('SIGKILL');
        }
      }
    };
    await Promise.all(Array.from({ length: 8 }, (_, n) => caller(n)));
    assert.ok(killed);
    assert.ok(servedByBAfterTheKill >= 50, `node B went on serving: ${servedByBAfterTheKill} tokens after the kill`);

    const jtis = acknowledged.map((token) => (JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { jti: string }).jti);
    const storage = openStorage({ databaseUrl: testDatabaseUrl, pgSchema: schema });
    try {
      const rows = await storage.db.selectFrom('audit_events').select('event').where('type', '=', 'token.issued').where('client', '=', 'desk-algo').execute();
      const recorded = new Set(rows.map((row) => (JSON.parse(row.event) as { details: { jti: string } }).details.jti));
      const lost = jtis.filter((jti) => !recorded.has(jti));
      assert.deepEqual(lost, [], 'every acknowledged token has its token.issued event');
    } finally {
      await storage.close();
    }
    const verified = await cli(env, 'audit', 'verify');
    assert.equal(verified.code, 0, verified.out);
    assert.match(verified.out, /intact/);
  });
});
