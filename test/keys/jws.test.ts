import assert from 'node:assert/strict';
import { generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { test } from 'node:test';
import { compactVerify, jwtVerify, type JWK } from 'jose';
import type { SigningAlg } from '../../src/config.ts';
import { derToRaw, signCompact } from '../../src/keys/jws.ts';

function keyPair(alg: SigningAlg): { privateKey: KeyObject; publicKey: KeyObject } {
  switch (alg) {
    case 'ES256':
      return generateKeyPairSync('ec', { namedCurve: 'P-256' });
    case 'EdDSA':
      return generateKeyPairSync('ed25519');
    case 'PS256':
      return generateKeyPairSync('rsa', { modulusLength: 2048 });
  }
}

for (const alg of ['ES256', 'EdDSA', 'PS256'] as const) {
  test(`signs a JWT with ${alg} that jose verifies with the public JWK`, async () => {
    const { privateKey, publicKey } = keyPair(alg);
    const jwk = { ...(publicKey.export({ format: 'jwk' }) as JWK), alg };
    const now = Math.floor(Date.now() / 1000);
    const token = signCompact(alg, privateKey, { typ: 'at+jwt', kid: 'k1' }, { sub: 'desk-7', iat: now, exp: now + 300, aud: 'https://orders.example.com' });
    const { payload, protectedHeader } = await jwtVerify(token, jwk, {
      algorithms: [alg],
      typ: 'at+jwt',
      audience: 'https://orders.example.com',
    });
    assert.deepEqual(protectedHeader, { typ: 'at+jwt', kid: 'k1', alg });
    assert.equal(payload.sub, 'desk-7');
  });
}

test('takes alg from its argument, never from the header it is given', async () => {
  const { privateKey, publicKey } = keyPair('ES256');
  const token = signCompact('ES256', privateKey, { alg: 'none', typ: 'JWT' }, { sub: 'x' });
  const { protectedHeader } = await compactVerify(token, publicKey);
  assert.equal(protectedHeader.alg, 'ES256');
});

test('produces 64-byte raw ES256 signatures that verify, including those whose r or s is short or has its high bit set', () => {
  const { privateKey, publicKey } = keyPair('ES256');
  const seen = { shortR: 0, shortS: 0, paddedR: 0, paddedS: 0 };
  for (let i = 0; i < 3000; i++) {
    const data = Buffer.from(`message ${i}`);
    const der = sign('sha256', data, privateKey);
    const rLength = der[3]!;
    const sLength = der[4 + rLength + 1]!;
    if (rLength < 32) seen.shortR++;
    if (rLength === 33) seen.paddedR++;
    if (sLength < 32) seen.shortS++;
    if (sLength === 33) seen.paddedS++;
    const raw = derToRaw(der, 32);
    assert.equal(raw.length, 64);
    assert.ok(verify('sha256', data, { key: publicKey, dsaEncoding: 'ieee-p1363' }, raw), `signature ${i} (${der.toString('hex')})`);
  }
  // About half the integers need a 0x00 sign byte, about 1 in 256 is a byte short.
  assert.ok(seen.paddedR > 0 && seen.paddedS > 0, JSON.stringify(seen));
  assert.ok(seen.shortR + seen.shortS > 0, JSON.stringify(seen));
});

test('converts hand-made DER with a sign byte and a short integer to left-padded R and S', () => {
  const r = Buffer.concat([Buffer.from([0x80]), Buffer.alloc(31, 0x11)]); // high bit set: DER adds 0x00
  const s = Buffer.alloc(30, 0x22); // a value 2 bytes short
  const der = Buffer.concat([
    Buffer.from([0x30, 2 + 33 + 2 + 30, 0x02, 33, 0x00]),
    r,
    Buffer.from([0x02, 30]),
    s,
  ]);
  const raw = derToRaw(der, 32);
  assert.deepEqual(raw.subarray(0, 32), r);
  assert.deepEqual(raw.subarray(32), Buffer.concat([Buffer.alloc(2), s]));
});

test('rejects input that is not a DER signature', () => {
  assert.throws(() => derToRaw(Buffer.from([0x31, 0x00]), 32), /not a DER sequence/);
  assert.throws(() => derToRaw(Buffer.from([0x30, 0x04, 0x04, 0x01, 0x01, 0x00]), 32), /not a DER integer/);
  const tooLong = Buffer.concat([Buffer.from([0x30, 0x26, 0x02, 34]), Buffer.alloc(34, 0x7f), Buffer.from([0x02, 0x01, 0x01])]);
  assert.throws(() => derToRaw(tooLong, 32), /too long/);
});
