import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, test } from 'node:test';
import { SignJWT, exportSPKI } from 'jose';
import { verifyPartnerToken, type PartnerTokenExpectation, type VerifyPartnerTokenResult } from '../../src/federation/verify.ts';
import { FakeJwksUri, audiences, craft, harness, ourIssuer, partnerIssuer, partnerKey, profile } from './fixture.ts';

const asAssertion: PartnerTokenExpectation = { kind: 'jwt', audiences };

function refused(result: VerifyPartnerTokenResult, reason: RegExp): void {
  assert.equal(result.ok, false, 'the token was accepted');
  if (!result.ok) assert.match(result.reason, reason);
}

describe('verifying a partner token', () => {
  test('accepts a token signed by a registered partner and maps its claims to local attributes', async (t) => {
    const h = await harness(t);
    const key = await partnerKey('k1');
    await h.register(profile([key], { required_claims: ['org_lei'], claim_mapping: { lei: 'org_lei', desk: 'desk_id' } }));
    const token = await h.sign(key, { org_lei: '5493001KJTIIGC8Y1R12', desk_id: 'rates-emea', aud: [ourIssuer, 'https://other.example'] });
    const result = await verifyPartnerToken(h.deps, token, asAssertion);
    assert.ok(result.ok, result.ok ? '' : result.reason);
    assert.equal(result.token.partner.id, 'acme');
    assert.equal(result.token.subject, 'trader-7@acme');
    assert.deepEqual(result.token.attributes, { lei: '5493001KJTIIGC8Y1R12', desk: 'rates-emea' });
    assert.equal(result.token.claims.iss, partnerIssuer);
    assert.equal(result.token.kid, 'k1');
    assert.equal(result.token.expiresAt, h.now() + 120);
  });

  test('leaves out a mapped attribute whose claim is absent, and refuses one that is not a string', async (t) => {
    const h = await harness(t);
    const key = await partnerKey('k1');
    await h.register(profile([key], { claim_mapping: { lei: 'org_lei', desk: 'desk_id' } }));
    const partial = await verifyPartnerToken(h.deps, await h.sign(key, { org_lei: '5493001KJTIIGC8Y1R12' }), asAssertion);
    assert.ok(partial.ok);
    assert.deepEqual(partial.token.attributes, { lei: '5493001KJTIIGC8Y1R12' });
    refused(await verifyPartnerToken(h.deps, await h.sign(key, { desk_id: 42 }), asAssertion), /^claim desk_id \(mapped to desk\) is not a string$/);
  });

  test('refuses a token from an issuer that is not a registered partner, compared exactly', async (t) => {
    const h = await harness(t);
    const key = await partnerKey('k1');
    await h.register(profile([key]));
    refused(await verifyPartnerToken(h.deps, await h.sign(key, { iss: 'https://evil.example' }), asAssertion), /^issuer https:\/\/evil\.example is not a registered partner$/);
    refused(await verifyPartnerToken(h.deps, await h.sign(key, { iss: `${partnerIssuer}/` }), asAssertion), /is not a registered partner/);
    refused(await verifyPartnerToken(h.deps, await h.sign(key, { iss: partnerIssuer.toUpperCase() }), asAssertion), /is not a registered partner/);
    refused(await verifyPartnerToken(h.deps, await h.sign(key, { iss: undefined }), asAssertion), /^missing iss$/);
  });

  test('accepts an Ed25519 key under either name of its algorithm when the profile names one (RFC 9864 §2.2), and never with a P-256 key', async (t) => {
    const h = await harness(t);
    const ed = await partnerKey('ed', 'EdDSA');
    const ec = await partnerKey('ec');
    for (const [allowed, jwkAlg] of [[['EdDSA'], undefined], [['Ed25519'], undefined], [['EdDSA'], 'EdDSA'], [['Ed25519'], 'EdDSA']] as const) {
      await h.register(profile([{ ...ed, jwk: { ...ed.jwk, ...(jwkAlg ? { alg: jwkAlg } : {}) } }, ec], { algorithms: [...allowed, 'ES256'] }));
      for (const alg of ['EdDSA', 'Ed25519']) {
        const result = await verifyPartnerToken(h.deps, await h.sign(ed, {}, { alg }), asAssertion);
        assert.ok(result.ok, `${alg} under a profile allowing ${allowed}, jwk alg ${jwkAlg}: ${result.ok ? '' : result.reason}`);
      }
    }
    refused(await verifyPartnerToken(h.deps, craft({ alg: 'Ed25519', kid: 'ec' }, { iss: partnerIssuer, sub: 'x', aud: ourIssuer, iat: h.now(), exp: h.now() + 60 }), asAssertion), /does not verify Ed25519/);
  });

  test('refuses alg none in any letter case, even with a signature', async (t) => {
    const h = await harness(t);
    const key = await partnerKey('k1');
    await h.register(profile([key]));
    const claims = { iss: partnerIssuer, sub: 'x', aud: ourIssuer, iat: h.now(), exp: h.now() + 60 };
    for (const alg of ['none', 'None', 'NONE', 'nOnE']) {
      refused(await verifyPartnerToken(h.deps, craft({ alg, kid: 'k1' }, claims), asAssertion), new RegExp(`^algorithm ${alg} is never accepted`));
    }
    refused(await verifyPartnerToken(h.deps, craft({ alg: 'none' }, claims, ''), asAssertion), /unsecured \(empty signature\)/);
  });

  test('refuses HS256 made with the partner\'s public key as the HMAC secret', async (t) => {
    const h = await harness(t);
    const key = await partnerKey('k1');
    await h.register(profile([key]));
    const claims = { iss: partnerIssuer, sub: 'x', aud: ourIssuer, iat: h.now(), exp: h.now() + 60 };
    const { createPublicKey } = await import('node:crypto');
    const pem = await exportSPKI(createPublicKey({ key: key.jwk as import('node:crypto').JsonWebKey, format: 'jwk' }));
    for (const secret of [pem, JSON.stringify(key.jwk)]) {
      const token = await new SignJWT(claims).setProtectedHeader({ alg: 'HS256', kid: 'k1' }).sign(new TextEncoder().encode(secret));
      refused(await verifyPartnerToken(h.deps, token, asAssertion), /^algorithm HS256 is not allowed for partner acme \(symmetric algorithms are never accepted\)$/);
    }
    const input = craft({ alg: 'hs512', kid: 'k1' }, claims).split('.').slice(0, 2).join('.');
    const lowercase = `${input}.${createHmac('sha512', pem).update(input).digest('base64url')}`;
    refused(await verifyPartnerToken(h.deps, lowercase, asAssertion), /^algorithm hs512 is not allowed/);
  });

  test('refuses an asymmetric algorithm the profile does not allow', async (t) => {
    const h = await harness(t);
    const ec = await partnerKey('k1');
    const rsa = await partnerKey('r1', 'PS256');
    await h.register(profile([ec, rsa], { algorithms: ['ES256'] }));
    refused(await verifyPartnerToken(h.deps, await h.sign(rsa), asAssertion), /^algorithm PS256 is not allowed for partner acme \(allowed: ES256\)$/);
  });

  test('refuses a key whose type does not fit the algorithm, and a signature by another key', async (t) => {
    const h = await harness(t);
    const ec = await partnerKey('k1');
    const rsa = await partnerKey('r1', 'PS256');
    const stranger = await partnerKey('k1');
    await h.register(profile([ec, rsa], { algorithms: ['ES256', 'PS256'] }));
    refused(await verifyPartnerToken(h.deps, await h.sign(rsa, {}, { kid: 'k1' }), asAssertion), /^key "k1" of partner acme is an EC P-256 key; it does not verify PS256$/);
    refused(await verifyPartnerToken(h.deps, await h.sign(stranger), asAssertion), /^the signature does not verify with partner acme's key k1$/);
  });

  test('expired tokens are refused; 60 s of clock skew is allowed', async (t) => {
    const h = await harness(t);
    const key = await partnerKey('k1');
    await h.register(profile([key]));
    const token = await h.sign(key);
    h.clock.advance((120 + 30) * 1000);
    assert.ok((await verifyPartnerToken(h.deps, token, asAssertion)).ok, 'expired 30 s ago: within the skew');
    h.clock.advance(60_000);
    refused(await verifyPartnerToken(h.deps, token, asAssertion), /^the token expired at 2025-06-02T09:02:00Z, 90 s ago \(60 s skew allowed\)$/);
  });

  test('requires exp and iat, and honours nbf', async (t) => {
    const h = await harness(t);
    const key = await partnerKey('k1');
    await h.register(profile([key]));
    refused(await verifyPartnerToken(h.deps, await h.sign(key, { exp: undefined }), asAssertion), /^missing exp$/);
    refused(await verifyPartnerToken(h.deps, await h.sign(key, { iat: undefined }), asAssertion), /^missing iat$/);
    refused(await verifyPartnerToken(h.deps, await h.sign(key, { exp: '2030-01-01' }), asAssertion), /^exp is not a number$/);
    refused(await verifyPartnerToken(h.deps, await h.sign(key, { iat: h.now() + 120, exp: h.now() + 200 }), asAssertion), /^iat is 120 s in the future/);
    refused(await verifyPartnerToken(h.deps, await h.sign(key, { nbf: h.now() + 90 }), asAssertion), /^the token is not valid before .*, 90 s from now$/);
    assert.ok((await verifyPartnerToken(h.deps, await h.sign(key, { nbf: h.now() + 30 }), asAssertion)).ok, 'nbf within the skew');
  });

  test('refuses a token that lives longer than the profile allows', async (t) => {
    const h = await harness(t);
    const key = await partnerKey('k1');
    await h.register(profile([key]));
    refused(await verifyPartnerToken(h.deps, await h.sign(key, { exp: h.now() + 3600 }), asAssertion), /^assertion lifetime 3600 s exceeds the profile's 300 s$/);
    refused(await verifyPartnerToken(h.deps, await h.sign(key, { iat: h.now() - 250, exp: h.now() + 100 }), asAssertion), /lifetime 350 s exceeds/);
    assert.ok((await verifyPartnerToken(h.deps, await h.sign(key, { exp: h.now() + 300 }), asAssertion)).ok, 'exactly the limit');
  });

  test('refuses a token missing a required claim, naming it', async (t) => {
    const h = await harness(t);
    const key = await partnerKey('k1');
    await h.register(profile([key], { required_claims: ['lei', 'desk'] }));
    refused(await verifyPartnerToken(h.deps, await h.sign(key, { desk: 'rates' }), asAssertion), /^missing required claim lei$/);
    refused(await verifyPartnerToken(h.deps, await h.sign(key, { lei: null }), asAssertion), /^missing required claims lei, desk$/);
  });

  test('refuses a token for another audience, and one without an audience', async (t) => {
    const h = await harness(t);
    const key = await partnerKey('k1');
    await h.register(profile([key]));
    refused(
      await verifyPartnerToken(h.deps, await h.sign(key, { aud: 'https://orders.acme-bank.example' }), asAssertion),
      /^audience https:\/\/orders\.acme-bank\.example is not ours \(expected one of https:\/\/clearance\.example\.com, https:\/\/clearance\.example\.com\/token\)$/,
    );
    refused(await verifyPartnerToken(h.deps, await h.sign(key, { aud: undefined }), asAssertion), /^missing aud$/);
    assert.ok((await verifyPartnerToken(h.deps, await h.sign(key, { aud: `${ourIssuer}/token` }), asAssertion)).ok, 'the token endpoint URL');
  });

  test('refuses a client the profile does not list', async (t) => {
    const h = await harness(t);
    const key = await partnerKey('k1');
    await h.register(profile([key], { clients: ['exchange-gateway'] }));
    const token = await h.sign(key);
    refused(await verifyPartnerToken(h.deps, token, { ...asAssertion, clientId: 'broker-1' }), /^client broker-1 may not present tokens of partner acme$/);
    assert.ok((await verifyPartnerToken(h.deps, token, { ...asAssertion, clientId: 'exchange-gateway' })).ok);
  });

  test('ignores a key embedded in the jwk header and never fetches jku or x5u', async (t) => {
    const jwks = new FakeJwksUri();
    const h = await harness(t, { fetch: jwks.fetch });
    const key = await partnerKey('k1');
    const attacker = await partnerKey('attacker');
    await h.register(profile([key]));
    const withOwnKid = await h.sign(attacker, {}, { jwk: attacker.jwk, jku: 'https://evil.example/jwks', x5u: 'https://evil.example/cert' });
    refused(await verifyPartnerToken(h.deps, withOwnKid, asAssertion), /^key "attacker" is not among partner acme's keys$/);
    const withPartnerKid = await h.sign(attacker, {}, { kid: 'k1', jwk: attacker.jwk });
    refused(await verifyPartnerToken(h.deps, withPartnerKid, asAssertion), /^the signature does not verify with partner acme's key k1$/);
    assert.equal(jwks.fetches.length, 0, 'nothing was fetched');
  });

  test('an unknown kid refreshes the jwks_uri once; another within a minute does not refetch', async (t) => {
    const jwks = new FakeJwksUri();
    const h = await harness(t, { fetch: jwks.fetch });
    const k1 = await partnerKey('k1');
    const k2 = await partnerKey('k2');
    jwks.document = { keys: [k1.jwk] };
    await h.register(profile([], { jwks: undefined, jwks_uri: 'https://as.acme-bank.example/jwks' }));
    assert.ok((await verifyPartnerToken(h.deps, await h.sign(k1), asAssertion)).ok);
    assert.equal(jwks.fetches.length, 1);
    assert.ok((await verifyPartnerToken(h.deps, await h.sign(k1), asAssertion)).ok);
    assert.equal(jwks.fetches.length, 1, 'the key set is cached');

    h.clock.advance(2 * 60_000);
    refused(await verifyPartnerToken(h.deps, await h.sign(k2), asAssertion), /^key "k2" is not among partner acme's keys \(jwks_uri refetched\)$/);
    assert.equal(jwks.fetches.length, 2, 'one refresh for the unknown kid');

    jwks.document = { keys: [k1.jwk, k2.jwk] }; // the partner rotates in k2
    h.clock.advance(10_000);
    refused(await verifyPartnerToken(h.deps, await h.sign(k2, {}, { kid: 'k3' }), asAssertion), /not refetched/);
    refused(await verifyPartnerToken(h.deps, await h.sign(k2), asAssertion), /^key "k2" is not among partner acme's keys \(jwks_uri was fetched moments ago; not refetched\)$/);
    assert.equal(jwks.fetches.length, 2, 'no refetch within the rate limit');

    h.clock.advance(60_000);
    assert.ok((await verifyPartnerToken(h.deps, await h.sign(k2), asAssertion)).ok, 'after the limit, the refresh finds the new key');
    assert.equal(jwks.fetches.length, 3);
    assert.deepEqual(jwks.fetches[0]!.rules, { allowPrivateNetwork: false });
  });

  test('refuses every key of a jwks_uri that publishes a private key, and fails closed when it cannot be fetched', async (t) => {
    const jwks = new FakeJwksUri();
    const h = await harness(t, { fetch: jwks.fetch });
    const k1 = await partnerKey('k1');
    jwks.document = { keys: [{ ...k1.jwk, d: 'c2VjcmV0' }] };
    await h.register(profile([], { jwks: undefined, jwks_uri: 'https://as.acme-bank.example/jwks' }));
    refused(await verifyPartnerToken(h.deps, await h.sign(k1), asAssertion), /keys of partner acme are not available: .*keys\[0\] \(kid k1\) is not a public key \(has private member "d"\)/);

    const unreachable = async () => {
      throw new Error('cannot fetch https://as.acme-bank.example/jwks: ECONNREFUSED');
    };
    const g = await harness(t, { fetch: unreachable });
    await g.register(profile([], { jwks: undefined, jwks_uri: 'https://as.acme-bank.example/jwks' }));
    refused(await verifyPartnerToken(g.deps, await g.sign(k1), asAssertion), /not available: cannot fetch .*ECONNREFUSED/);
  });

  test('an ID token is refused unless the profile accepts ID tokens', async (t) => {
    const h = await harness(t);
    const key = await partnerKey('k1');
    await h.register(profile([key]));
    const idToken = await h.sign(key, { nonce: 'n-0S6_WzA2Mj', auth_time: h.now() - 10 }, { typ: 'JWT' });
    const asIdToken: PartnerTokenExpectation = { kind: 'id_token', audiences };
    refused(await verifyPartnerToken(h.deps, idToken, asIdToken), /^partner acme does not accept ID tokens \(accept_id_tokens is false\)$/);
    await h.register(profile([key], { accept_id_tokens: true }));
    assert.ok((await verifyPartnerToken(h.deps, idToken, asIdToken)).ok);
  });

  test('cross-JWT confusion: an access token is not an ID token, and neither is a JWT assertion', async (t) => {
    const h = await harness(t);
    const key = await partnerKey('k1');
    await h.register(profile([key], { accept_id_tokens: true }));
    const accessToken = await h.sign(key, { client_id: 'acme-app', scope: 'order:create' }, { typ: 'at+jwt' });
    const idToken = await h.sign(key, { nonce: 'n-0S6_WzA2Mj' }, { typ: 'JWT' });
    const plainIdToken = await h.sign(key, {});
    const as = (kind: 'access_token' | 'id_token' | 'jwt') => ({ kind, audiences });

    assert.ok((await verifyPartnerToken(h.deps, accessToken, as('access_token'))).ok);
    refused(await verifyPartnerToken(h.deps, accessToken, as('id_token')), /^an ID token has typ JWT or none; this one has typ "at\+jwt"/);
    refused(await verifyPartnerToken(h.deps, accessToken, as('jwt')), /^a JWT assertion has typ JWT or none; this one has typ "at\+jwt"/);
    refused(await verifyPartnerToken(h.deps, idToken, as('access_token')), /^an access token must have typ at\+jwt \(RFC 9068 §4\); this one has typ "JWT"$/);
    refused(await verifyPartnerToken(h.deps, plainIdToken, as('access_token')), /this one has no typ$/);
    refused(await verifyPartnerToken(h.deps, idToken, as('jwt')), /^the token has a "nonce" claim: it is an ID token, not a JWT assertion/);
    const dpopProof = await h.sign(key, { htm: 'POST', htu: `${ourIssuer}/token` }, { typ: 'dpop+jwt' });
    refused(await verifyPartnerToken(h.deps, dpopProof, as('jwt')), /typ "dpop\+jwt"/);
    const logoutToken = await h.sign(key, { events: {} });
    refused(await verifyPartnerToken(h.deps, logoutToken, as('jwt')), /"events" claim: a JWT of another kind/);
    assert.ok((await verifyPartnerToken(h.deps, await h.sign(key, {}, { typ: 'application/JWT' }), as('jwt'))).ok, 'typ compared case-insensitively');
  });

  test('a single-use assertion needs a jti and is accepted once', async (t) => {
    const h = await harness(t);
    const key = await partnerKey('k1');
    await h.register(profile([key]));
    const once: PartnerTokenExpectation = { ...asAssertion, singleUse: true };
    const token = await h.sign(key);
    const first = await verifyPartnerToken(h.deps, token, once);
    assert.ok(first.ok);
    assert.equal(typeof first.token.jti, 'string');
    refused(await verifyPartnerToken(h.deps, token, once), /^jti .* of partner acme was already used$/);
    refused(await verifyPartnerToken(h.deps, await h.sign(key, { jti: undefined }), once), /^missing jti/);
    assert.ok((await verifyPartnerToken(h.deps, token, asAssertion)).ok, 'without singleUse the jti is not consulted');
  });

  test('refuses what is not a compact JWS, without throwing', async (t) => {
    const h = await harness(t);
    const key = await partnerKey('k1');
    await h.register(profile([key]));
    const token = await h.sign(key);
    const [header, payload, signature] = token.split('.') as [string, string, string];
    const cases: [string, RegExp][] = [
      ['', /empty/],
      [JSON.stringify({ payload, signatures: [{ protected: header, signature }] }), /JSON serialization/],
      [`${header}.${payload}.${signature}.x.y`, /is a JWE/],
      [`${header}.${payload}`, /2 segments/],
      [`${header}.${payload}.${signature}=`, /not canonical base64url/],
      [`${header}.${payload}.${signature}`.replace(/^./, '*'), /not canonical base64url/],
      [`${Buffer.from('[1]').toString('base64url')}.${payload}.${signature}`, /header is not a JSON object/],
      [`${header}.${Buffer.from('not json').toString('base64url')}.${signature}`, /claims set is not a JSON object/],
      [`${header}.${Buffer.from(JSON.stringify({ pad: 'x'.repeat(17_000) })).toString('base64url')}.${signature}`, /bytes \(limit 16384\)/],
    ];
    for (const [input, reason] of cases) refused(await verifyPartnerToken(h.deps, input, asAssertion), reason);
    const crit = craft({ alg: 'ES256', kid: 'k1', crit: ['exp'], exp: 1 }, { iss: partnerIssuer });
    refused(await verifyPartnerToken(h.deps, crit, asAssertion), /^the header has crit \(\["exp"\]\), which is not supported$/);
    const notAString = craft({ alg: 'ES256', kid: 'k1' }, { iss: 42 });
    refused(await verifyPartnerToken(h.deps, notAString, asAssertion), /^iss is not a string$/);
  });
});
