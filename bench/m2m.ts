import { generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto';
import { signCompact } from '../src/keys/jws.ts';
import { es256Costs } from './crypto-ceiling.ts';
import { clientAssertionParams, loadTokenEndpoint, startServerProcess, warmupSeconds, type BenchLine, type ServerProcess } from './harness.ts';

export const resource = 'https://execution.bench.example/api';
export const clientId = 'bench-oms';

/**
 * `m2m-private-key-jwt`: client_credentials with a fresh ES256 client assertion per request
 * (each with its own jti, so the durable replay check runs every time), an ES256 access token,
 * and the token.issued audit event durable before each response. One server process.
 */
export async function m2mPrivateKeyJwt(seconds: number, connections = 16, variant: ScenarioVariant = {}): Promise<BenchLine> {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const server = await startServerProcess({ ...benchDocument(publicKey, { senderConstrained: false }), ...variant.document }, variant.env);
  try {
    const costs = es256Costs();
    return await loadTokenEndpoint(variant.scenario ?? 'm2m-private-key-jwt', server, {
      connections,
      seconds,
      cryptoMs: costs.signMs + costs.verifyMs,
      aheadSeconds: seconds,
      maxAhead: 200_000,
      make: () => ({ body: tokenRequest(clientAssertionParams(clientId, privateKey, server.issuer)) }),
    });
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
    const htu = `${server.issuer}/token`;
    const proof = (): string =>
      signCompact('ES256', dpopKey.privateKey, { typ: 'dpop+jwt', jwk: dpopJwk }, { jti: randomUUID(), htm: 'POST', htu, iat: Math.floor(Date.now() / 1000) });
    return await loadTokenEndpoint('m2m-dpop', server, {
      connections,
      seconds,
      cryptoMs: costs.signMs + 2 * costs.verifyMs,
      // A proof's iat must be within 60 s when it is used, so at most 40 s worth are made ahead,
      // the warm-up's among them.
      aheadSeconds: Math.max(1, Math.min(seconds, 40 - warmupSeconds)),
      maxAhead: 200_000,
      make: () => ({ headers: { dpop: proof() }, body: tokenRequest(clientAssertionParams(clientId, privateKey, server.issuer)) }),
    });
  } finally {
    await server.stop();
  }
}

/** A scenario run with more in its apply document (e.g. a `risk` section) or environment (e.g. REDIS_URL), under its own name. */
export interface ScenarioVariant {
  scenario?: string;
  document?: Record<string, unknown>;
  env?: NodeJS.ProcessEnv;
}

/** The apply document of both scenarios: one resource server and one private_key_jwt service. */
export function benchDocument(publicKey: KeyObject, options: { senderConstrained: boolean }) {
  return {
    resource_servers: [
      { identifier: resource, scopes: ['order:create', 'order:cancel'], access_token_ttl: 300, require_sender_constraint: options.senderConstrained },
    ],
    clients: [
      {
        client_id: clientId,
        token_endpoint_auth_method: 'private_key_jwt',
        jwks: { keys: [{ ...publicKey.export({ format: 'jwk' }), kid: `${clientId}-1`, alg: 'ES256' }] },
        grant_types: ['client_credentials'],
        scope: 'order:create order:cancel',
      },
    ],
  };
}

/** A client_credentials request body with the client's authentication parameters. */
export function tokenRequest(authentication: string): string {
  return `grant_type=client_credentials&scope=order%3Acreate&resource=${encodeURIComponent(resource)}${authentication}`;
}

/** The m2m-private-key-jwt load (fresh ES256 assertion per request, 16 connections) against `server`. */
export function loadM2m(server: ServerProcess, privateKey: KeyObject, seconds: number, cryptoMs: number): Promise<BenchLine> {
  return loadTokenEndpoint('run', server, {
    connections: 16,
    seconds,
    cryptoMs,
    aheadSeconds: seconds,
    maxAhead: 200_000,
    make: () => ({ body: tokenRequest(clientAssertionParams(clientId, privateKey, server.issuer)) }),
  });
}
