/**
 * A compromised signing key on two Clearance nodes — two `clearance start` processes on one
 * PostgreSQL, as behind a load balancer (docs/keys.md "Token-signing keys: compromise"): the key
 * revoked by the CLI (a process that does not listen) is out of the JWKS of BOTH nodes, and the
 * tokens it signed are inactive at both nodes' introspection and admin API, within a second —
 * through the change notice of the `keys` generation, not a poll. Driven over HTTP and the CLI, as
 * an operator would.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { main } from '../../src/cli/main.ts';
import { signCompact } from '../../src/keys/jws.ts';
import { openStorage } from '../../src/storage/database.ts';
import { clientCredentialsRequest, startTwoNodesOnSchema, type Cleanup, type Node } from '../helpers/cluster.ts';
import { testDatabaseUrl } from '../helpers/storage.ts';

const resource = 'https://orders.compromise.example/api';
/** The multi-node bound the issue asks for. */
const boundMs = 1000;

async function cli(env: NodeJS.ProcessEnv, ...args: string[]): Promise<{ code: number; out: string }> {
  const lines: string[] = [];
  const code = await main(args, env, { out: (l) => lines.push(l), err: (l) => lines.push(l) });
  return { code, out: lines.join('\n') };
}

const jwk = (key: KeyObject, kid: string) => ({ ...key.export({ format: 'jwk' }), kid, alg: 'ES256' });
const kidOf = (jwt: string) => (JSON.parse(Buffer.from(jwt.split('.')[0]!, 'base64url').toString()) as { kid: string }).kid;

describe('a compromised key on two nodes on one PostgreSQL', { skip: testDatabaseUrl ? false : 'TEST_DATABASE_URL is not set', timeout: 180_000 }, () => {
  const cleanups: Cleanup[] = [];
  let a: Node;
  let b: Node;
  let issuer: string;
  let env: NodeJS.ProcessEnv;
  let schema: string;
  const desk = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const gateway = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const ops = generateKeyPairSync('ec', { namedCurve: 'P-256' });

  const post = async (node: Node, path: string, body: string) => {
    const response = await fetch(`${node.origin}${path}`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  };
  const token = async (node: Node, form: string) => {
    const answer = await post(node, '/token', form);
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    return String(answer.body.access_token);
  };
  const deskToken = (node: Node) => token(node, clientCredentialsRequest({ issuer, clientId: 'desk-algo', key: desk.privateKey, resource }));
  const adminToken = (node: Node) => token(node, clientCredentialsRequest({ issuer, clientId: 'ops', key: ops.privateKey, resource: `${issuer}/admin`, scope: 'admin:read' }));
  /** RFC 7662 at `node`, the gateway authenticating with private_key_jwt. */
  const active = async (node: Node, accessToken: string): Promise<boolean> => {
    const now = Math.floor(Date.now() / 1000);
    const assertion = signCompact('ES256', gateway.privateKey, { typ: 'JWT', kid: 'gateway-1' }, { iss: 'gateway', sub: 'gateway', aud: issuer, iat: now, exp: now + 60, jti: randomUUID() });
    const answer = await post(node, '/introspect', new URLSearchParams({ token: accessToken, client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: assertion }).toString());
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    return answer.body.active === true;
  };
  const published = async (node: Node) => ((await (await fetch(`${node.origin}/jwks`)).json()) as { keys: { kid: string }[] }).keys.map((k) => k.kid);
  const adminStatus = async (node: Node, bearer: string) => (await fetch(`${node.origin}/admin/keys`, { headers: { authorization: `Bearer ${bearer}` } })).status;

  before(async () => {
    let dataDir: string;
    ({ a, b, issuer, env, dataDir, schema } = await startTwoNodesOnSchema(testDatabaseUrl!, 'test_compromise', cleanups));

    const file = join(dataDir, 'clearance.json');
    writeFileSync(
      file,
      JSON.stringify({
        resource_servers: [{ identifier: resource, scopes: ['order:create'], access_token_ttl: 300, introspection_clients: ['gateway'] }],
        clients: [
          { client_id: 'desk-algo', token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [jwk(desk.publicKey, 'desk-algo-1')] }, grant_types: ['client_credentials'], scope: 'order:create' },
          { client_id: 'gateway', token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [jwk(gateway.publicKey, 'gateway-1')] }, grant_types: ['client_credentials'], scope: 'order:create' },
          { client_id: 'ops', token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [jwk(ops.publicKey, 'ops-1')] }, grant_types: ['client_credentials'], scope: 'admin:read' },
        ],
      }),
    );
    const applied = await cli(env, 'apply', '-f', file);
    assert.equal(applied.code, 0, applied.out);
  });

  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  test('a key revoked as compromised is out of both nodes’ JWKS and its tokens are inactive at both, within a second; the audit log says so once', async (t) => {
    const listed = await cli(env, 'keys', 'list');
    const [kid] = listed.out.split(/\s+/);
    // Tokens signed by the key, issued by either node, live at both.
    const fromA = await deskToken(a);
    const fromB = await deskToken(b);
    const adminFromA = await adminToken(a);
    for (const jwt of [fromA, fromB, adminFromA]) assert.equal(kidOf(jwt), kid);
    for (const node of [a, b]) {
      assert.deepEqual(await published(node), [kid]);
      assert.equal(await active(node, fromA), true);
      assert.equal(await active(node, fromB), true);
      assert.equal(await adminStatus(node, adminFromA), 200);
    }

    const revoked = await cli(env, 'keys', 'revoke', kid!, '--compromised', '--reason', 'two-node drill');
    assert.equal(revoked.code, 0, revoked.out);
    const revokedAt = performance.now();

    // Each node, polled every few milliseconds until the key is out of its JWKS and every token it
    // signed is inactive there (introspection and the admin API), or the bound has passed.
    const settle = async (node: Node): Promise<number> => {
      for (;;) {
        const [keys, tokenA, tokenB, admin] = await Promise.all([published(node), active(node, fromA), active(node, fromB), adminStatus(node, adminFromA)]);
        const took = performance.now() - revokedAt;
        if (!keys.includes(kid!) && !tokenA && !tokenB && admin === 401) return took;
        if (took > boundMs) assert.fail(`${node === a ? 'A' : 'B'} still trusts the key ${took.toFixed(0)} ms after it was revoked: jwks ${JSON.stringify(keys)}, tokens ${tokenA}/${tokenB}, admin ${admin}`);
        await sleep(5);
      }
    };
    const [tookA, tookB] = await Promise.all([settle(a), settle(b)]);
    t.diagnostic(`the compromised key was out on node A after ${tookA.toFixed(1)} ms and on node B after ${tookB.toFixed(1)} ms`);
    // While they listen, the nodes check their caches' generations only every 30 s: this was the notice.
    for (const node of [a, b]) assert.ok(!node.logged.some((line) => /^change notices interrupted/.test(String(line.msg))), 'each node listened throughout');

    // New tokens are signed by the new key, on either node, and verify on the other.
    const [promoted] = await published(a);
    assert.deepEqual(await published(b), [promoted]);
    assert.notEqual(promoted, kid);
    const newFromB = await deskToken(b);
    const newFromA = await deskToken(a);
    assert.equal(kidOf(newFromB), promoted);
    assert.equal(kidOf(newFromA), promoted);
    assert.equal(await active(a, newFromB), true);
    assert.equal(await active(b, newFromA), true);
    assert.equal(await adminStatus(b, await adminToken(a)), 200);

    const storage = openStorage({ databaseUrl: testDatabaseUrl, pgSchema: schema });
    try {
      const rows = await storage.db.selectFrom('audit_events').select('event').where('type', '=', 'key.compromised').execute();
      assert.equal(rows.length, 1, 'one key.compromised event');
      const details = (JSON.parse(rows[0]!.event) as { details: Record<string, unknown> }).details;
      assert.equal(details.kid, kid);
      assert.equal(details.promoted_kid, promoted);
      assert.equal(details.access_tokens_ended_at_most, 3);
    } finally {
      await storage.close();
    }
  });
});
