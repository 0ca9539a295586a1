import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  defaultArgon2Parameters,
  formatPasswordHash,
  hashPassword,
  needsRehash,
  parsePasswordHash,
  PasswordHashFormatError,
  verifyAgainstDummy,
  verifyPassword,
} from '../../src/identity/passwords.ts';

/** The Argon2 reference implementation's argon2id vector (src/test.c): "password", salt "somesalt", m=64 MiB, t=2, p=1. */
const referenceHash = '$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc';

describe('Argon2id password hashing', () => {
  test('verifies the reference implementation’s argon2id test vector', async () => {
    assert.equal(await verifyPassword('password', referenceHash), true);
    assert.equal(await verifyPassword('Password', referenceHash), false);
  });

  test('hashes with the OWASP parameters into a PHC string that verifies', async () => {
    const phc = await hashPassword('correct horse battery staple');
    assert.match(phc, /^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/);
    assert.equal(await verifyPassword('correct horse battery staple', phc), true);
    assert.equal(await verifyPassword('correct horse battery stapler', phc), false);
    assert.equal(await verifyPassword('', phc), false);
    assert.equal(needsRehash(phc), false);
  });

  test('salts every hash, so one password never hashes to the same string twice', async () => {
    const [a, b] = await Promise.all([hashPassword('same password here'), hashPassword('same password here')]);
    assert.notEqual(a, b);
  });

  test('parses the parameters, salt and hash of a PHC string and formats it back unchanged', () => {
    const parsed = parsePasswordHash(referenceHash);
    assert.equal(parsed.algorithm, 'argon2id');
    assert.equal(parsed.version, 19);
    assert.equal(parsed.memory, 65536);
    assert.equal(parsed.passes, 2);
    assert.equal(parsed.parallelism, 1);
    assert.equal(parsed.salt.toString('utf8'), 'somesalt');
    assert.equal(parsed.hash.toString('hex'), '09316115d5cf24ed5a15a31a3ba326e5cf32edc24702987c02b6566f61913cf7');
    assert.equal(formatPasswordHash(parsed), referenceHash);
  });

  test('verifies hashes made with other parameters, and says they need rehashing', async () => {
    const other = await hashPassword('a password of the old system', { memory: 4096, passes: 3, parallelism: 2 });
    assert.match(other, /^\$argon2id\$v=19\$m=4096,t=3,p=2\$/);
    assert.equal(await verifyPassword('a password of the old system', other), true);
    assert.equal(needsRehash(other), true);
    assert.equal(needsRehash(referenceHash), true, 'm=65536 is not today’s parameters');
    assert.equal(needsRehash('not a hash'), true);
    assert.deepEqual({ ...defaultArgon2Parameters }, { memory: 19456, passes: 2, parallelism: 1 });
  });

  test('refuses malformed, foreign or unbounded PHC strings, and never verifies against them', async () => {
    const salt = 'c29tZXNhbHQ';
    const hash = 'CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc';
    const refused = [
      `$argon2i$v=19$m=65536,t=2,p=1$${salt}$${hash}`, // not the id variant
      `$argon2d$v=19$m=65536,t=2,p=1$${salt}$${hash}`,
      `$argon2id$v=16$m=65536,t=2,p=1$${salt}$${hash}`, // the flawed first version
      `$argon2id$m=65536,t=2,p=1$${salt}$${hash}`, // no version
      `$argon2id$v=19$t=2,m=65536,p=1$${salt}$${hash}`, // parameters out of order
      `$argon2id$v=19$m=65536,t=2,p=1,keyid=abc$${salt}$${hash}`,
      `$argon2id$v=19$m=065536,t=2,p=1$${salt}$${hash}`, // leading zero
      `$argon2id$v=19$m=65536,t=2,p=1$${salt}=$${hash}`, // padding
      `$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHR$${hash}`, // non-canonical trailing bits
      `$argon2id$v=19$m=65536,t=2,p=1$c29tZXNh_HQ$${hash}`, // base64url alphabet
      `$argon2id$v=19$m=4194304,t=2,p=1$${salt}$${hash}`, // 4 GiB
      `$argon2id$v=19$m=65536,t=100,p=1$${salt}$${hash}`,
      `$argon2id$v=19$m=65536,t=2,p=0$${salt}$${hash}`,
      `$argon2id$v=19$m=16,t=2,p=4$${salt}$${hash}`, // m < 8p
      `$argon2id$v=19$m=65536,t=2,p=1$c29tZQ$${hash}`, // 4-byte salt
      `$argon2id$v=19$m=65536,t=2,p=1$${salt}$CTFhFdXPJO1aFQ`, // 10-byte hash
      `${referenceHash}\n`,
      '',
    ];
    for (const phc of refused) {
      assert.throws(() => parsePasswordHash(phc), PasswordHashFormatError, phc);
      assert.equal(await verifyPassword('password', phc), false, phc);
    }
  });

  test('spends a verification on a dummy hash and answers false', async () => {
    assert.equal(await verifyAgainstDummy('anything'), false);
    assert.equal(await verifyAgainstDummy('x'.repeat(5000)), false);
  });
});
