import assert from 'node:assert/strict';
import { test } from 'node:test';
import { restartDelayMs, stableAfterMs } from '../../src/cluster/primary.ts';

test('restarts a worker that had run a while at once, and one that keeps dying young after 1, 2, 4 … 30 s', () => {
  assert.equal(stableAfterMs, 10_000);
  assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 20].map(restartDelayMs), [0, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000]);
});
