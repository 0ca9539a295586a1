import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { calculateJwkThumbprint, type JWK } from 'jose';
import { ManualClock } from '../../src/clock.ts';
import { OAuthError } from '../../src/oauth-error.ts';
import { DpopNonces, accessTokenHash, dpopNonceSecret, jwkThumbprint, normalizeHtu, verifyDpopProof, type DpopDeps } from '../../src/tokens/dpop.ts';
import type { ReplayCache } from '../../src/tokens/replay-cache.ts';
import { ath, dpopKey, dpopProof } from '../helpers/dpop.ts';

// RFC 9449 §4.3 proof validation as a unit: no HTTP, an in-memory replay cache.

const url = 'https://as.example.com/token';

class MemoryReplay implements ReplayCache {
  readonly seen = new Set<string>();
  async use(key: string): Promise<boolean> {
    if (this.seen.has(key)) return false;
    this.seen.add(key);
    return true;
  }
  async prune(): Promise<number> {
    return 0;
  }
}

function deps(options: { requireNonce?: boolean; clock?: ManualClock } = {}): DpopDeps & { clock: ManualClock; replay: MemoryReplay } {
  const clock = options.clock ?? new ManualClock();
  return { replay: new MemoryReplay(), clock, nonces: new DpopNonces(dpopNonceSecret(Buffer.alloc(32, 7)), clock), requireNonce: options.requireNonce ?? false };
}

async function refusal(promise: Promise<unknown>): Promise<OAuthError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof OAuthError, String(error));
    return error;
  }
  assert.fail('the proof was accepted');
}

describe('DPoP proof validation (RFC 9449 §4.3)', () => {
  test('accepts a proof of every allowed algorithm, Ed25519 among them, and returns its key thumbprint', async () => {
    for (const alg of ['ES256', 'EdDSA', 'Ed25519', 'PS256'] as const) {
      const key = dpopKey(alg);
      const proof = await verifyDpopProof({ proofs: [dpopProof(key, { htm: 'POST', htu: url })], method: 'POST', urls: [url] }, deps());
      assert.equal(proof?.jkt, key.jkt, alg);
      assert.equal(proof?.alg, alg);
    }
  });

  test('computes RFC 7638 thumbprints as jose does', async () => {
    for (const alg of ['ES256', 'EdDSA', 'PS256'] as const) {
      const key = dpopKey(alg);
      assert.equal(jwkThumbprint(key.jwk), await calculateJwkThumbprint(key.jwk as JWK, 'sha256'));
    }
  });

  test('resolves nothing when the request has no DPoP header', async () => {
    assert.equal(await verifyDpopProof({ proofs: [], method: 'POST', urls: [url] }, deps()), undefined);
  });

  test('refuses two DPoP headers even when both are valid', async () => {
    const key = dpopKey();
    const proofs = [dpopProof(key, { htm: 'POST', htu: url }), dpopProof(key, { htm: 'POST', htu: url })];
    const error = await refusal(verifyDpopProof({ proofs, method: 'POST', urls: [url] }, deps()));
    assert.equal(error.error, 'invalid_dpop_proof');
    assert.equal(error.status, 400);
  });

  test('refuses a replayed jti, and keys the replay cache by the proof key', async () => {
    const d = deps();
    const key = dpopKey();
    const proof = dpopProof(key, { htm: 'POST', htu: url, jti: 'once' });
    await verifyDpopProof({ proofs: [proof], method: 'POST', urls: [url] }, d);
    assert.equal((await refusal(verifyDpopProof({ proofs: [proof], method: 'POST', urls: [url] }, d))).error, 'invalid_dpop_proof');
    assert.deepEqual([...d.replay.seen], [`dpop:${key.jkt}:once`]);
  });

  test('accepts iat within ±60 s and refuses it an hour off either way', async () => {
    const d = deps();
    const now = Math.floor(d.clock.now() / 1000);
    const key = dpopKey();
    for (const iat of [now - 60, now + 60]) {
      assert.ok(await verifyDpopProof({ proofs: [dpopProof(key, { htm: 'POST', htu: url, iat })], method: 'POST', urls: [url] }, d));
    }
    for (const iat of [now - 3600, now + 3600, now - 61]) {
      const error = await refusal(verifyDpopProof({ proofs: [dpopProof(key, { htm: 'POST', htu: url, iat })], method: 'POST', urls: [url] }, d));
      assert.equal(error.error, 'invalid_dpop_proof', `iat ${iat - now}`);
    }
  });

  test('checks ath against the access token presented with the proof', async () => {
    const key = dpopKey();
    const token = 'eyJ.token.value';
    assert.equal(accessTokenHash(token), ath(token));
    const ok = dpopProof(key, { htm: 'GET', htu: url, ath: ath(token) });
    assert.ok(await verifyDpopProof({ proofs: [ok], method: 'GET', urls: [url], accessToken: token }, deps()));
    for (const proof of [dpopProof(key, { htm: 'GET', htu: url }), dpopProof(key, { htm: 'GET', htu: url, ath: ath('another') })]) {
      assert.equal((await refusal(verifyDpopProof({ proofs: [proof], method: 'GET', urls: [url], accessToken: token }, deps()))).error, 'invalid_dpop_proof');
    }
  });

  test('asks for the server nonce when nonces are required, and accepts the current and previous one', async () => {
    const d = deps({ requireNonce: true });
    const key = dpopKey();
    const missing = await refusal(verifyDpopProof({ proofs: [dpopProof(key, { htm: 'POST', htu: url })], method: 'POST', urls: [url] }, d));
    assert.equal(missing.error, 'use_dpop_nonce');
    assert.equal(missing.status, 400);
    const nonce = missing.headers['dpop-nonce']!;
    assert.equal(nonce, d.nonces.current());
    const iat = () => Math.floor(d.clock.now() / 1000);
    assert.ok(await verifyDpopProof({ proofs: [dpopProof(key, { htm: 'POST', htu: url, nonce, iat: iat() })], method: 'POST', urls: [url] }, d));
    d.clock.advance(120_000);
    assert.notEqual(d.nonces.current(), nonce, 'the nonce rotates');
    assert.ok(await verifyDpopProof({ proofs: [dpopProof(key, { htm: 'POST', htu: url, nonce, iat: iat() })], method: 'POST', urls: [url] }, d), 'the previous window');
    d.clock.advance(240_000);
    const stale = await refusal(verifyDpopProof({ proofs: [dpopProof(key, { htm: 'POST', htu: url, nonce, iat: iat() })], method: 'POST', urls: [url] }, d));
    assert.equal(stale.error, 'use_dpop_nonce');
    assert.equal((await refusal(verifyDpopProof({ proofs: [dpopProof(key, { htm: 'POST', htu: url, nonce: 'x'.repeat(24), iat: iat() })], method: 'POST', urls: [url] }, d))).error, 'use_dpop_nonce');
  });

  test('derives the same nonces on every node from the same master key, and different ones from another', () => {
    const clock = new ManualClock();
    const a = new DpopNonces(dpopNonceSecret(Buffer.alloc(32, 1)), clock);
    const b = new DpopNonces(dpopNonceSecret(Buffer.alloc(32, 1)), clock);
    const c = new DpopNonces(dpopNonceSecret(Buffer.alloc(32, 2)), clock);
    assert.equal(a.current(), b.current());
    assert.ok(b.isValid(a.current()));
    assert.ok(!c.isValid(a.current()));
  });
});

describe('htu normalisation (RFC 9449 §4.3 (9), RFC 3986 §6)', () => {
  test('ignores query and fragment, letter case of scheme and host, and the default port', () => {
    const expected = normalizeHtu('https://as.example.com/token');
    for (const htu of ['https://as.example.com/token?x=1', 'https://as.example.com/token#frag', 'HTTPS://AS.Example.COM/token', 'https://as.example.com:443/token', 'https://as.example.com/./token']) {
      assert.equal(normalizeHtu(htu), expected, htu);
    }
    assert.equal(normalizeHtu('http://as.example.com:80/token'), 'http://as.example.com/token');
    assert.equal(normalizeHtu('https://as.example.com/%7Etoken'), 'https://as.example.com/~token');
  });

  test('keeps the path case-sensitive and refuses what is not an http(s) URL', () => {
    assert.notEqual(normalizeHtu('https://as.example.com/Token'), normalizeHtu('https://as.example.com/token'));
    assert.notEqual(normalizeHtu('https://as.example.com:8443/token'), normalizeHtu('https://as.example.com/token'));
    for (const htu of ['/token', 'ftp://as.example.com/token', 'https://user:pw@as.example.com/token', 'not a url']) {
      assert.equal(normalizeHtu(htu), undefined, htu);
    }
  });
});
