import assert from 'node:assert/strict';
import { test } from 'node:test';
import { uuidV7 } from '../src/uuid-v7.ts';
import { millisecondOf as msOf, uuidV7Pattern as v7 } from './helpers/uuid-v7.ts';

test('makes RFC 9562 version 7 ids that carry their millisecond and sort by it', () => {
  const a = uuidV7(1_767_225_600_000);
  const b = uuidV7(1_767_225_600_001);
  assert.match(a, v7);
  assert.equal(msOf(a), 1_767_225_600_000);
  assert.ok(a < b);
  assert.equal(msOf(uuidV7(0)), 0);
  assert.equal(msOf(uuidV7(-5)), 0, 'a time before the epoch is the epoch');
});

test('gives ids of one millisecond 74 random bits each: none repeats', () => {
  const ids = Array.from({ length: 10_000 }, () => uuidV7(1_767_225_600_000));
  for (const id of ids) assert.match(id, v7);
  assert.equal(new Set(ids).size, ids.length);
  // The random part varies in every position it has (rand_a's 12 bits, then rand_b's 62).
  const tails = new Set(ids.map((id) => id.slice(15, 18)));
  assert.ok(tails.size > 1000, `rand_a took ${tails.size} values`);
});
