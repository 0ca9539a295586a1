import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { RefusalLimiter } from '../../src/audit/refusals.ts';

// The per-source limit of refusal recording (docs/audit.md "Refusals"): nothing lost, memory bounded.

describe('the refusal limiter', () => {
  test('records the limit per source and window, then counts the rest into one summary when the window is over', () => {
    const limiter = new RefusalLimiter(2, 1000);
    const outcomes = Array.from({ length: 5 }, (_, i) => limiter.admit('client:a', i % 2 ? 'invalid_scope' : 'invalid_grant', 100 + i));
    assert.deepEqual(outcomes.map((o) => o.record), [true, true, false, false, false]);
    assert.ok(outcomes.every((o) => o.summaries.length === 0));
    // Another source has its own budget, and its refusal after the window sweeps a's summary out.
    const later = limiter.admit('client:b', 'invalid_grant', 1200);
    assert.equal(later.record, true);
    assert.deepEqual(later.summaries, [{ source: 'client:a', count: 3, from: 100, to: 1100, reasons: ['invalid_grant', 'invalid_scope'] }]);
    assert.equal(limiter.admit('client:a', 'invalid_grant', 1201).record, true, 'a new window records again');
  });

  test('holds at most its number of sources, summarising an evicted one rather than dropping its count', () => {
    const limiter = new RefusalLimiter(1, 60_000, 3);
    for (const source of ['a', 'b', 'c']) {
      limiter.admit(source, 'x', 0);
      limiter.admit(source, 'x', 0);
    }
    const fourth = limiter.admit('d', 'x', 1);
    assert.equal(fourth.record, true);
    assert.deepEqual(fourth.summaries.map((s) => [s.source, s.count]), [['a', 1]]);
  });
});
