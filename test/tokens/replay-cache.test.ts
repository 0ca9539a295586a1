import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ManualClock } from '../../src/clock.ts';
import { migrate } from '../../src/storage/database.ts';
import { DatabaseReplayCache } from '../../src/tokens/replay-cache.ts';
import { GroupCommit } from '../../src/storage/group-commit.ts';
import { testDialects } from '../helpers/storage.ts';

for (const dialect of testDialects()) {
  describe(`the replay cache on ${dialect.name}`, () => {
    test('accepts the first use of a key and refuses the second', async (t) => {
      const database = await dialect.create(t);
      await migrate(database.storage);
      const clock = new ManualClock(1_000_000);
      const cache = new DatabaseReplayCache(database.storage.db, clock);
      assert.equal(await cache.use('client_assertion:oms:1', 1_060_000), true);
      assert.equal(await cache.use('client_assertion:oms:1', 1_060_000), false);
      assert.equal(await cache.use('client_assertion:oms:2', 1_060_000), true);
      assert.equal(await cache.use('client_assertion:risk:1', 1_060_000), true);
    });

    test('refuses a key used through another connection, as on another node', async (t) => {
      const database = await dialect.create(t);
      await migrate(database.storage);
      const clock = new ManualClock(1_000_000);
      const first = new DatabaseReplayCache(database.storage.db, clock);
      const second = new DatabaseReplayCache(database.connect().db, clock);
      assert.equal(await first.use('client_assertion:oms:abc', 1_060_000), true);
      assert.equal(await second.use('client_assertion:oms:abc', 1_060_000), false);
      assert.equal(await second.use('client_assertion:oms:def', 1_060_000), true);
      assert.equal(await first.use('client_assertion:oms:def', 1_060_000), false);
    });

    test('lets exactly one of many simultaneous uses through, across connections', async (t) => {
      const database = await dialect.create(t);
      await migrate(database.storage);
      const clock = new ManualClock(1_000_000);
      const caches = [database.storage, database.connect(), database.connect()].map((s) => new DatabaseReplayCache(s.db, clock));
      const results = await Promise.all(Array.from({ length: 12 }, (_, i) => caches[i % 3]!.use('dpop:jkt:race', 1_060_000)));
      assert.equal(results.filter(Boolean).length, 1);
    });

    test('with a group-commit writer, answers each use of a burst on its own: the first use of a key only', async (t) => {
      const database = await dialect.create(t);
      await migrate(database.storage);
      const clock = new ManualClock(1_000_000);
      const cache = new DatabaseReplayCache(database.storage.db, clock, { writer: new GroupCommit(database.storage.db) });
      assert.equal(await cache.use('client_assertion:oms:used', 1_060_000), true);
      // One turn: one statement for all of them, the repeats inside it and the earlier use included.
      const keys = ['a', 'b', 'a', 'used', 'c', 'b', 'a'].map((k) => `client_assertion:oms:${k}`);
      const answers = await Promise.all(keys.map((key) => cache.use(key, 1_060_000)));
      assert.deepEqual(answers, [true, true, false, false, true, false, false]);
      // And more than one statement's worth in a turn.
      const many = await Promise.all(Array.from({ length: 1201 }, (_, i) => cache.use(`dpop:jkt:${i % 1200}`, 1_060_000)));
      assert.equal(many.filter(Boolean).length, 1200);
      assert.equal(many[1200], false);
      const other = new DatabaseReplayCache(database.connect().db, clock);
      assert.equal(await other.use('dpop:jkt:7', 1_060_000), false, 'what the batch recorded is committed');
    });

    test('with a group-commit writer, lets exactly one of many simultaneous uses through, across nodes', async (t) => {
      const database = await dialect.create(t);
      await migrate(database.storage);
      const clock = new ManualClock(1_000_000);
      const caches = [database.storage, database.connect(), database.connect()].map((s) => new DatabaseReplayCache(s.db, clock, { writer: new GroupCommit(s.db) }));
      const results = await Promise.all(Array.from({ length: 30 }, (_, i) => caches[i % 3]!.use('dpop:jkt:race', 1_060_000)));
      assert.equal(results.filter(Boolean).length, 1);
    });

    test('treats an expired entry that was not pruned yet as unused', async (t) => {
      const database = await dialect.create(t);
      await migrate(database.storage);
      const clock = new ManualClock(1_000_000);
      const cache = new DatabaseReplayCache(database.storage.db, clock, { pruneEveryMs: Number.MAX_SAFE_INTEGER });
      assert.equal(await cache.use('k', 1_010_000), true);
      clock.set(1_010_000);
      assert.equal(await cache.use('k', 1_070_000), false); // not yet expired: expires_at is not < now
      clock.set(1_010_001);
      assert.equal(await cache.use('k', 1_070_000), true);
      assert.equal(await cache.use('k', 1_070_000), false);
    });

    test('holds a use whose expiry has a fraction until the end of its second', async (t) => {
      const database = await dialect.create(t);
      await migrate(database.storage);
      const clock = new ManualClock(1_000_000);
      const cache = new DatabaseReplayCache(database.storage.db, clock, { pruneEveryMs: Number.MAX_SAFE_INTEGER });
      // An assertion's exp of 1,000.5 s plus 60 s of skew: exp checks read whole seconds of the clock.
      assert.equal(await cache.use('client_assertion:oms:frac', (1_000.5 + 60) * 1000), true);
      clock.set(1_060_600);
      assert.equal(await cache.use('client_assertion:oms:frac', 1_120_000), false, 'still in the second the exp check lets through');
      clock.set(1_061_000);
      assert.equal(await cache.use('client_assertion:oms:frac', 1_120_000), false);
      clock.set(1_061_001);
      assert.equal(await cache.use('client_assertion:oms:frac', 1_120_000), true, 'let go once that second is over');
      // A fraction of a millisecond is no fault of the database either (a bigint column on PostgreSQL).
      assert.equal(await cache.use('client_assertion:oms:tiny', 1_100_000.0001), true);
      const rows = await database.storage.db.selectFrom('jti_replay').select(['key', 'expires_at']).where('key', '=', 'client_assertion:oms:tiny').execute();
      assert.equal(Number(rows[0]!.expires_at), 1_101_000);
    });

    test('prunes expired entries and keeps live ones', async (t) => {
      const database = await dialect.create(t);
      await migrate(database.storage);
      const clock = new ManualClock(1_000_000);
      const cache = new DatabaseReplayCache(database.storage.db, clock, { pruneEveryMs: Number.MAX_SAFE_INTEGER });
      await cache.use('old-1', 1_001_000);
      await cache.use('old-2', 1_002_000);
      await cache.use('live', 2_000_000);
      assert.equal(await cache.prune(1_500_000), 2);
      const rows = await database.storage.db.selectFrom('jti_replay').select('key').execute();
      assert.deepEqual(rows.map((r) => r.key), ['live']);
    });

    test('prunes on its own at most once per interval', async (t) => {
      const database = await dialect.create(t);
      await migrate(database.storage);
      const clock = new ManualClock(1_000_000);
      const cache = new DatabaseReplayCache(database.storage.db, clock, { pruneEveryMs: 60_000 });
      await cache.use('a', 1_001_000);
      clock.advance(30_000);
      await cache.use('b', 1_100_000);
      await cache.settled();
      assert.equal((await database.storage.db.selectFrom('jti_replay').select('key').execute()).length, 2);
      clock.advance(30_000);
      await cache.use('c', 1_200_000);
      await cache.settled();
      const keys = (await database.storage.db.selectFrom('jti_replay').select('key').orderBy('key').execute()).map((r) => r.key);
      assert.deepEqual(keys, ['b', 'c']);
    });

    test('refuses an empty or overlong key, and an expiry that is no time', async (t) => {
      const database = await dialect.create(t);
      await migrate(database.storage);
      const cache = new DatabaseReplayCache(database.storage.db, new ManualClock(0));
      await assert.rejects(cache.use('', 1), RangeError);
      await assert.rejects(cache.use('k'.repeat(513), 1), RangeError);
      await assert.rejects(cache.use('k', Number.NaN), RangeError);
      await assert.rejects(cache.use('k', Number.POSITIVE_INFINITY), RangeError);
    });
  });
}

