import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, test, type TestContext } from 'node:test';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import {
  assertionBody,
  assertionClaims,
  harness,
  hs256Jwt,
  issuer,
  keyPair,
  makeCertificate,
  parEndpoint,
  rejectsWith,
  rs256Jwt,
  signAssertion,
  tokenEndpoint,
  unsecuredJwt,
  type Harness,
  type KeyPair,
} from './fixture.ts';

const clientId = 'oms-service';

interface Setup {
  h: Harness;
  es256: KeyPair;
  /** Sends an assertion signed with the client's ES256 key (kid "es-1") and these claims/header. */
  send(claims?: Record<string, unknown>, header?: Record<string, unknown>, extra?: Record<string, string>): ReturnType<Harness['authenticate']>;
}

/** A private_key_jwt client with one ES256 key, kid "es-1". */
async function setup(t: TestContext, metadata: Record<string, unknown> = {}): Promise<Setup> {
  const h = await harness(t);
  const es256 = keyPair('ES256');
  await h.register({
    client_id: clientId,
    token_endpoint_auth_method: 'private_key_jwt',
    jwks: { keys: [{ ...es256.jwk, kid: 'es-1' }] },
    ...metadata,
  });
  return {
    h,
    es256,
    send: (claims = {}, header = { kid: 'es-1' }, extra = {}) =>
      h.authenticate({ body: assertionBody(signAssertion(es256, assertionClaims(clientId, h.clock, claims), header), extra) }),
  };
}

describe('private_key_jwt: accepted assertions', () => {
  test('authenticates a client with an ES256 assertion signed by its registered key', async (t) => {
    const { send } = await setup(t);
    const result = await send();
    assert.equal(result.client.metadata.client_id, clientId);
    assert.equal(result.method, 'private_key_jwt');
    assert.equal(typeof result.assertionJti, 'string');
    assert.equal(result.certificateThumbprint, undefined);
  });

  test('authenticates a client with an EdDSA assertion', async (t) => {
    const h = await harness(t);
    const key = keyPair('EdDSA');
    await h.register({ client_id: clientId, token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [key.jwk] } });
    const result = await h.authenticate({ body: assertionBody(signAssertion(key, assertionClaims(clientId, h.clock))) });
    assert.equal(result.method, 'private_key_jwt');
  });

  test('authenticates a client with an Ed25519 assertion (RFC 9864 §2.2), whichever of the two names its key or registration uses', async (t) => {
    const h = await harness(t);
    const key = keyPair('EdDSA');
    const ed25519 = (header: Record<string, unknown> = {}) =>
      new SignJWT(assertionClaims(clientId, h.clock)).setProtectedHeader({ alg: 'Ed25519', ...header }).sign(key.privateKey);
    for (const [registered, jwkAlg] of [[undefined, undefined], ['EdDSA', 'EdDSA'], ['Ed25519', 'Ed25519'], ['EdDSA', 'Ed25519']] as const) {
      await h.register({
        client_id: clientId,
        token_endpoint_auth_method: 'private_key_jwt',
        ...(registered ? { token_endpoint_auth_signing_alg: registered } : {}),
        jwks: { keys: [{ ...key.jwk, kid: 'ed', ...(jwkAlg ? { alg: jwkAlg } : {}) }] },
      });
      const what = `registered ${registered}, jwk alg ${jwkAlg}`;
      assert.equal((await h.authenticate({ body: assertionBody(await ed25519({ kid: 'ed' })) })).method, 'private_key_jwt', what);
      assert.equal((await h.authenticate({ body: assertionBody(signAssertion(key, assertionClaims(clientId, h.clock))) })).method, 'private_key_jwt', `EdDSA, ${what}`);
    }
    // One algorithm under two names, never another: a client registered for ES256 refuses both.
    await h.register({ client_id: clientId, token_endpoint_auth_method: 'private_key_jwt', token_endpoint_auth_signing_alg: 'ES256', jwks: { keys: [key.jwk] } });
    await rejectsWith(h.authenticate({ body: assertionBody(await ed25519()) }), { detail: /alg Ed25519 is not the client's registered ES256/ });
  });

  test('refuses an Ed25519 assertion whose kid names a P-256 key', async (t) => {
    const { h } = await setup(t);
    const ed = keyPair('EdDSA');
    const assertion = await new SignJWT(assertionClaims(clientId, h.clock)).setProtectedHeader({ alg: 'Ed25519', kid: 'es-1' }).sign(ed.privateKey);
    await rejectsWith(h.authenticate({ body: assertionBody(assertion) }), { detail: /names a key that does not verify Ed25519/ });
  });

  test('authenticates a client with a PS256 assertion', async (t) => {
    const h = await harness(t);
    const key = keyPair('PS256');
    await h.register({ client_id: clientId, token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [key.jwk] } });
    const result = await h.authenticate({ body: assertionBody(signAssertion(key, assertionClaims(clientId, h.clock))) });
    assert.equal(result.method, 'private_key_jwt');
  });

  test('accepts an assertion made by jose SignJWT, as client libraries make them', async (t) => {
    const h = await harness(t);
    const { privateKey, publicKey } = await generateKeyPair('ES256');
    await h.register({ client_id: clientId, token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [{ ...(await exportJWK(publicKey)), kid: 'k' }] } });
    const now = Math.floor(h.clock.now() / 1000);
    const assertion = await new SignJWT({})
      .setProtectedHeader({ alg: 'ES256', kid: 'k' })
      .setIssuer(clientId)
      .setSubject(clientId)
      .setAudience(issuer)
      .setJti('jti-from-jose')
      .setIssuedAt(now)
      .setExpirationTime(now + 120)
      .sign(privateKey);
    const result = await h.authenticate({ body: assertionBody(assertion, { client_id: clientId }) });
    assert.equal(result.assertionJti, 'jti-from-jose');
  });

  test('accepts a kid-less assertion when the client has a single key', async (t) => {
    const { send } = await setup(t);
    assert.equal((await send({}, {})).method, 'private_key_jwt');
  });

  test('accepts a kid-less assertion by trying each of the client keys for its algorithm', async (t) => {
    const h = await harness(t);
    const first = keyPair('ES256');
    const second = keyPair('ES256');
    await h.register({ client_id: clientId, token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [{ ...first.jwk, kid: 'a' }, { ...second.jwk, kid: 'b' }] } });
    const result = await h.authenticate({ body: assertionBody(signAssertion(second, assertionClaims(clientId, h.clock))) });
    assert.equal(result.method, 'private_key_jwt');
  });

  test('selects the key named by kid among several keys of different types', async (t) => {
    const h = await harness(t);
    const ec = keyPair('ES256');
    const ed = keyPair('EdDSA');
    await h.register({ client_id: clientId, token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [{ ...ec.jwk, kid: 'ec' }, { ...ed.jwk, kid: 'ed' }] } });
    const result = await h.authenticate({ body: assertionBody(signAssertion(ed, assertionClaims(clientId, h.clock), { kid: 'ed' })) });
    assert.equal(result.method, 'private_key_jwt');
  });

  test('accepts an nbf about 8 seconds in the future', async (t) => {
    const { h, send } = await setup(t);
    const now = Math.floor(h.clock.now() / 1000);
    assert.equal((await send({ iat: now, nbf: now + 8, exp: now + 68 })).method, 'private_key_jwt');
  });

  test('accepts an iat a few seconds in the future (clock skew)', async (t) => {
    const { h, send } = await setup(t);
    const now = Math.floor(h.clock.now() / 1000);
    assert.equal((await send({ iat: now + 30, nbf: now + 30, exp: now + 90 })).method, 'private_key_jwt');
  });

  test('accepts an assertion that expired less than the 60 second clock skew ago', async (t) => {
    const { h, send } = await setup(t);
    const now = Math.floor(h.clock.now() / 1000);
    assert.equal((await send({ iat: now - 90, nbf: now - 90, exp: now - 30 })).method, 'private_key_jwt');
  });

  test('accepts a lifetime of exactly five minutes', async (t) => {
    const { h, send } = await setup(t);
    const now = Math.floor(h.clock.now() / 1000);
    assert.equal((await send({ iat: now, nbf: now, exp: now + 300 })).method, 'private_key_jwt');
  });

  test('accepts an assertion without iat and nbf when exp is within five minutes', async (t) => {
    const { h, send } = await setup(t);
    const now = Math.floor(h.clock.now() / 1000);
    assert.equal((await send({ iat: undefined, nbf: undefined, exp: now + 120 })).method, 'private_key_jwt');
  });

  for (const typ of ['JWT', 'jwt', 'client-authentication+jwt', 'application/client-authentication+jwt']) {
    test(`accepts typ "${typ}"`, async (t) => {
      const { send } = await setup(t);
      assert.equal((await send({}, { kid: 'es-1', typ })).method, 'private_key_jwt');
    });
  }

  test('accepts a client_id in the body that matches the assertion', async (t) => {
    const { send } = await setup(t);
    assert.equal((await send({}, { kid: 'es-1' }, { client_id: clientId })).method, 'private_key_jwt');
  });

  test('accepts the same jti from two different clients', async (t) => {
    const { h, send } = await setup(t);
    const other = keyPair('ES256');
    await h.register({ client_id: 'risk-service', token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [other.jwk] } });
    await send({ jti: 'shared-jti' });
    const result = await h.authenticate({ body: assertionBody(signAssertion(other, assertionClaims('risk-service', h.clock, { jti: 'shared-jti' }))) });
    assert.equal(result.client.metadata.client_id, 'risk-service');
  });

  test('returns the certificate thumbprint when a private_key_jwt client also presents a certificate', async (t) => {
    const { h, es256 } = await setup(t);
    const { certificate } = makeCertificate({ subject: '/CN=oms-service' });
    const result = await h.authenticate({
      body: assertionBody(signAssertion(es256, assertionClaims(clientId, h.clock))),
      certificate,
    });
    assert.match(result.certificateThumbprint ?? '', /^[A-Za-z0-9_-]{43}$/);
  });
});

describe('private_key_jwt: audience', () => {
  test('rejects an aud equal to the token endpoint', async (t) => {
    const { send } = await setup(t);
    await rejectsWith(send({ aud: tokenEndpoint }), { detail: /aud .* is not the issuer/, description: /issuer identifier/ });
  });

  test('rejects an aud equal to the PAR endpoint', async (t) => {
    const { send } = await setup(t);
    await rejectsWith(send({ aud: parEndpoint }), { detail: /aud .* is not the issuer/ });
  });

  test('rejects an aud array holding the issuer and another audience', async (t) => {
    const { send } = await setup(t);
    await rejectsWith(send({ aud: [issuer, 'https://other.example'] }), { detail: /aud is an array/ });
  });

  test('rejects an aud array holding only the issuer', async (t) => {
    const { send } = await setup(t);
    await rejectsWith(send({ aud: [issuer] }), { detail: /aud is an array/ });
  });

  test('rejects an aud naming another server', async (t) => {
    const { send } = await setup(t);
    await rejectsWith(send({ aud: 'https://as.other.example' }), { detail: /aud .* is not the issuer/ });
  });

  test('rejects the issuer with a trailing slash', async (t) => {
    const { send } = await setup(t);
    await rejectsWith(send({ aud: `${issuer}/` }), { detail: /aud .* is not the issuer/ });
  });

  test('rejects a missing aud', async (t) => {
    const { send } = await setup(t);
    await rejectsWith(send({ aud: undefined }), { detail: /aud undefined is not the issuer|aud .* is not the issuer/ });
  });
});

describe('private_key_jwt: time', () => {
  test('rejects an exp more than five minutes in the past', async (t) => {
    const { h, send } = await setup(t);
    const now = Math.floor(h.clock.now() / 1000);
    await rejectsWith(send({ iat: now - 360, nbf: now - 360, exp: now - 301 }), { detail: /expired/ });
  });

  test('rejects an exp just beyond the 60 second skew', async (t) => {
    const { h, send } = await setup(t);
    const now = Math.floor(h.clock.now() / 1000);
    await rejectsWith(send({ iat: now - 120, nbf: now - 120, exp: now - 61 }), { detail: /expired/ });
  });

  test('rejects a missing exp', async (t) => {
    const { send } = await setup(t);
    await rejectsWith(send({ exp: undefined }), { detail: /no exp/ });
  });

  test('rejects a non-numeric exp', async (t) => {
    const { h, send } = await setup(t);
    await rejectsWith(send({ exp: String(Math.floor(h.clock.now() / 1000) + 60) }), { detail: /"exp" claim must be a number/ });
  });

  test('rejects an iat more than 60 seconds in the future', async (t) => {
    const { h, send } = await setup(t);
    const now = Math.floor(h.clock.now() / 1000);
    await rejectsWith(send({ iat: now + 61, nbf: undefined, exp: now + 120 }), { detail: /iat is 61 s in the future/ });
  });

  test('rejects an nbf more than 60 seconds in the future', async (t) => {
    const { h, send } = await setup(t);
    const now = Math.floor(h.clock.now() / 1000);
    await rejectsWith(send({ iat: now, nbf: now + 61, exp: now + 120 }), { detail: /"nbf" claim timestamp check failed/, description: /not yet valid/ });
  });

  test('rejects a lifetime over five minutes from iat to exp', async (t) => {
    const { h, send } = await setup(t);
    const now = Math.floor(h.clock.now() / 1000);
    await rejectsWith(send({ iat: now, nbf: undefined, exp: now + 301 }), { detail: /lives 301 s from iat/ });
  });

  test('rejects a lifetime over five minutes from nbf to exp', async (t) => {
    const { h, send } = await setup(t);
    const now = Math.floor(h.clock.now() / 1000);
    await rejectsWith(send({ iat: undefined, nbf: now - 10, exp: now + 295 }), { detail: /lives 305 s from nbf/ });
  });

  test('rejects an exp far in the future when iat and nbf are absent', async (t) => {
    const { h, send } = await setup(t);
    const now = Math.floor(h.clock.now() / 1000);
    await rejectsWith(send({ iat: undefined, nbf: undefined, exp: now + 3600 }), { detail: /lives 3600 s from now/ });
  });
});

describe('private_key_jwt: issuer, subject and jti', () => {
  test('rejects a missing sub', async (t) => {
    const { send } = await setup(t);
    await rejectsWith(send({ sub: undefined }), { detail: /no sub/ });
  });

  test('rejects a missing sub even when client_id is in the body', async (t) => {
    const { send } = await setup(t);
    await rejectsWith(send({ sub: undefined }, { kid: 'es-1' }, { client_id: clientId }), { detail: /no sub/ });
  });

  test('rejects an iss different from sub', async (t) => {
    const { send } = await setup(t);
    await rejectsWith(send({ iss: 'someone-else' }), { detail: /iss "someone-else" is not client_id/ });
  });

  test('rejects a missing iss', async (t) => {
    const { send } = await setup(t);
    await rejectsWith(send({ iss: undefined }), { detail: /iss .* is not client_id/ });
  });

  test('rejects a sub naming another client than the client_id in the body', async (t) => {
    const { h, send } = await setup(t);
    await h.register({ client_id: 'risk-service', token_endpoint_auth_method: 'client_secret_basic' });
    await rejectsWith(send({}, { kid: 'es-1' }, { client_id: 'risk-service' }), { detail: /client_id "risk-service" in the body differs from "oms-service"/ });
  });

  test('rejects an assertion whose sub names an unknown client', async (t) => {
    const { send } = await setup(t);
    await rejectsWith(send({ iss: 'ghost', sub: 'ghost' }), { detail: /unknown client "ghost"/ });
  });

  test('rejects a missing jti', async (t) => {
    const { send } = await setup(t);
    await rejectsWith(send({ jti: undefined }), { detail: /no jti/ });
  });

  test('rejects an empty or overlong jti', async (t) => {
    const { send } = await setup(t);
    await rejectsWith(send({ jti: '' }), { detail: /jti is not a string/ });
    await rejectsWith(send({ jti: 'x'.repeat(257) }), { detail: /jti is not a string/ });
  });

  test('rejects a reused jti', async (t) => {
    const { h, es256 } = await setup(t);
    const assertion = signAssertion(es256, assertionClaims(clientId, h.clock, { jti: 'once' }), { kid: 'es-1' });
    await h.authenticate({ body: assertionBody(assertion) });
    await rejectsWith(h.authenticate({ body: assertionBody(assertion) }), { detail: /jti "once" of oms-service was already used/ });
  });

  test('rejects a reused jti in a fresh assertion', async (t) => {
    const { h, send } = await setup(t);
    await send({ jti: 'reused' });
    h.clock.advance(10_000);
    await rejectsWith(send({ jti: 'reused' }), { detail: /already used/ });
  });

  test('rejects two simultaneous uses of one assertion, accepting exactly one', async (t) => {
    const { h, es256 } = await setup(t);
    const assertion = signAssertion(es256, assertionClaims(clientId, h.clock), { kid: 'es-1' });
    const results = await Promise.allSettled(Array.from({ length: 5 }, () => h.authenticate({ body: assertionBody(assertion) })));
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
  });
});

describe('private_key_jwt: algorithms and keys', () => {
  test('rejects an assertion signed with RS256', async (t) => {
    const h = await harness(t);
    const rsa = keyPair('PS256');
    await h.register({ client_id: clientId, token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [rsa.jwk] } });
    await rejectsWith(h.authenticate({ body: assertionBody(rs256Jwt(rsa.privateKey, assertionClaims(clientId, h.clock))) }), {
      detail: /alg "RS256" is not allowed/,
    });
  });

  for (const alg of ['none', 'None', 'NONE', 'nOnE']) {
    test(`rejects alg "${alg}"`, async (t) => {
      const { h } = await setup(t);
      await rejectsWith(h.authenticate({ body: assertionBody(unsecuredJwt(alg, assertionClaims(clientId, h.clock), 'c2ln')) }), {
        detail: /alg is "none"/,
      });
    });
  }

  test('rejects an unsecured JWT with an empty signature', async (t) => {
    const { h } = await setup(t);
    await rejectsWith(h.authenticate({ body: assertionBody(unsecuredJwt('none', assertionClaims(clientId, h.clock))) }), {
      detail: /unsecured/,
    });
  });

  test('rejects an alg other than the client registered token_endpoint_auth_signing_alg', async (t) => {
    const h = await harness(t);
    const ec = keyPair('ES256');
    const ed = keyPair('EdDSA');
    await h.register({
      client_id: clientId,
      token_endpoint_auth_method: 'private_key_jwt',
      token_endpoint_auth_signing_alg: 'ES256',
      jwks: { keys: [ec.jwk, ed.jwk] },
    });
    await rejectsWith(h.authenticate({ body: assertionBody(signAssertion(ed, assertionClaims(clientId, h.clock))) }), {
      detail: /alg EdDSA is not the client's registered ES256/,
    });
    assert.equal((await h.authenticate({ body: assertionBody(signAssertion(ec, assertionClaims(clientId, h.clock))) })).method, 'private_key_jwt');
  });

  test('rejects HS256 made with the public key as the HMAC secret', async (t) => {
    const { h, es256 } = await setup(t);
    const claims = assertionClaims(clientId, h.clock);
    const pem = es256.publicKey.export({ format: 'pem', type: 'spki' });
    for (const secret of [pem, JSON.stringify({ ...es256.jwk, kid: 'es-1' })]) {
      await rejectsWith(h.authenticate({ body: assertionBody(hs256Jwt(secret, { ...claims, jti: crypto.randomUUID() }, { kid: 'es-1' })) }), {
        detail: /alg "HS256" is not allowed/,
      });
    }
  });

  test('rejects an algorithm that is not the one of the key named by kid', async (t) => {
    const h = await harness(t);
    const ec = keyPair('ES256');
    const ed = keyPair('EdDSA');
    await h.register({ client_id: clientId, token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [{ ...ec.jwk, kid: 'ec' }, { ...ed.jwk, kid: 'ed' }] } });
    await rejectsWith(h.authenticate({ body: assertionBody(signAssertion(ed, assertionClaims(clientId, h.clock), { kid: 'ec' })) }), {
      detail: /kid "ec" names a key that does not verify EdDSA/,
    });
  });

  test('rejects a key registered with an alg we do not allow for it', async (t) => {
    const h = await harness(t);
    const rsa = keyPair('PS256');
    await h.register({ client_id: clientId, token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [{ ...rsa.jwk, alg: 'RS256' }] } });
    await rejectsWith(h.authenticate({ body: assertionBody(signAssertion(rsa, assertionClaims(clientId, h.clock))) }), {
      detail: /no registered key for PS256/,
    });
  });

  test('rejects a key registered for encryption only', async (t) => {
    const h = await harness(t);
    const ec = keyPair('ES256');
    await h.register({ client_id: clientId, token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [{ ...ec.jwk, use: 'enc' }] } });
    await rejectsWith(h.authenticate({ body: assertionBody(signAssertion(ec, assertionClaims(clientId, h.clock))) }), {
      detail: /no registered key for ES256/,
    });
  });

  test('rejects an unknown kid', async (t) => {
    const { send } = await setup(t);
    await rejectsWith(send({}, { kid: 'rotated-away' }), { detail: /kid "rotated-away" is not among client oms-service's keys/ });
  });

  test('rejects a non-string kid', async (t) => {
    const { send } = await setup(t);
    await rejectsWith(send({}, { kid: 7 }), { detail: /kid is not a non-empty string/ });
  });

  test('rejects an assertion signed by another key of the same type', async (t) => {
    const { h } = await setup(t);
    const attacker = keyPair('ES256');
    await rejectsWith(h.authenticate({ body: assertionBody(signAssertion(attacker, assertionClaims(clientId, h.clock), { kid: 'es-1' })) }), {
      detail: /signature does not verify/,
    });
  });

  test('rejects an assertion whose claims were altered after signing', async (t) => {
    const { h, es256 } = await setup(t);
    const [head, , signature] = signAssertion(es256, assertionClaims(clientId, h.clock), { kid: 'es-1' }).split('.');
    const altered = Buffer.from(JSON.stringify(assertionClaims(clientId, h.clock, { exp: Math.floor(h.clock.now() / 1000) + 200 }))).toString('base64url');
    await rejectsWith(h.authenticate({ body: assertionBody(`${head}.${altered}.${signature}`) }), { detail: /signature does not verify/ });
  });

  test('ignores an embedded jwk header: an assertion signed by the embedded attacker key is rejected', async (t) => {
    const { h } = await setup(t);
    const attacker = keyPair('ES256');
    await rejectsWith(h.authenticate({ body: assertionBody(signAssertion(attacker, assertionClaims(clientId, h.clock), { jwk: attacker.jwk })) }), {
      detail: /signature does not verify/,
    });
  });

  test('ignores an embedded x5c header: an assertion signed by the certificate key is rejected', async (t) => {
    const { h } = await setup(t);
    const { certificate, privateKey } = makeCertificate({ subject: '/CN=oms-service' });
    const attacker: KeyPair = { alg: 'ES256', privateKey, publicKey: certificate.publicKey, jwk: {} };
    await rejectsWith(
      h.authenticate({ body: assertionBody(signAssertion(attacker, assertionClaims(clientId, h.clock), { x5c: [certificate.raw.toString('base64')] })) }),
      { detail: /signature does not verify/ },
    );
  });

  test('never fetches jku or x5u, and verifies with the registered key regardless', async (t) => {
    let hits = 0;
    const server = createServer((_req, res) => {
      hits++;
      res.end('{"keys":[]}');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks`;
    const { h, es256 } = await setup(t);
    const attacker = keyPair('ES256');
    // Signed by the registered key: accepted, the URLs unused.
    const ok = await h.authenticate({ body: assertionBody(signAssertion(es256, assertionClaims(clientId, h.clock), { jku: url, x5u: url })) });
    assert.equal(ok.method, 'private_key_jwt');
    // Signed by a key the URL might have served: rejected, still nothing fetched.
    await rejectsWith(h.authenticate({ body: assertionBody(signAssertion(attacker, assertionClaims(clientId, h.clock), { jku: url, kid: 'es-1' })) }), {
      detail: /signature does not verify/,
    });
    assert.equal(hits, 0);
  });

  test('rejects a crit header', async (t) => {
    const { send } = await setup(t);
    await rejectsWith(send({}, { kid: 'es-1', crit: ['exp'] }), { detail: /crit/ });
  });

  test('refuses a client that registered only a jwks_uri where no key source is configured, with a clear detail (test/clients/authentication/remote-keys.test.ts fetches)', async (t) => {
    const h = await harness(t);
    const ec = keyPair('ES256');
    await h.register({ client_id: clientId, token_endpoint_auth_method: 'private_key_jwt', jwks_uri: 'https://oms.example.com/jwks' });
    await rejectsWith(h.authenticate({ body: assertionBody(signAssertion(ec, assertionClaims(clientId, h.clock))) }), {
      detail: /registered jwks_uri, but this server fetches no client keys/,
    });
  });
});

describe('private_key_jwt: serialization', () => {
  test('rejects a JWE', async (t) => {
    const { h } = await setup(t);
    const jwe = ['eyJhbGciOiJSU0EtT0FFUC0yNTYiLCJlbmMiOiJBMjU2R0NNIn0', 'a2V5', 'aXY', 'Y2lwaGVy', 'dGFn'].join('.');
    await rejectsWith(h.authenticate({ body: assertionBody(jwe) }), { detail: /is a JWE/ });
  });

  test('rejects the JWS JSON serialization', async (t) => {
    const { h, es256 } = await setup(t);
    const [protectedHeader, payload, signature] = signAssertion(es256, assertionClaims(clientId, h.clock), { kid: 'es-1' }).split('.');
    const json = JSON.stringify({ payload, protected: protectedHeader, signature });
    await rejectsWith(h.authenticate({ body: assertionBody(json) }), { detail: /JSON serialization/ });
  });

  test('rejects a JWT with an extra segment', async (t) => {
    const { h, es256 } = await setup(t);
    const jwt = signAssertion(es256, assertionClaims(clientId, h.clock), { kid: 'es-1' });
    await rejectsWith(h.authenticate({ body: assertionBody(`${jwt}.eyJ9`) }), { detail: /4 segments/ });
  });

  test('rejects a JWT with too few segments', async (t) => {
    const { h } = await setup(t);
    await rejectsWith(h.authenticate({ body: assertionBody('eyJhbGciOiJFUzI1NiJ9.e30') }), { detail: /2 segments/ });
  });

  test('rejects characters outside base64url', async (t) => {
    const { h, es256 } = await setup(t);
    const [head, payload, signature] = signAssertion(es256, assertionClaims(clientId, h.clock), { kid: 'es-1' }).split('.');
    const standard = Buffer.from(payload!, 'base64url').toString('base64'); // may hold + / =
    await rejectsWith(h.authenticate({ body: assertionBody(`${head}.${standard}=.${signature}`) }), { detail: /not canonical base64url/ });
    await rejectsWith(h.authenticate({ body: assertionBody(`${head}.${payload}.${signature}==`) }), { detail: /not canonical base64url/ });
    await rejectsWith(h.authenticate({ body: assertionBody(`${head} .${payload}.${signature}`) }), { detail: /not canonical base64url/ });
  });

  test('rejects a header that is not a JSON object', async (t) => {
    const { h } = await setup(t);
    const head = Buffer.from('["ES256"]').toString('base64url');
    await rejectsWith(h.authenticate({ body: assertionBody(`${head}.e30.c2ln`) }), { detail: /header is not a JSON object/ });
    const garbage = Buffer.from('{"alg":').toString('base64url');
    await rejectsWith(h.authenticate({ body: assertionBody(`${garbage}.e30.c2ln`) }), { detail: /header is not a JSON object/ });
  });

  test('rejects an assertion over 8 KiB with a 400, never a 5xx', async (t) => {
    const { send } = await setup(t);
    await rejectsWith(send({ padding: 'x'.repeat(9000) }), { status: 400, detail: /bytes \(limit 8192\)/, description: /too large/ });
  });

  test('rejects a client_assertion_type other than jwt-bearer', async (t) => {
    const { h, es256 } = await setup(t);
    const body = { client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:saml2-bearer', client_assertion: signAssertion(es256, assertionClaims(clientId, h.clock)) };
    await rejectsWith(h.authenticate({ body }), { detail: /unsupported client_assertion_type/ });
  });

  test('rejects a client_assertion without client_assertion_type', async (t) => {
    const { h, es256 } = await setup(t);
    await rejectsWith(h.authenticate({ body: { client_assertion: signAssertion(es256, assertionClaims(clientId, h.clock)) } }), {
      detail: /client_assertion without client_assertion_type/,
    });
  });

  test('rejects a client_assertion_type without client_assertion', async (t) => {
    const { h } = await setup(t);
    await rejectsWith(h.authenticate({ body: { client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_id: clientId } }), {
      detail: /client_assertion_type without client_assertion/,
    });
  });
});

describe('private_key_jwt: cross-JWT confusion', () => {
  for (const typ of ['at+jwt', 'dpop+jwt', 'oauth-authz-req+jwt', 'logout+jwt', 'secevent+jwt', 'application/at+jwt']) {
    test(`rejects a JWT with typ "${typ}"`, async (t) => {
      const { send } = await setup(t);
      await rejectsWith(send({}, { kid: 'es-1', typ }), { detail: /typ .* is not a client assertion's/ });
    });
  }

  test('rejects an ID-token-shaped JWT carrying nonce', async (t) => {
    const { send } = await setup(t);
    await rejectsWith(send({ nonce: 'n-0S6_WzA2Mj' }), { detail: /"nonce" claim/ });
  });

  test('rejects an ID-token-shaped JWT carrying at_hash', async (t) => {
    const { send } = await setup(t);
    await rejectsWith(send({ at_hash: 'HK6E_P6Dh8Y93mRNtsDB1Q' }), { detail: /"at_hash" claim/ });
  });

  test('rejects a DPoP-proof-shaped JWT carrying htm and htu', async (t) => {
    const { send } = await setup(t);
    await rejectsWith(send({ htm: 'POST', htu: tokenEndpoint }), { detail: /"htm" claim/ });
  });

  test('rejects a request-object-shaped JWT carrying response_type', async (t) => {
    const { send } = await setup(t);
    await rejectsWith(send({ response_type: 'code', redirect_uri: 'https://oms.example.com/cb' }), { detail: /"response_type" claim/ });
  });
});
