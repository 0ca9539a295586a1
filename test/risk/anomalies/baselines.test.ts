import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { expectedValue, fold, isAnomalous, smoothingOf, type Baseline } from '../../../src/risk/anomalies/baselines.ts';

const window = (start: number, ms = 300_000) => ({ start, ms });
const thresholds = { factor: 10, minimum: 20, minimumHistory: 12 };

/** A baseline built from `values`, one active window each. */
function built(values: number[], span = 24): Baseline {
  let baseline: Baseline | undefined;
  values.forEach((v, i) => (baseline = fold(baseline, v, 'token_rate', window(i * 300_000), span)));
  return baseline!;
}

describe('a baseline', () => {
  test('starts at the first active window and moves towards each new one by 2/(N+1) of the difference', () => {
    const first = fold(undefined, 4, 'token_rate', window(0), 24);
    assert.deepEqual(first, { ewma: 4, windows: 1, windowMs: 300_000, lastWindow: 0 });
    const second = fold(first, 29, 'token_rate', window(300_000), 24);
    assert.equal(smoothingOf(24), 0.08);
    assert.equal(second.ewma, 4 + 0.08 * 25);
    assert.equal(second.windows, 2);
    assert.equal(second.lastWindow, 300_000);
  });

  test('stays exactly at a steady rate', () => {
    assert.equal(built(Array(50).fill(3)).ewma, 3);
  });

  test('rescales a rate measured with another window length, but not a number of distinct audiences', () => {
    const baseline = { ewma: 6, windows: 20, windowMs: 300_000, lastWindow: 0 };
    assert.equal(expectedValue(baseline, 'token_rate', 600_000), 12);
    assert.equal(expectedValue(baseline, 'login_rate', 60_000), 1.2);
    assert.equal(expectedValue(baseline, 'audience_spread', 600_000), 6);
  });
});

describe('judging a window against a baseline', () => {
  const steady = built(Array(24).fill(3));

  test('finds ten times the baseline anomalous once it reaches the minimum too', () => {
    assert.equal(isAnomalous(30, steady, 'token_rate', 300_000, thresholds), true);
    assert.equal(isAnomalous(29, steady, 'token_rate', 300_000, thresholds), false, 'below ten times');
    const quiet = built(Array(24).fill(1));
    assert.equal(isAnomalous(10, quiet, 'token_rate', 300_000, thresholds), false, 'ten times, but under the minimum of 20');
    assert.equal(isAnomalous(20, quiet, 'token_rate', 300_000, thresholds), true);
  });

  test('does not judge a principal with too little history, or none', () => {
    assert.equal(isAnomalous(1000, built(Array(11).fill(3)), 'token_rate', 300_000, thresholds), false);
    assert.equal(isAnomalous(1000, built(Array(12).fill(3)), 'token_rate', 300_000, thresholds), true);
    assert.equal(isAnomalous(1000, undefined, 'token_rate', 300_000, thresholds), false);
  });
});
