import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { SealedBoxError, masterKeyId, open, seal } from '../../src/keys/sealed-box.ts';

const masterKey = randomBytes(32);
const secret = randomBytes(138); // about the size of a PKCS#8 P-256 key

test('opens what it sealed, with the same master key and the same row binding', () => {
  const sealed = seal(masterKey, secret, 'signing_keys:kid-1');
  assert.match(sealed, /^v1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
  assert.deepEqual(open(masterKey, sealed, 'signing_keys:kid-1'), secret);
});

test('seals the same plaintext differently each time (a fresh IV)', () => {
  assert.notEqual(seal(masterKey, secret, 'a'), seal(masterKey, secret, 'a'));
});

test('does not contain the plaintext in any encoding', () => {
  const sealed = seal(masterKey, secret, 'a');
  for (const encoding of ['base64', 'base64url', 'hex'] as const) {
    assert.ok(!sealed.includes(secret.subarray(0, 24).toString(encoding)));
  }
});

test('refuses to open with a wrong master key', () => {
  const sealed = seal(masterKey, secret, 'signing_keys:kid-1');
  assert.throws(() => open(randomBytes(32), sealed, 'signing_keys:kid-1'), SealedBoxError);
});

test('refuses to open a ciphertext moved to another kid', () => {
  const sealed = seal(masterKey, secret, 'signing_keys:kid-1');
  assert.throws(() => open(masterKey, sealed, 'signing_keys:kid-2'), SealedBoxError);
});

test('refuses a tampered ciphertext, tag or IV, and an unknown format', () => {
  const sealed = seal(masterKey, secret, 'a');
  const parts = sealed.split('.');
  for (const index of [1, 2, 3]) {
    const bytes = Buffer.from(parts[index]!, 'base64url');
    bytes[0]! ^= 1;
    const tampered = parts.map((p, i) => (i === index ? bytes.toString('base64url') : p)).join('.');
    assert.throws(() => open(masterKey, tampered, 'a'), SealedBoxError, `part ${index}`);
  }
  assert.throws(() => open(masterKey, sealed.replace(/^v1/, 'v2'), 'a'), SealedBoxError);
  assert.throws(() => open(masterKey, 'not sealed', 'a'), SealedBoxError);
});

test('names a master key by a stable public id that differs between keys', () => {
  assert.match(masterKeyId(masterKey), /^[0-9a-f]{16}$/);
  assert.equal(masterKeyId(Buffer.from(masterKey)), masterKeyId(masterKey));
  assert.notEqual(masterKeyId(randomBytes(32)), masterKeyId(masterKey));
  assert.ok(!masterKey.toString('hex').includes(masterKeyId(masterKey)));
});
