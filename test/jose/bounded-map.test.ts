import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BoundedMap, OldestFirst } from '../../src/jose/bounded-map.ts';

/** A small deterministic generator, so a failure can be run again. */
function random(seed: number): () => number {
  let state = seed;
  return () => (state = (state * 1103515245 + 12345) % 2147483648) / 2147483648;
}

describe('evicting the oldest entries of a bounded map', () => {
  test('deletes exactly the keys that map.keys().next() would, through sets, re-sets, deletes and clears', () => {
    const reference = new Map<number, number>();
    const kept = new Map<number, number>();
    const oldest = new OldestFirst(kept);
    const next = random(7);
    let evictions = 0;
    for (let i = 0; i < 50_000; i++) {
      const key = Math.floor(next() * 3000);
      const op = next();
      for (const map of [reference, kept]) {
        if (op < 0.4) {
          // Used again: moved to the end, as the LRU callers do.
          map.delete(key);
          map.set(key, i);
        } else if (op < 0.5) map.delete(key);
        else if (op < 0.5002) map.clear();
        else map.set(key, i);
      }
      while (reference.size > 500) {
        reference.delete(reference.keys().next().value!);
        evictions++;
      }
      oldest.trim(500);
      assert.equal(kept.size, reference.size);
    }
    assert.ok(evictions > 10_000, `only ${evictions} evictions`);
    assert.deepEqual([...kept], [...reference]);
  });

  test('starts again once the map was emptied, and stops on an empty map', () => {
    const set = new Set(['a', 'b']);
    const oldest = new OldestFirst(set);
    oldest.trim(0);
    assert.equal(set.size, 0);
    oldest.trim(-1);
    set.add('c').add('d').add('e');
    oldest.trim(1);
    assert.deepEqual([...set], ['e']);
  });

  test('a BoundedMap keeps its newest entries up to its bound, a key set again counting as new', () => {
    const map = new BoundedMap<string, number>(3);
    for (const [i, key] of ['a', 'b', 'c', 'd'].entries()) map.set(key, i);
    assert.deepEqual([...map.keys()], ['b', 'c', 'd']);
    map.delete('b');
    map.set('b', 9);
    map.set('e', 5);
    assert.deepEqual([...map.keys()], ['d', 'b', 'e']);
    // Setting a key it holds moves nothing and evicts nothing.
    map.set('d', 7);
    assert.deepEqual([...map], [['d', 7], ['b', 9], ['e', 5]]);
  });
});
