import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { ManualClock } from '../../../src/clock.ts';
import { bucketLevel, bucketWaitMs, MemoryBuckets, type BucketCheck, type BucketStore } from '../../../src/risk/limits/buckets.ts';
import { RedisBuckets } from '../../../src/risk/limits/redis-buckets.ts';
import { redisSkip, testSharedStore } from '../../helpers/redis.ts';

/** The two stores, each fed the same ManualClock's time. */
const stores: { name: string; skip: string | false; open(t: TestContext): Promise<{ store: BucketStore; ttlOf?: (key: string) => Promise<number> }> }[] = [
  { name: 'memory', skip: false, open: async () => ({ store: new MemoryBuckets() }) },
  {
    name: 'Redis',
    skip: redisSkip,
    async open(t) {
      const shared = await testSharedStore(t);
      // A fallback that fails the test if used: every answer here must come from Redis.
      const unused: BucketStore = { take: () => assert.fail('the fallback store was used') };
      return { store: new RedisBuckets(shared, unused), ttlOf: (key) => shared.client.pttl(`${shared.prefix}rl:${key}`) };
    },
  },
];

const client = (quota: number, windowMs: number, key = 'client:oms'): BucketCheck => ({ key, quota, windowMs });

/** Takes `n` tokens one after the other; the number allowed. */
async function burst(store: BucketStore, checks: BucketCheck[], now: number, n: number): Promise<number> {
  let allowed = 0;
  for (let i = 0; i < n; i++) if ((await store.take(checks, now)) === undefined) allowed++;
  return allowed;
}

for (const { name, skip, open } of stores) {
  describe(`token buckets in ${name}`, { skip }, () => {
    test('allows a burst of exactly the quota, then refuses until one token has refilled', async (t) => {
      const { store } = await open(t);
      const clock = new ManualClock(1_000_000);
      assert.equal(await burst(store, [client(10, 60_000)], clock.now(), 25), 10);
      // Refilling at 10 per 60 s: one token every 6 s.
      assert.deepEqual(await store.take([client(10, 60_000)], clock.now()), { index: 0, waitMs: 6000 });
      clock.advance(5999);
      assert.deepEqual(await store.take([client(10, 60_000)], clock.now()), { index: 0, waitMs: 1 });
      clock.advance(1);
      assert.equal(await store.take([client(10, 60_000)], clock.now()), undefined);
      assert.ok(await store.take([client(10, 60_000)], clock.now()));
    });

    test('refills a quota per window and never holds more than the quota', async (t) => {
      const { store } = await open(t);
      const clock = new ManualClock(0);
      assert.equal(await burst(store, [client(5, 10_000)], clock.now(), 5), 5);
      clock.advance(4000); // two tokens
      assert.equal(await burst(store, [client(5, 10_000)], clock.now(), 5), 2);
      clock.advance(3_600_000); // an hour idle: full, not 360 tokens
      assert.equal(await burst(store, [client(5, 10_000)], clock.now(), 20), 5);
    });

    test('takes from every bucket of a check or from none, and names the one that waits longest', async (t) => {
      const { store } = await open(t);
      const clock = new ManualClock(0);
      const address = client(3, 3000, 'address:192.0.2.1');
      const endpoint = client(100, 1000, 'endpoint:/token');
      assert.equal(await burst(store, [address, endpoint], clock.now(), 3), 3);
      // The address is out: refused, and the endpoint's quota is not spent by the refusal.
      for (let i = 0; i < 10; i++) assert.deepEqual(await store.take([address, endpoint], clock.now()), { index: 0, waitMs: 1000 });
      assert.equal(await burst(store, [endpoint], clock.now(), 200), 97);
      // Both out: the longer wait (the address's 1 s against the endpoint's 10 ms) is the answer.
      assert.deepEqual(await store.take([endpoint, address], clock.now()), { index: 1, waitMs: 1000 });
    });

    test('keeps callers apart', async (t) => {
      const { store } = await open(t);
      const clock = new ManualClock(0);
      assert.equal(await burst(store, [client(2, 60_000, 'client:a')], clock.now(), 3), 2);
      assert.equal(await burst(store, [client(2, 60_000, 'client:b')], clock.now(), 3), 2);
    });

    test('refills nothing for a clock behind the one that last took (another node slightly behind)', async (t) => {
      const { store } = await open(t);
      assert.equal(await burst(store, [client(2, 1000)], 10_000, 2), 2);
      assert.deepEqual(await store.take([client(2, 1000)], 9_000), { index: 0, waitMs: 500 });
    });

    if (name === 'Redis') {
      test('lets a bucket key expire once it would be full again', async (t) => {
        const { store, ttlOf } = await open(t);
        await burst(store, [client(10, 60_000)], 0, 4);
        // Four tokens short at 10 per 60 s: full again in 24 s.
        const ttl = await ttlOf!('client:oms');
        assert.ok(ttl > 23_000 && ttl <= 24_000, `expires in ${ttl} ms`);
      });
    }

    if (name === 'memory') {
      test('keeps at most its bound of buckets, forgetting the least recently used', () => {
        const memory = new MemoryBuckets(3);
        const take = (key: string) => memory.take([client(1, 60_000, key)], 0);
        for (const key of ['a', 'b', 'c']) assert.equal(take(key), undefined);
        assert.ok(take('a'), 'a is out of tokens (and now the most recently used)');
        assert.equal(take('d'), undefined);
        assert.equal(memory.size, 3);
        assert.ok(take('a'), 'a was kept');
        assert.equal(take('b'), undefined, 'b was forgotten: full again');
      });
    }
  });
}

describe('the token bucket arithmetic', () => {
  test('starts full, refills linearly, caps at the quota', () => {
    assert.equal(bucketLevel(undefined, 0, 0, 10, 1000), 10);
    assert.equal(bucketLevel(0, 0, 500, 10, 1000), 5);
    assert.equal(bucketLevel(2, 0, 10_000, 10, 1000), 10);
    assert.equal(bucketLevel(2, 1000, 0, 10, 1000), 2, 'time going back refills nothing');
  });

  test('waits whole milliseconds until a token, at least one', () => {
    assert.equal(bucketWaitMs(0, 10, 1000), 100);
    assert.equal(bucketWaitMs(0.5, 10, 1000), 50);
    assert.equal(bucketWaitMs(0.9999999, 10, 1000), 1);
  });
});
