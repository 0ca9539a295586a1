import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { withinSpan } from '../src/clock.ts';

describe('a span of time', () => {
  test('lasts from its start for exactly its length', () => {
    assert.equal(withinSpan(1_000, 1_000, 500), true);
    assert.equal(withinSpan(1_499, 1_000, 500), true);
    assert.equal(withinSpan(1_500, 1_000, 500), false);
    assert.equal(withinSpan(9_999, 1_000, 500), false);
  });

  test('is over when the clock has stepped back before its start, however far', () => {
    assert.equal(withinSpan(999, 1_000, 500), false);
    assert.equal(withinSpan(1_000 - 3_600_000, 1_000, 500), false);
  });

  test('never begins for a start that was never set', () => {
    assert.equal(withinSpan(1_000, -Infinity, 500), false);
  });
});
