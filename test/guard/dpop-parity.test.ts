import assert from 'node:assert/strict';
import { generateKeyPairSync, sign } from 'node:crypto';
import { test } from 'node:test';
import { ManualClock } from '../../src/clock.ts';
import { createDpopNonces, defaultDpopAlgorithms, DpopProofError, MemoryDpopReplayStore, verifyDpopProof as guardVerify } from '../../src/guard/dpop.ts';
import { OAuthError } from '../../src/oauth-error.ts';
import { DpopNonces, dpopAlgs, verifyDpopProof as serverVerify } from '../../src/tokens/dpop.ts';
import type { ReplayCache } from '../../src/tokens/replay-cache.ts';
import { ath, dpopKey, dpopProof, type DpopKey, type ProofClaims, type ProofOptions } from '../helpers/dpop.ts';

// Parity: the authorization server's DPoP check (src/tokens/dpop.ts, at its own resources) and the
// guard's (src/guard/dpop.ts, at a resource server) run over one table of proofs and must give
// the same answer — the outcome the table expects — for each (RFC 9449 §4.3, §7.1, §11.1).

const nowMs = 1_800_000_000_000;
const now = nowMs / 1000;
const url = 'https://orders.example.com/api/orders';
const token = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln';
const nonceSecret = Buffer.alloc(32, 9);

class MemoryReplay implements ReplayCache {
  readonly #seen = new Set<string>();
  async use(key: string): Promise<boolean> {
    if (this.#seen.has(key)) return false;
    this.#seen.add(key);
    return true;
  }
  async prune(): Promise<number> {
    return 0;
  }
}

/** One request: its DPoP header value(s), method and URL, presented with `token`. */
interface Request {
  proofs: string[];
  method?: string;
  url?: string;
}

interface Vector {
  name: string;
  /** The requests, in order, against one replay cache (a replay is the second of two). */
  requests: Request[];
  /** What the last request must get: accepted, or the error code. */
  expect: 'accept' | 'invalid_dpop_proof' | 'use_dpop_nonce';
  /** Both sides require their (identical) nonce. */
  nonces?: boolean;
}

type Outcome = 'accept' | 'invalid_dpop_proof' | 'use_dpop_nonce';

/** Runs the vector's requests through the server's check; the outcome of the last. */
async function server(vector: Vector): Promise<Outcome> {
  const clock = new ManualClock(nowMs);
  const deps = { replay: new MemoryReplay(), clock, nonces: new DpopNonces(nonceSecret, clock), requireNonce: vector.nonces ?? false };
  let outcome: Outcome = 'accept';
  for (const request of vector.requests) {
    try {
      const proof = await serverVerify({ proofs: request.proofs, method: request.method ?? 'POST', urls: [request.url ?? url], accessToken: token }, deps);
      assert.ok(proof, 'a proof was checked');
      outcome = 'accept';
    } catch (error) {
      assert.ok(error instanceof OAuthError, String(error));
      outcome = error.error as Outcome;
    }
  }
  return outcome;
}

/** Runs them through the guard's check (the header as a resource server's framework hands it over). */
async function guard(vector: Vector): Promise<Outcome> {
  const options = {
    algorithms: defaultDpopAlgorithms,
    iatWindowSeconds: 60,
    replay: new MemoryDpopReplayStore({ now: () => nowMs }),
    nonces: vector.nonces ? createDpopNonces({ secret: nonceSecret, now: () => nowMs }) : undefined,
    now: () => nowMs,
  };
  let outcome: Outcome = 'accept';
  for (const request of vector.requests) {
    try {
      await guardVerify({ header: request.proofs.length === 1 ? request.proofs[0] : request.proofs, method: request.method ?? 'POST', url: request.url ?? url, accessToken: token }, options);
      outcome = 'accept';
    } catch (error) {
      assert.ok(error instanceof DpopProofError, String(error));
      outcome = error.code;
    }
  }
  return outcome;
}

const es256 = dpopKey('ES256');
const eddsa = dpopKey('EdDSA');
const ed25519 = dpopKey('Ed25519');
const ps256 = dpopKey('PS256');

/** A proof for the request, valid unless the claims or options say otherwise. */
const proof = (key: DpopKey = es256, claims: Partial<ProofClaims> = {}, options: ProofOptions = {}) =>
  dpopProof(key, { htm: 'POST', htu: url, iat: now, ath: ath(token), ...claims }, options);

/** A proof whose key is an Ed448 key (RFC 8037 allows it under EdDSA; we never do), really signed by it. */
function ed448Proof(alg: 'EdDSA' | 'Ed25519'): string {
  const pair = generateKeyPairSync('ed448');
  const b64u = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const input = `${b64u({ typ: 'dpop+jwt', alg, jwk: pair.publicKey.export({ format: 'jwk' }) })}.${b64u({ jti: crypto.randomUUID(), htm: 'POST', htu: url, iat: now, ath: ath(token) })}`;
  return `${input}.${sign(null, Buffer.from(input), pair.privateKey).toString('base64url')}`;
}

const nonce = new DpopNonces(nonceSecret, new ManualClock(nowMs)).current();
const replayed = proof();
const [h, p, s] = proof().split('.');

const vectors: Vector[] = [
  { name: 'a valid ES256 proof', requests: [{ proofs: [proof()] }], expect: 'accept' },
  { name: 'a valid EdDSA proof', requests: [{ proofs: [proof(eddsa)] }], expect: 'accept' },
  { name: 'a valid Ed25519 proof (RFC 9864 §2.2)', requests: [{ proofs: [proof(ed25519)] }], expect: 'accept' },
  { name: 'an Ed25519 key labelled EdDSA', requests: [{ proofs: [proof(ed25519, {}, { header: { alg: 'EdDSA' } })] }], expect: 'accept' },
  { name: 'a valid PS256 proof', requests: [{ proofs: [proof(ps256)] }], expect: 'accept' },
  { name: 'an Ed448 key under EdDSA', requests: [{ proofs: [ed448Proof('EdDSA')] }], expect: 'invalid_dpop_proof' },
  { name: 'an Ed448 key under Ed25519', requests: [{ proofs: [ed448Proof('Ed25519')] }], expect: 'invalid_dpop_proof' },
  { name: 'an ES256 key under Ed25519', requests: [{ proofs: [proof(es256, {}, { header: { alg: 'Ed25519' } })] }], expect: 'invalid_dpop_proof' },
  { name: 'htm GET on a POST', requests: [{ proofs: [proof(es256, { htm: 'GET' })] }], expect: 'invalid_dpop_proof' },
  { name: 'htm in lower case', requests: [{ proofs: [proof(es256, { htm: 'post' })] }], expect: 'invalid_dpop_proof' },
  { name: 'htu of another path', requests: [{ proofs: [proof(es256, { htu: 'https://orders.example.com/api/cancel' })] }], expect: 'invalid_dpop_proof' },
  { name: 'htu of another host', requests: [{ proofs: [proof(es256, { htu: 'https://evil.example.com/api/orders' })] }], expect: 'invalid_dpop_proof' },
  { name: 'htu with another port', requests: [{ proofs: [proof(es256, { htu: 'https://orders.example.com:8443/api/orders' })] }], expect: 'invalid_dpop_proof' },
  { name: 'htu in another path case', requests: [{ proofs: [proof(es256, { htu: 'https://orders.example.com/API/orders' })] }], expect: 'invalid_dpop_proof' },
  { name: 'htu with a query and fragment', requests: [{ proofs: [proof(es256, { htu: `${url}?page=2#top` })] }], expect: 'accept' },
  { name: 'a request URL with a query', requests: [{ proofs: [proof()], url: `${url}?page=2` }], expect: 'accept' },
  { name: 'htu with another letter case in scheme and host', requests: [{ proofs: [proof(es256, { htu: 'HTTPS://Orders.Example.COM/api/orders' })] }], expect: 'accept' },
  { name: 'htu with the default port', requests: [{ proofs: [proof(es256, { htu: 'https://orders.example.com:443/api/orders' })] }], expect: 'accept' },
  { name: 'ath of another token', requests: [{ proofs: [proof(es256, { ath: ath('another') })] }], expect: 'invalid_dpop_proof' },
  { name: 'no ath', requests: [{ proofs: [proof(es256, {}, { omit: ['ath'] })] }], expect: 'invalid_dpop_proof' },
  { name: 'iat 60 s ago', requests: [{ proofs: [proof(es256, { iat: now - 60 })] }], expect: 'accept' },
  { name: 'iat 60 s ahead', requests: [{ proofs: [proof(es256, { iat: now + 60 })] }], expect: 'accept' },
  { name: 'iat 61 s ago', requests: [{ proofs: [proof(es256, { iat: now - 61 })] }], expect: 'invalid_dpop_proof' },
  { name: 'iat an hour ago', requests: [{ proofs: [proof(es256, { iat: now - 3600 })] }], expect: 'invalid_dpop_proof' },
  { name: 'iat in an hour', requests: [{ proofs: [proof(es256, { iat: now + 3600 })] }], expect: 'invalid_dpop_proof' },
  { name: 'iat as a string', requests: [{ proofs: [proof(es256, { iat: String(now) as unknown as number })] }], expect: 'invalid_dpop_proof' },
  { name: 'a private jwk', requests: [{ proofs: [proof(es256, {}, { header: { jwk: es256.privateKey.export({ format: 'jwk' }) } })] }], expect: 'invalid_dpop_proof' },
  { name: 'a symmetric jwk', requests: [{ proofs: [proof(es256, {}, { header: { jwk: { kty: 'oct', k: 'c2VjcmV0' } } })] }], expect: 'invalid_dpop_proof' },
  { name: 'no jwk', requests: [{ proofs: [proof(es256, {}, { header: { jwk: undefined } })] }], expect: 'invalid_dpop_proof' },
  { name: 'alg none', requests: [{ proofs: [proof(es256, {}, { header: { alg: 'none' } })] }], expect: 'invalid_dpop_proof' },
  { name: 'alg NoNe', requests: [{ proofs: [proof(es256, {}, { header: { alg: 'NoNe' } })] }], expect: 'invalid_dpop_proof' },
  { name: 'alg RS256', requests: [{ proofs: [proof(es256, {}, { header: { alg: 'RS256' } })] }], expect: 'invalid_dpop_proof' },
  { name: 'alg HS256', requests: [{ proofs: [proof(es256, {}, { header: { alg: 'HS256' } })] }], expect: 'invalid_dpop_proof' },
  { name: 'typ JWT', requests: [{ proofs: [proof(es256, {}, { header: { typ: 'JWT' } })] }], expect: 'invalid_dpop_proof' },
  { name: 'typ DPOP+JWT', requests: [{ proofs: [proof(es256, {}, { header: { typ: 'DPOP+JWT' } })] }], expect: 'invalid_dpop_proof' },
  { name: 'no typ', requests: [{ proofs: [proof(es256, {}, { header: { typ: undefined } })] }], expect: 'invalid_dpop_proof' },
  { name: 'crit', requests: [{ proofs: [proof(es256, {}, { header: { crit: ['exp'] } })] }], expect: 'invalid_dpop_proof' },
  { name: 'a bad signature', requests: [{ proofs: [proof(es256, {}, { signWith: dpopKey().privateKey })] }], expect: 'invalid_dpop_proof' },
  { name: 'no jti', requests: [{ proofs: [proof(es256, {}, { omit: ['jti'] })] }], expect: 'invalid_dpop_proof' },
  { name: 'no htm', requests: [{ proofs: [proof(es256, {}, { omit: ['htm'] })] }], expect: 'invalid_dpop_proof' },
  { name: 'no htu', requests: [{ proofs: [proof(es256, {}, { omit: ['htu'] })] }], expect: 'invalid_dpop_proof' },
  { name: 'no iat', requests: [{ proofs: [proof(es256, {}, { omit: ['iat'] })] }], expect: 'invalid_dpop_proof' },
  { name: 'a replayed proof', requests: [{ proofs: [replayed] }, { proofs: [replayed] }], expect: 'invalid_dpop_proof' },
  { name: 'the same jti under two keys', requests: [{ proofs: [proof(es256, { jti: 'shared' })] }, { proofs: [proof(eddsa, { jti: 'shared' })] }], expect: 'accept' },
  { name: 'two DPoP headers', requests: [{ proofs: [proof(), proof()] }], expect: 'invalid_dpop_proof' },
  { name: 'not a JWT', requests: [{ proofs: ['garbage'] }], expect: 'invalid_dpop_proof' },
  { name: 'two segments', requests: [{ proofs: [`${h}.${p}`] }], expect: 'invalid_dpop_proof' },
  { name: 'five segments (a JWE)', requests: [{ proofs: [`${h}.${p}.a.b.c`] }], expect: 'invalid_dpop_proof' },
  { name: 'non-base64url characters', requests: [{ proofs: [`${h}.${p}.${s}+/`] }], expect: 'invalid_dpop_proof' },
  { name: 'padding', requests: [{ proofs: [`${h}.${p}.${s}==`] }], expect: 'invalid_dpop_proof' },
  { name: 'a header that is not JSON', requests: [{ proofs: [`${Buffer.from('not json').toString('base64url')}.${p}.${s}`] }], expect: 'invalid_dpop_proof' },
  { name: 'a proof over 8 KiB', requests: [{ proofs: [proof(es256, { pad: 'x'.repeat(9000) })] }], expect: 'invalid_dpop_proof' },
  { name: 'no nonce when nonces are required', nonces: true, requests: [{ proofs: [proof()] }], expect: 'use_dpop_nonce' },
  { name: 'a made-up nonce', nonces: true, requests: [{ proofs: [proof(es256, { nonce: 'made-up-nonce-0123456789' })] }], expect: 'use_dpop_nonce' },
  { name: 'the current nonce', nonces: true, requests: [{ proofs: [proof(es256, { nonce })] }], expect: 'accept' },
];

test('the server and the guard allow the same DPoP proof algorithms', () => {
  assert.deepEqual([...defaultDpopAlgorithms], [...dpopAlgs]);
});

test('the server and the guard agree on every DPoP proof vector, and both give the expected answer', async () => {
  const disagreements: string[] = [];
  for (const vector of vectors) {
    const [ours, theirs] = [await server(vector), await guard(vector)];
    if (ours !== vector.expect || theirs !== vector.expect) disagreements.push(`${vector.name}: expected ${vector.expect}, server ${ours}, guard ${theirs}`);
  }
  assert.deepEqual(disagreements, []);
});
