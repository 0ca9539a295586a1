import assert from 'node:assert/strict';
import { generateKeyPairSync, sign, verify } from 'node:crypto';
import { test } from 'node:test';
import { SignJWT } from 'jose';
import { derToRaw, signCompact } from '../../src/keys/jws.ts';
import { rawToDer, verifyCompactSignature, type JwsAlgorithm } from '../../src/jose/index.ts';

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const ed25519 = generateKeyPairSync('ed25519');
const keys = {
  ES256: generateKeyPairSync('ec', { namedCurve: 'P-256' }),
  ES384: generateKeyPairSync('ec', { namedCurve: 'P-384' }),
  ES512: generateKeyPairSync('ec', { namedCurve: 'P-521' }),
  EdDSA: ed25519,
  Ed25519: ed25519,
  PS256: rsa,
  PS384: rsa,
  PS512: rsa,
  RS256: rsa,
  RS384: rsa,
  RS512: rsa,
} as const satisfies Record<JwsAlgorithm, unknown>;

for (const alg of Object.keys(keys) as JwsAlgorithm[]) {
  test(`verifies a ${alg} JWT that jose signed, and refuses it once its payload changed`, async () => {
    const jwt = await new SignJWT({ sub: 'alice' }).setProtectedHeader({ alg }).sign(keys[alg].privateKey);
    assert.equal(verifyCompactSignature(alg, keys[alg].publicKey, jwt), true);
    const [h, , s] = jwt.split('.');
    assert.equal(verifyCompactSignature(alg, keys[alg].publicKey, `${h}.${Buffer.from('{"sub":"mallory"}').toString('base64url')}.${s}`), false);
  });
}

test('verifies EdDSA and Ed25519 only with an Ed25519 key, never Ed448 (RFC 9864 §2.2)', async () => {
  const ed448 = generateKeyPairSync('ed448');
  const input = `${Buffer.from('{"alg":"EdDSA"}').toString('base64url')}.${Buffer.from('{}').toString('base64url')}`;
  const jwt = `${input}.${sign(null, Buffer.from(input), ed448.privateKey).toString('base64url')}`;
  assert.equal(verify(null, Buffer.from(input), ed448.publicKey, Buffer.from(jwt.split('.')[2]!, 'base64url')), true, 'a real Ed448 signature');
  assert.equal(verifyCompactSignature('EdDSA', ed448.publicKey, jwt), false);
  assert.equal(verifyCompactSignature('Ed25519', ed448.publicKey, jwt), false);
});

test('refuses an ECDSA key on another curve and an RSA key under 2048 bits', async () => {
  const es384 = await new SignJWT({}).setProtectedHeader({ alg: 'ES384' }).sign(keys.ES384.privateKey);
  assert.equal(verifyCompactSignature('ES256', keys.ES384.publicKey, es384), false);
  // The curve is remembered per key object: the same key, right for ES384, is still wrong for ES256.
  assert.equal(verifyCompactSignature('ES384', keys.ES384.publicKey, es384), true);
  assert.equal(verifyCompactSignature('ES256', keys.ES384.publicKey, es384), false);
  const small = generateKeyPairSync('rsa', { modulusLength: 1024 });
  const input = `${Buffer.from('{"alg":"RS256"}').toString('base64url')}.${Buffer.from('{}').toString('base64url')}`;
  assert.equal(verifyCompactSignature('RS256', small.publicKey, `${input}.${sign('sha256', Buffer.from(input), small.privateKey).toString('base64url')}`), false);
});

for (const alg of ['ES256', 'EdDSA', 'PS256'] as const) {
  test(`refuses a ${alg} JWT whose payload was changed after signing`, () => {
    const jwt = signCompact(alg, keys[alg].privateKey, { typ: 'JWT' }, { sub: 'alice' });
    const [h, , s] = jwt.split('.');
    const forged = `${h}.${Buffer.from('{"sub":"mallory"}').toString('base64url')}.${s}`;
    assert.equal(verifyCompactSignature(alg, keys[alg].publicKey, forged), false);
  });
}

test('refuses a signature made by another key of the same type', () => {
  const jwt = signCompact('ES256', generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey, { typ: 'JWT' }, {});
  assert.equal(verifyCompactSignature('ES256', keys.ES256.publicKey, jwt), false);
});

test('refuses a key of the wrong type for the algorithm instead of throwing', () => {
  const jwt = signCompact('EdDSA', keys.EdDSA.privateKey, { typ: 'JWT' }, {});
  assert.equal(verifyCompactSignature('ES256', keys.EdDSA.publicKey, jwt), false);
  assert.equal(verifyCompactSignature('PS256', keys.ES256.publicKey, jwt), false);
});

test('refuses an ES256 signature that is DER-encoded or of the wrong length', () => {
  const jwt = signCompact('ES256', keys.ES256.privateKey, { typ: 'JWT' }, {});
  const [h, p, s] = jwt.split('.');
  const der = rawToDer(Buffer.from(s!, 'base64url')).toString('base64url');
  assert.equal(verifyCompactSignature('ES256', keys.ES256.publicKey, `${h}.${p}.${der}`), false);
  assert.equal(verifyCompactSignature('ES256', keys.ES256.publicKey, `${h}.${p}.${s!.slice(0, -4)}`), false);
  assert.equal(verifyCompactSignature('ES256', keys.ES256.publicKey, `${h}.${p}.`), false);
  assert.equal(verifyCompactSignature('ES256', keys.ES256.publicKey, 'no-dots'), false);
});

test('converts raw ECDSA signatures to DER and back for values with leading zero and high bits', () => {
  for (let i = 0; i < 500; i++) {
    const jwt = signCompact('ES256', keys.ES256.privateKey, { typ: 'JWT' }, { i });
    const raw = Buffer.from(jwt.split('.')[2]!, 'base64url');
    assert.deepEqual(derToRaw(rawToDer(raw), 32), raw);
  }
  const edge = Buffer.concat([Buffer.alloc(31), Buffer.from([1]), Buffer.alloc(32, 0xff)]);
  assert.deepEqual(derToRaw(rawToDer(edge), 32), edge);
});
