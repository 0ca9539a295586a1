import assert from 'node:assert/strict';
import { createCipheriv, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { SealedBoxError, masterKeyId, open, seal, sealedKeyIdOf } from '../../src/keys/sealed-box.ts';
import { attachKeyring } from '../../src/keys/keyring.ts';

const masterKey = randomBytes(32);
const secret = randomBytes(138); // about the size of a PKCS#8 P-256 key

test('opens what it sealed, with the same master key and the same row binding', () => {
  const sealed = seal(masterKey, secret, 'signing_keys:kid-1');
  assert.match(sealed, /^v2\.[0-9a-f]{16}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
  assert.equal(sealedKeyIdOf(sealed), masterKeyId(masterKey), 'names the master key that sealed it');
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
  for (const index of [2, 3, 4]) {
    const bytes = Buffer.from(parts[index]!, 'base64url');
    bytes[0]! ^= 1;
    const tampered = parts.map((p, i) => (i === index ? bytes.toString('base64url') : p)).join('.');
    assert.throws(() => open(masterKey, tampered, 'a'), SealedBoxError, `part ${index}`);
  }
  assert.throws(() => open(masterKey, sealed.replace(/^v2/, 'v3'), 'a'), SealedBoxError);
  assert.throws(() => open(masterKey, sealed.replace(/^v2\.[0-9a-f]+/, 'v2.0000000000000000'), 'a'), /sealed with master key 0000000000000000, which is not configured/);
  assert.throws(() => open(masterKey, `${sealed}.x`, 'a'), SealedBoxError);
  assert.throws(() => open(masterKey, 'not sealed', 'a'), SealedBoxError);
});

test('names a master key by a stable public id that differs between keys', () => {
  assert.match(masterKeyId(masterKey), /^[0-9a-f]{16}$/);
  assert.equal(masterKeyId(Buffer.from(masterKey)), masterKeyId(masterKey));
  assert.notEqual(masterKeyId(randomBytes(32)), masterKeyId(masterKey));
  assert.ok(!masterKey.toString('hex').includes(masterKeyId(masterKey)));
});

/** What seal() wrote before key ids: `v1.<iv>.<tag>.<ciphertext>` (a database older than issue 26 item 3 holds these). */
function sealV1(key: Buffer, plaintext: Buffer, associatedData: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(associatedData, 'utf8'));
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return ['v1', iv, cipher.getAuthTag(), ciphertext].map((p) => (typeof p === 'string' ? p : p.toString('base64url'))).join('.');
}

test('still opens values sealed before key ids were written (v1), with whichever configured key sealed them', () => {
  const old = sealV1(masterKey, secret, 'a');
  assert.deepEqual(open(masterKey, old, 'a'), secret);
  assert.equal(sealedKeyIdOf(old), undefined);
  const next = randomBytes(32);
  attachKeyring({ current: next, previous: masterKey, sealing: next, root: masterKey });
  assert.deepEqual(open(next, old, 'a'), secret, 'the previous key opens it during a rotation');
  assert.throws(() => open(randomBytes(32), old, 'a'), SealedBoxError);
});

test('during a rotation, seals with the keyring\'s sealing key and opens with the current or the previous key', () => {
  const previous = randomBytes(32);
  const current = randomBytes(32);
  const underPrevious = seal(previous, secret, 'a');
  const keyring = { current, previous, sealing: previous, root: previous };
  attachKeyring(keyring);
  // Staged (the rewrap has not begun): new values are still sealed with the previous key.
  const staged = seal(current, secret, 'a');
  assert.equal(sealedKeyIdOf(staged), masterKeyId(previous));
  keyring.sealing = current;
  const rotated = seal(current, secret, 'a');
  assert.equal(sealedKeyIdOf(rotated), masterKeyId(current));
  for (const sealed of [underPrevious, staged, rotated]) assert.deepEqual(open(current, sealed, 'a'), secret);
  // The previous key alone opens nothing the new one sealed.
  assert.throws(() => open(previous, rotated, 'a'), /sealed with master key [0-9a-f]{16}, which is not configured/);
});
