import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { test } from 'node:test';
import { SignJWT } from 'jose';
import { derToRaw, signCompact } from '../../src/keys/jws.ts';
import { rawToDer, verifyCompactSignature } from '../../src/keys/jws-verify.ts';

const keys = {
  ES256: generateKeyPairSync('ec', { namedCurve: 'P-256' }),
  EdDSA: generateKeyPairSync('ed25519'),
  PS256: generateKeyPairSync('rsa', { modulusLength: 2048 }),
} as const;

for (const alg of ['ES256', 'EdDSA', 'PS256'] as const) {
  test(`verifies a ${alg} JWT that jose signed`, async () => {
    const jwt = await new SignJWT({ sub: 'x' }).setProtectedHeader({ alg }).sign(keys[alg].privateKey);
    assert.equal(verifyCompactSignature(alg, keys[alg].publicKey, jwt), true);
  });

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
