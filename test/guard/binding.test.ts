import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createDpopNonces, createGuard, type Guard } from 'clearance/guard';
import { ath, dpopKey, dpopProof, type DpopKey } from '../helpers/dpop.ts';
import { makePki, type Pki } from '../helpers/pki.ts';
import { guardFixture, ordersApi, refused, type GuardFixture } from './fixture.ts';

// Sender-constrained tokens at the resource server: DPoP (RFC 9449 §4.3, §7.1) and certificate
// binding (RFC 8705 §3), with real tokens Clearance bound at its token endpoint.

const url = 'https://orders.example.com/api/orders';

let f: GuardFixture;
let pki: Pki;
let guard: Guard;
let key: DpopKey;
let token: string;
const cleanups: (() => unknown)[] = [];

before(async () => {
  const t = { after: (fn: () => unknown) => cleanups.push(fn) };
  f = await guardFixture(t);
  pki = makePki(t);
  guard = createGuard({ issuer: f.issuer, audience: ordersApi, jwksUri: `${f.issuer}/jwks` });
  key = dpopKey();
  const issued = await f.token({ dpop: key });
  assert.equal(issued.token_type, 'DPoP');
  token = issued.access_token;
});
after(async () => {
  for (const fn of cleanups.reverse()) await fn();
});

/** A request with the DPoP scheme and a proof for it (claims and options varied per test). */
function dpopRequest(proof: string | string[] | undefined, options: { method?: string; url?: string; scheme?: string; token?: string } = {}) {
  return {
    method: options.method ?? 'POST',
    url: options.url ?? url,
    headers: { authorization: `${options.scheme ?? 'DPoP'} ${options.token ?? token}`, ...(proof !== undefined ? { dpop: proof } : {}) },
  };
}

const proofFor = (claims: Partial<Parameters<typeof dpopProof>[1]> = {}, options: Parameters<typeof dpopProof>[2] = {}, signer: DpopKey = key) =>
  dpopProof(signer, { htm: 'POST', htu: url, ath: ath(token), ...claims }, options);

describe('the guard with DPoP-bound tokens', () => {
  test('passes a token with a valid proof and reports the binding', async () => {
    const access = await guard.verify(dpopRequest(proofFor()));
    assert.equal(access.scheme, 'DPoP');
    assert.deepEqual(access.binding, { method: 'dpop', jkt: key.jkt });
    assert.deepEqual(access.headers, {});
  });

  test('passes a token bound to an Ed25519 key with an Ed25519 proof (RFC 9864 §2.2), also when its algorithms name only EdDSA', async () => {
    const ed = dpopKey('Ed25519');
    const issued = await f.token({ dpop: ed });
    assert.equal(issued.token_type, 'DPoP');
    const edProof = (options: Parameters<typeof dpopProof>[2] = {}) => dpopProof(ed, { htm: 'POST', htu: url, ath: ath(issued.access_token) }, options);
    const access = await guard.verify(dpopRequest(edProof(), { token: issued.access_token }));
    assert.deepEqual(access.binding, { method: 'dpop', jkt: ed.jkt });
    const eddsaOnly = createGuard({ issuer: f.issuer, audience: ordersApi, jwksUri: `${f.issuer}/jwks`, dpop: { algorithms: ['ES256', 'EdDSA'] } });
    await eddsaOnly.verify(dpopRequest(edProof(), { token: issued.access_token }));
    await eddsaOnly.verify(dpopRequest(edProof({ header: { alg: 'EdDSA' } }), { token: issued.access_token }));
    const error = await refused(eddsaOnly.verify(dpopRequest(undefined, { token: issued.access_token })), 401, 'invalid_dpop_proof');
    assert.match(error.wwwAuthenticate!, /algs="ES256 EdDSA Ed25519"/);
  });

  test('accepts a request URL with a query, another letter case in the host, and the default port', async () => {
    await guard.verify(dpopRequest(proofFor(), { url: 'https://Orders.Example.COM:443/api/orders?page=2' }));
    await guard.verify(dpopRequest(proofFor({ htu: 'https://orders.example.com/api/orders?ignored=1' })));
  });

  test('refuses a request without a proof, or with two, as invalid_dpop_proof with a DPoP challenge', async () => {
    const none = await refused(guard.verify(dpopRequest(undefined)), 401, 'invalid_dpop_proof');
    assert.equal(none.wwwAuthenticate, 'DPoP error="invalid_dpop_proof", error_description="the DPoP scheme needs a DPoP proof", algs="ES256 EdDSA Ed25519 PS256"');
    await refused(guard.verify(dpopRequest([proofFor(), proofFor()])), 401, 'invalid_dpop_proof', 'two header fields');
    await refused(guard.verify(dpopRequest(`${proofFor()}, ${proofFor()}`)), 401, 'invalid_dpop_proof', 'two joined values');
  });

  test('refuses a valid proof made with another key than the token is bound to', async () => {
    const error = await refused(guard.verify(dpopRequest(proofFor({}, {}, dpopKey()))), 401, 'invalid_dpop_proof');
    assert.match(error.description, /not signed with the key the access token is bound to/);
  });

  test('refuses a proof for another URL, another method, or another token (ath)', async () => {
    await refused(guard.verify(dpopRequest(proofFor({ htu: 'https://orders.example.com/api/cancel' }))), 401, 'invalid_dpop_proof', 'another path');
    await refused(guard.verify(dpopRequest(proofFor({ htu: 'https://evil.example.com/api/orders' }))), 401, 'invalid_dpop_proof', 'another host');
    await refused(guard.verify(dpopRequest(proofFor({ htm: 'GET' }))), 401, 'invalid_dpop_proof', 'GET proof on a POST');
    await refused(guard.verify(dpopRequest(proofFor({ htm: 'post' }))), 401, 'invalid_dpop_proof', 'method in lower case');
    await refused(guard.verify(dpopRequest(proofFor({ ath: ath('another-token') }))), 401, 'invalid_dpop_proof', 'ath of another token');
    await refused(guard.verify(dpopRequest(proofFor({}, { omit: ['ath'] }))), 401, 'invalid_dpop_proof', 'no ath');
  });

  test('refuses a replayed proof, and counts a replay before the key check', async () => {
    const proof = proofFor();
    await guard.verify(dpopRequest(proof));
    const replay = await refused(guard.verify(dpopRequest(proof)), 401, 'invalid_dpop_proof');
    assert.match(replay.description, /already used/);
    // A proof with the wrong key is refused for its key, and its replay as a replay.
    const foreign = proofFor({}, {}, dpopKey());
    assert.match((await refused(guard.verify(dpopRequest(foreign)), 401, 'invalid_dpop_proof')).description, /bound to/);
    assert.match((await refused(guard.verify(dpopRequest(foreign)), 401, 'invalid_dpop_proof')).description, /already used/);
  });

  test('refuses malformed proofs: typ, alg, a private or missing jwk, a bad signature, an old iat, missing claims', async () => {
    const now = Math.floor(Date.now() / 1000);
    const privateJwk = key.privateKey.export({ format: 'jwk' });
    const cases: [string, string, RegExp][] = [
      ['typ JWT', proofFor({}, { header: { typ: 'JWT' } }), /typ "JWT"/],
      ['no typ', proofFor({}, { header: { typ: undefined } }), /typ/],
      ['alg none', proofFor({}, { header: { alg: 'none' } }), /alg "none" is not allowed/],
      ['alg RS256', proofFor({}, { header: { alg: 'RS256' } }), /alg "RS256" is not allowed/],
      ['alg HS256', proofFor({}, { header: { alg: 'HS256' } }), /alg "HS256" is not allowed/],
      ['a private jwk', proofFor({}, { header: { jwk: privateJwk } }), /private member "d"/],
      ['no jwk', proofFor({}, { header: { jwk: undefined } }), /no jwk/],
      ['a bad signature', proofFor({}, { signWith: dpopKey().privateKey }), /does not verify/],
      ['iat an hour ago', proofFor({ iat: now - 3600 }), /iat is -36\d\d s from now/],
      ['iat in an hour', proofFor({ iat: now + 3600 }), /iat is 3[56]\d\d s from now/],
      ['no jti', proofFor({}, { omit: ['jti'] }), /jti/],
      ['no htm', proofFor({}, { omit: ['htm'] }), /htm/],
      ['no htu', proofFor({}, { omit: ['htu'] }), /htu/],
      ['no iat', proofFor({}, { omit: ['iat'] }), /iat/],
      ['not a JWT', 'garbage', /not a compact JWS/],
    ];
    for (const [name, proof, reason] of cases) {
      const error = await refused(guard.verify(dpopRequest(proof)), 401, 'invalid_dpop_proof', name);
      assert.match(error.detail!, reason, name);
    }
  });

  test('refuses a DPoP-bound token presented with the Bearer scheme, and an unbound token with the DPoP scheme', async () => {
    const asBearer = await refused(guard.verify(dpopRequest(proofFor(), { scheme: 'Bearer' })), 401, 'invalid_token');
    assert.match(asBearer.description, /needs the DPoP scheme/);
    const { access_token: unbound } = await f.token();
    await refused(
      guard.verify(dpopRequest(dpopProof(key, { htm: 'POST', htu: url, ath: ath(unbound) }), { token: unbound })),
      401,
      'invalid_token',
      'bearer token with the DPoP scheme',
    );
  });

  test('asks for its nonce with use_dpop_nonce and a DPoP-Nonce header, then accepts the retry and hands out the next nonce', async () => {
    const nonces = createDpopNonces();
    const noncing = createGuard({ issuer: f.issuer, audience: ordersApi, jwksUri: `${f.issuer}/jwks`, dpop: { nonces } });
    const first = await refused(noncing.verify(dpopRequest(proofFor())), 401, 'use_dpop_nonce');
    const nonce = first.headers['dpop-nonce']!;
    assert.ok(nonce);
    assert.match(first.wwwAuthenticate!, /^DPoP error="use_dpop_nonce"/);
    await refused(noncing.verify(dpopRequest(proofFor({ nonce: 'made-up-nonce-0123456789' }))), 401, 'use_dpop_nonce', 'a nonce it never gave');
    const access = await noncing.verify(dpopRequest(proofFor({ nonce })));
    assert.equal(access.headers['dpop-nonce'], nonces.current());
  });

  test('refuses new proofs when its bounded replay cache is full of live entries, rather than forget one', async () => {
    const { MemoryDpopReplayStore } = await import('clearance/guard');
    const replay = new MemoryDpopReplayStore({ maxEntries: 1 });
    const small = createGuard({ issuer: f.issuer, audience: ordersApi, jwksUri: `${f.issuer}/jwks`, dpop: { replay } });
    await small.verify(dpopRequest(proofFor()));
    await refused(small.verify(dpopRequest(proofFor())), 503, 'temporarily_unavailable');
    assert.equal(replay.size, 1);
  });
});

describe('the guard with certificate-bound tokens', () => {
  test('passes a token over a connection with its certificate, and refuses another certificate or none', async () => {
    const mine = pki.selfSigned('mine', '/CN=order-router');
    const other = pki.selfSigned('other', '/CN=order-router');
    const { access_token, token_type } = await f.token({ certificate: mine });
    assert.equal(token_type, 'Bearer', 'RFC 8705 keeps the Bearer scheme');
    const request = (thumbprint: string | undefined) => ({ method: 'GET', url, headers: { authorization: `Bearer ${access_token}` }, clientCertificateThumbprint: thumbprint });

    const access = await guard.verify(request(mine.thumbprint));
    assert.deepEqual(access.binding, { method: 'mtls', x5tS256: mine.thumbprint });
    const error = await refused(guard.verify(request(other.thumbprint)), 401, 'invalid_token');
    assert.match(error.description, /another client certificate/);
    await refused(guard.verify(request(undefined)), 401, 'invalid_token', 'no certificate');

    const constrained = createGuard({ issuer: f.issuer, audience: ordersApi, jwksUri: `${f.issuer}/jwks`, requireSenderConstraint: true });
    assert.equal((await constrained.verify(request(mine.thumbprint))).binding.method, 'mtls');
  });
});
