import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { limitNamesKey, pseudonym } from '../../../src/risk/limits/names.ts';

describe('how the limits name a person in their store', () => {
  test('every node with the same master key names a person alike, and no one without it can', () => {
    const master = randomBytes(32);
    const name = pseudonym(limitNamesKey(master), 'alice');
    assert.equal(name, pseudonym(limitNamesKey(Buffer.from(master)), 'alice'));
    assert.notEqual(name, pseudonym(limitNamesKey(randomBytes(32)), 'alice'));
    assert.notEqual(name, pseudonym(limitNamesKey(master), 'bob'));
    assert.match(name, /^[A-Za-z0-9_-]{32}$/);
  });

  test('the name is not the plain digest a list of likely usernames would reverse', () => {
    const digest = createHash('sha256').update('alice').digest('base64url');
    assert.ok(!digest.startsWith(pseudonym(limitNamesKey(randomBytes(32)), 'alice')));
  });
});
