/**
 * The Redis connection's outage rules (src/risk/limits/redis.ts, docs/risk.md "Rate limits"): a
 * Redis that is gone or stops answering makes each node use its own store at once — never no
 * limit, never an error — with one warning; when it answers again, the node goes back to it with
 * one more. Each test runs a redis-server of its own, to stop it.
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, test } from 'node:test';
import { ManualClock } from '../../../src/clock.ts';
import { createLogger } from '../../../src/log.ts';
import { MemoryBuckets, type BucketCheck } from '../../../src/risk/limits/buckets.ts';
import { RedisBuckets } from '../../../src/risk/limits/redis-buckets.ts';
import { SharedStore } from '../../../src/risk/limits/redis.ts';
import { ownRedisSkip, startOwnRedis } from '../../helpers/redis.ts';
import { eventually } from '../../helpers/eventually.ts';

/** A logger whose lines the test reads. */
function capturedLog() {
  const lines: { level: number; msg: string; cause?: string }[] = [];
  const destination = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line));
      done();
    },
  });
  return { log: createLogger('info', destination), lines, messages: (pattern: RegExp) => lines.filter((l) => pattern.test(l.msg)) };
}

/** `eventually` with this file's bound: 10 s, looked at every 50 ms. */
function until(condition: () => boolean, what: string): Promise<number> {
  return eventually(condition, what, { withinMs: 10_000, everyMs: 50 });
}

const bucket: BucketCheck = { key: 'client:oms', quota: 3, windowMs: 60_000 };

describe('the shared store during a Redis outage', { skip: ownRedisSkip, timeout: 60_000 }, () => {
  test('counts in the node’s memory while Redis is gone, warns once, and goes back to Redis when it answers again', async (t) => {
    const redis = await startOwnRedis(t);
    const { log, messages } = capturedLog();
    const store = new SharedStore({ url: redis.url, prefix: 'outage:', timeoutMs: 200, log });
    t.after(() => store.close());
    await store.connect();
    const clock = new ManualClock(0);
    const memory = new MemoryBuckets();
    const buckets = new RedisBuckets(store, memory);
    assert.equal(await buckets.take([bucket], clock.now()), undefined);
    assert.equal(await buckets.take([bucket], clock.now()), undefined);
    assert.equal(memory.size, 0, 'counted in Redis');

    await redis.stop();
    // Every answer now comes from this node's memory, which has not seen the two before: the
    // limit holds per node, from a full bucket.
    const during = [];
    for (let i = 0; i < 5; i++) during.push(await buckets.take([bucket], clock.now()));
    assert.deepEqual(during.map((d) => d === undefined), [true, true, true, false, false]);
    assert.equal(memory.size, 1);
    assert.equal(messages(/Redis is not answering/).length, 1, 'one warning for the outage');
    assert.equal(store.degraded, true);

    await redis.start();
    await until(() => !store.degraded, 'the node goes back to Redis by itself');
    assert.equal(messages(/Redis answers again/).length, 1);
    // Redis lost everything when it was killed (it keeps nothing on disk): a fresh bucket there.
    assert.equal(await buckets.take([{ ...bucket, quota: 1 }], clock.now()), undefined);
    assert.ok(await buckets.take([{ ...bucket, quota: 1 }], clock.now()), 'counted in Redis again');
    assert.equal(messages(/Redis is not answering/).length, 1);
  });

  test('does not hold a request longer than the command timeout when Redis stops answering', async (t) => {
    const redis = await startOwnRedis(t);
    const { log, messages } = capturedLog();
    const store = new SharedStore({ url: redis.url, prefix: 'hung:', timeoutMs: 100, log });
    t.after(() => store.close());
    await store.connect();
    const buckets = new RedisBuckets(store, new MemoryBuckets());
    assert.equal(await buckets.take([bucket], 0), undefined);

    redis.pause(); // the connection stays open; nothing answers
    // The first check waits out the timeout and falls back; those after it do not wait at all.
    assert.equal(await buckets.take([bucket], 0), undefined);
    assert.equal(store.degraded, true);
    assert.equal(store.usable, false);
    assert.equal(messages(/Redis is not answering/)[0]?.cause, 'Command timed out');

    redis.resume();
    await until(() => !store.degraded, 'a PING finds it answering again');
    assert.equal(messages(/Redis answers again/).length, 1);
  });

  test('starts degraded, with a warning, when Redis is not there at all, and connects when it comes', async (t) => {
    const redis = await startOwnRedis(t);
    await redis.stop();
    const { log, messages } = capturedLog();
    const store = new SharedStore({ url: redis.url, prefix: 'late:', timeoutMs: 100, log });
    t.after(() => store.close());
    await store.connect();
    assert.equal(store.degraded, true);
    assert.equal(messages(/Redis is not answering/).length, 1);
    const buckets = new RedisBuckets(store, new MemoryBuckets());
    assert.equal(await buckets.take([bucket], 0), undefined, 'limited in memory meanwhile');
    await redis.start();
    await until(() => store.usable, 'connected once it is there');
    assert.equal(messages(/Redis answers again/).length, 1);
  });
});
