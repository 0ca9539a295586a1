import { generateKeyPairSync } from 'node:crypto';
import { es256Costs } from './crypto-ceiling.ts';
import { clientAssertionParams, loadTokenEndpoint, startServerProcess, type BenchLine } from './harness.ts';
import { benchDocument, clientId, resource } from './m2m.ts';
import { examplePolicyText, exampleEntities } from '../test/policy/fixture.ts';

const scopes = ['order:create', 'order:cancel', 'rfq:send'];

/**
 * `policy-issuance`: the m2m-private-key-jwt request (client_credentials, fresh ES256 assertion
 * with its durable replay check, ES256 access token, token.issued durable before the answer) with
 * the example policy set active over the example entities, for a service of the example broker
 * asking three trading scopes: every token is three policy decisions (src/policy/issuance.ts),
 * their allows recorded with the token's event. Compare with m2m-private-key-jwt (no policy set:
 * the baseline decides) for what the decisions cost.
 */
export async function policyIssuance(seconds: number, connections = 16): Promise<BenchLine> {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const base = benchDocument(publicKey, { senderConstrained: false });
  const server = await startServerProcess({
    ...exampleEntities(),
    resource_servers: base.resource_servers.map((s) => ({ ...s, scopes })),
    clients: base.clients.map((c) => ({ ...c, kind: 'service', owner_lei: '5493001KJTIIGC8Y1R12', scope: scopes.join(' ') })),
    policies: [{ version: 'bench', text: examplePolicyText(), change_ref: 'BENCH-1', author: 'bench.author', approver: 'bench.approver', active: true }],
  });
  try {
    const body = (auth: string) => `grant_type=client_credentials&scope=${encodeURIComponent(scopes.join(' '))}&resource=${encodeURIComponent(resource)}${auth}`;
    const first = await fetch(`${server.issuer}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: body(clientAssertionParams(clientId, privateKey, server.issuer)),
    });
    if (first.status !== 200) throw new Error(`policy-issuance: ${first.status} ${await first.text()}`);
    const costs = es256Costs();
    const line = await loadTokenEndpoint('policy-issuance', server, {
      connections,
      seconds,
      cryptoMs: costs.signMs + costs.verifyMs,
      aheadSeconds: seconds,
      maxAhead: 200_000,
      make: () => ({ body: body(clientAssertionParams(clientId, privateKey, server.issuer)) }),
    });
    return { ...line, decisions_per_token: scopes.length };
  } finally {
    await server.stop();
  }
}
