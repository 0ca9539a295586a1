import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { es256Costs } from './crypto-ceiling.ts';
import { clientAssertionParams, loadTokenEndpoint, meanLoadFigures, palindrome, round, startServerProcess, type BenchLine } from './harness.ts';
import { m2mPrivateKeyJwt, type ScenarioVariant } from './m2m.ts';

const arranger = 'https://arranger.bench.example/orders';
const broker = 'https://broker.bench.example/execution';
const exchangeGrant = 'urn:ietf:params:oauth:grant-type:token-exchange';

/**
 * `token-exchange`: RFC 8693 exchanges of a client's order token (audience: the arranger) for a
 * token to the broker, by the arranger's backend authenticated with a fresh ES256 client assertion
 * per request (durable jti check). Each exchange verifies the assertion and the subject token,
 * checks the subject token is live (revocation list), decides the issuance (baseline), signs an
 * ES256 token with `act` and `txn`, and makes `token.exchanged` durable before responding. The
 * subject tokens (64, reused, as an order token is exchanged at each hop it travels) are issued
 * before the run. Crypto per request: one ES256 verification (the assertion) and one signature;
 * a subject token's signature is verified on its first exchange and then remembered
 * (src/tokens/verified-signatures.ts), every other check of it runs each time.
 */
export async function tokenExchange(seconds: number, connections = 16, variant: ScenarioVariant = {}): Promise<BenchLine> {
  const subjectKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const exchangerKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const client = (client_id: string, key: KeyObject, grant: string) => ({
    client_id,
    token_endpoint_auth_method: 'private_key_jwt',
    jwks: { keys: [{ ...key.export({ format: 'jwk' }), kid: `${client_id}-1`, alg: 'ES256' }] },
    grant_types: [grant],
    scope: 'order:create',
  });
  const server = await startServerProcess({
    resource_servers: [
      { identifier: arranger, scopes: ['order:create'], exchange_clients: ['bench-arranger'] },
      { identifier: broker, scopes: ['order:create'] },
    ],
    clients: [client('bench-algo', subjectKey.publicKey, 'client_credentials'), client('bench-arranger', exchangerKey.publicKey, exchangeGrant)],
    ...variant.document,
  }, variant.env);
  try {
    const auth = (clientId: string, key: KeyObject) => clientAssertionParams(clientId, key, server.issuer);
    const subjects: string[] = [];
    for (let i = 0; i < 64; i++) {
      const response = await fetch(`${server.issuer}/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: `grant_type=client_credentials&resource=${encodeURIComponent(arranger)}${auth('bench-algo', subjectKey.privateKey)}`,
      });
      if (response.status !== 200) throw new Error(`subject token: ${response.status} ${await response.text()}`);
      subjects.push(((await response.json()) as { access_token: string }).access_token);
    }
    const costs = es256Costs();
    return await loadTokenEndpoint(variant.scenario ?? 'token-exchange', server, {
      connections,
      seconds,
      cryptoMs: costs.signMs + costs.verifyMs,
      aheadSeconds: seconds,
      maxAhead: 100_000,
      make: (i) => ({
        body: `grant_type=${encodeURIComponent(exchangeGrant)}&subject_token=${subjects[i % subjects.length]}&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token&resource=${encodeURIComponent(broker)}${auth('bench-arranger', exchangerKey.privateKey)}`,
      }),
    });
  } finally {
    await server.stop();
  }
}

/**
 * The `token-exchange` line of `npm run bench`: token exchange and m2m-private-key-jwt run
 * alternately, m2m, exchange, exchange, m2m, for half the seconds each (harness.ts `palindrome`),
 * so that `vs_m2m` (the target's ratio of their throughputs) compares runs made under the same
 * machine. Taken from two separate lines it moved 0.68–0.86 between whole runs of the same code.
 * The line's own figures are the exchange runs' means.
 */
export async function tokenExchangeBesideM2m(seconds: number): Promise<BenchLine> {
  const half = Math.max(1, seconds / 2);
  const [m2m, exchange] = await palindrome([() => m2mPrivateKeyJwt(half), () => tokenExchange(half)]);
  return {
    scenario: 'token-exchange',
    ...meanLoadFigures(exchange!),
    m2m_rps: round(m2m!('rps')),
    m2m_server_cpu_us_per_req: round(m2m!('server_cpu_us_per_req'), 1),
    vs_m2m: round(exchange!('rps') / m2m!('rps'), 3),
  };
}
