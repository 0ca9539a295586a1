import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MicroBatcher } from '../../src/storage/micro-batcher.ts';

test('hands items added in the same turn to one batch, and later ones to the next', async () => {
  const batches: number[][] = [];
  const batcher = new MicroBatcher<number>(async (batch) => void batches.push(batch), 100);
  for (let i = 0; i < 5; i++) batcher.add(i);
  await batcher.flush();
  batcher.add(5);
  await batcher.flush();
  assert.deepEqual(batches, [[0, 1, 2, 3, 4], [5]]);
});

test('never puts more than maxBatch items in one batch and keeps their order', async () => {
  const batches: number[][] = [];
  const batcher = new MicroBatcher<number>(async (batch) => void batches.push(batch), 3);
  for (let i = 0; i < 7; i++) batcher.add(i);
  await batcher.flush();
  assert.deepEqual(batches, [[0, 1, 2], [3, 4, 5], [6]]);
});

test('items added while a batch is being processed wait for the next batch, not a parallel one', async () => {
  let inFlight = 0;
  let maxInFlight = 0;
  const seen: number[][] = [];
  const batcher = new MicroBatcher<number>(async (batch) => {
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    seen.push(batch);
    await new Promise((resolve) => setImmediate(resolve));
    if (batch[0] === 0) batcher.add(100);
    inFlight--;
  }, 10);
  batcher.add(0);
  await batcher.flush();
  assert.equal(maxInFlight, 1);
  assert.deepEqual(seen, [[0], [100]]);
});

test('keeps going after a batch whose processing fails', async () => {
  const processed: number[] = [];
  const batcher = new MicroBatcher<number>(async (batch) => {
    if (batch.includes(1)) throw new Error('the database went away');
    processed.push(...batch);
  }, 1);
  batcher.add(1);
  batcher.add(2);
  await batcher.flush();
  assert.deepEqual(processed, [2]);
});

test('with a concurrency of 2, processes two batches at once, and items arriving meanwhile wait for a free slot', async () => {
  let inFlight = 0;
  let maxInFlight = 0;
  const seen: number[][] = [];
  const release: (() => void)[] = [];
  const batcher = new MicroBatcher<number>(
    async (batch) => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      seen.push(batch);
      await new Promise<void>((resolve) => release.push(resolve));
      inFlight--;
    },
    2,
    { concurrency: 2 },
  );
  for (let i = 0; i < 5; i++) batcher.add(i);
  const flushed = batcher.flush();
  while (seen.length < 2) await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(seen, [[0, 1], [2, 3]], 'two batches started, the fifth item waits');
  batcher.add(5);
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(seen.length, 2, 'no third batch while both slots are taken');
  release.shift()!();
  while (seen.length < 3) await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(seen[2], [4, 5], 'the items that waited go together into the freed slot');
  while (release.length > 0 || inFlight > 0) {
    release.shift()?.();
    await new Promise((resolve) => setImmediate(resolve));
  }
  await flushed;
  assert.equal(maxInFlight, 2);
});
