import { generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto';
import { signCompact } from '../src/keys/jws.ts';
import { es256Costs } from './crypto-ceiling.ts';
import { cryptoBoundLine, load, startServerProcess, type BenchLine } from './harness.ts';

const resource = 'https://execution.bench.example/api';

/**
 * `m2m-private-key-jwt`: client_credentials with a fresh ES256 client assertion per request
 * (each with its own jti, so the durable replay check runs every time), an ES256 access token,
 * and the token.issued audit event durable before each response. One server process.
 */
export async function m2mPrivateKeyJwt(seconds: number, connections = 16): Promise<BenchLine> {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const server = await startServerProcess(benchDocument(publicKey, { senderConstrained: false }));
  try {
    const costs = es256Costs();
    const ceiling = 1000 / (costs.signMs + costs.verifyMs);
    // Assertions are made ahead so the load generator spends its CPU on HTTP, not on signing;
    // each is used once. Enough for ~2x the ceiling over the run, more made on demand.
    const made: string[] = [];
    const assertion = () => clientAssertion(privateKey, server.issuer);
    for (let i = 0; i < Math.min(200_000, Math.ceil(ceiling * seconds * 1.2)); i++) made.push(assertion());
    let next = 0;
    const cpuBefore = server.serverCpuMs();
    const result = await load({
      origin: server.issuer,
      path: '/token',
      connections,
      seconds,
      request: () => ({
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: tokenRequest(made[next++] ?? assertion()),
      }),
    });
    return cryptoBoundLine('m2m-private-key-jwt', result, costs.signMs + costs.verifyMs, server.serverCpuMs() - cpuBefore);
  } finally {
    await server.stop();
  }
}

/**
 * `m2m-dpop`: as m2m-private-key-jwt, plus a fresh DPoP proof per request (RFC 9449; one client
 * key, as a real client keeps, each proof with its own jti, so the durable replay check runs for
 * the assertion and the proof), and a DPoP-bound ES256 access token. Crypto per request: two
 * ES256 verifications (assertion, proof) and one signature (the token).
 */
export async function m2mDpop(seconds: number, connections = 16): Promise<BenchLine> {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const dpopKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const dpopJwk = dpopKey.publicKey.export({ format: 'jwk' });
  const server = await startServerProcess(benchDocument(publicKey, { senderConstrained: true }));
  try {
    const costs = es256Costs();
    const cryptoMs = costs.signMs + 2 * costs.verifyMs;
    const ceiling = 1000 / cryptoMs;
    const htu = `${server.issuer}/token`;
    const request = (): string => tokenRequest(clientAssertion(privateKey, server.issuer));
    const proof = (): string =>
      signCompact('ES256', dpopKey.privateKey, { typ: 'dpop+jwt', jwk: dpopJwk }, { jti: randomUUID(), htm: 'POST', htu, iat: Math.floor(Date.now() / 1000) });
    // Made ahead, each used once. A proof's iat must be within 60 s when it is used, so at most
    // 40 s worth are made ahead; a longer run makes the rest on demand.
    const bodies: string[] = [];
    const proofs: string[] = [];
    for (let i = 0; i < Math.min(200_000, Math.ceil(ceiling * Math.min(seconds, 40) * 1.2)); i++) {
      bodies.push(request());
      proofs.push(proof());
    }
    let next = 0;
    const cpuBefore = server.serverCpuMs();
    const result = await load({
      origin: server.issuer,
      path: '/token',
      connections,
      seconds,
      request: () => {
        const i = next++;
        return { headers: { 'content-type': 'application/x-www-form-urlencoded', dpop: proofs[i] ?? proof() }, body: bodies[i] ?? request() };
      },
    });
    return cryptoBoundLine('m2m-dpop', result, cryptoMs, server.serverCpuMs() - cpuBefore);
  } finally {
    await server.stop();
  }
}

function clientAssertion(privateKey: KeyObject, issuer: string): string {
  const now = Math.floor(Date.now() / 1000);
  return signCompact('ES256', privateKey, { typ: 'JWT', kid: 'bench-1' }, { iss: 'bench-oms', sub: 'bench-oms', aud: issuer, iat: now, exp: now + 240, jti: randomUUID() });
}

/** The apply document of both scenarios: one resource server and one private_key_jwt service. */
function benchDocument(publicKey: KeyObject, options: { senderConstrained: boolean }) {
  return {
    resource_servers: [
      { identifier: resource, scopes: ['order:create', 'order:cancel'], access_token_ttl: 300, require_sender_constraint: options.senderConstrained },
    ],
    clients: [
      {
        client_id: 'bench-oms',
        token_endpoint_auth_method: 'private_key_jwt',
        jwks: { keys: [{ ...publicKey.export({ format: 'jwk' }), kid: 'bench-1', alg: 'ES256' }] },
        grant_types: ['client_credentials'],
        scope: 'order:create order:cancel',
      },
    ],
  };
}

/** A client_credentials request body carrying `assertion`. */
function tokenRequest(assertion: string): string {
  return (
    'grant_type=client_credentials&scope=order%3Acreate&resource=' +
    encodeURIComponent(resource) +
    '&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=' +
    assertion
  );
}
