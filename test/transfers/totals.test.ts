import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { createLogger } from '../../src/log.ts';
import { SharedStore } from '../../src/risk/limits/redis.ts';
import { migrate } from '../../src/storage/database.ts';
import { formatAmount, maxLimit, parseAmount } from '../../src/transfers/amounts.ts';
import { DatabaseTotals, pruneTransferLedger } from '../../src/transfers/totals-database.ts';
import { destinationUseRetentionDays, forgetFirstUse, pruneDestinationUses, recordUse, usedBefore } from '../../src/transfers/destination-uses.ts';
import { RedisTotals } from '../../src/transfers/totals-redis.ts';
import { holdGraceMs, newHolder, totalScope, totalWindowMs, TotalsUnavailable, type TransferTotals } from '../../src/transfers/totals.ts';
import { freePort } from '../helpers/server.ts';
import { redisSkip, testSharedStore } from '../helpers/redis.ts';
import { testDialects } from '../helpers/storage.ts';

const scope = totalScope('5493001KJTIIGC8Y1R12', 'GB-FX-001', 'USD');
const units = (n: number | string) => parseAmount(String(n), 'exact')!;
const t0 = Date.UTC(2026, 0, 5, 9);

describe('transfer amounts', () => {
  test('are counted exactly in micro-units and rounded up beyond six decimals', () => {
    assert.equal(parseAmount('2500.00', 'exact'), 2_500_000_000n);
    assert.equal(parseAmount(2500, 'exact'), 2_500_000_000n);
    assert.equal(parseAmount('0.1', 'up'), 100_000n);
    assert.equal(parseAmount('0.000000000000000001', 'up'), 1n, 'one wei counts as one micro-unit: a total is never understated');
    assert.equal(parseAmount('1.0000001', 'exact'), undefined, 'a limit must fit exactly');
    assert.equal(parseAmount('9000000000.000001', 'exact'), undefined, 'a limit stays below 2^53 micro-units');
    assert.ok(maxLimit < 2n ** 53n);
    assert.equal(parseAmount('-1', 'up'), undefined);
    assert.equal(parseAmount('1e3', 'up'), undefined);
    assert.equal(formatAmount(2_500_500_000n), '2500.5');
  });
});

/** The contract every totals store keeps, on one store (or two handles of one store: `other`). */
function contract(make: (t: TestContext) => Promise<{ a: TransferTotals; b: TransferTotals }>) {
  test('reserves within the limit and refuses the reservation that would exceed it', async (t) => {
    const { a } = await make(t);
    assert.deepEqual(await a.reserve({ scope, id: 'r1', holder: 'h', amount: units(600), limit: units(1000), now: t0 }), { reserved: true, created: true, total: 0n });
    assert.deepEqual(await a.reserve({ scope, id: 'r2', holder: 'h', amount: units(400), limit: units(1000), now: t0 + 1 }), { reserved: true, created: true, total: units(600) }, 'exactly at the limit passes');
    assert.deepEqual(await a.reserve({ scope, id: 'r3', holder: 'h', amount: units('0.01'), limit: units(1000), now: t0 + 2 }), { reserved: false, created: false, total: units(1000) });
    assert.equal(await a.total(scope, t0 + 3), units(1000));
  });

  test('counts one id once and takes a released reservation back', async (t) => {
    const { a } = await make(t);
    await a.reserve({ scope, id: 'same', holder: 'h1', amount: units(700), limit: units(1000), now: t0 });
    assert.deepEqual(await a.reserve({ scope, id: 'same', holder: 'h2', amount: units(700), limit: units(1000), now: t0 + 5 }), { reserved: true, created: false, total: 0n }, 'the same transfer again is not counted twice, and not created by this call');
    assert.equal(await a.total(scope, t0 + 6), units(700));
    await a.release(scope, 'same', 'h1');
    await a.release(scope, 'same', 'h2');
    assert.equal(await a.total(scope, t0 + 7), 0n);
    assert.equal((await a.reserve({ scope, id: 'next', holder: 'h', amount: units(1000), limit: units(1000), now: t0 + 8 })).reserved, true);
  });

  test('keeps a reservation two issuances hold counted until both let it go, on either node', async (t) => {
    const { a, b } = await make(t);
    // Two identical issuances of one txn, in parallel: the first creates the reservation, the second finds it.
    assert.equal((await a.reserve({ scope, id: 'tx', holder: 'issuance-1', amount: units(900), limit: units(1000), now: t0 })).created, true);
    assert.deepEqual(await b.reserve({ scope, id: 'tx', holder: 'issuance-2', amount: units(900), limit: units(1000), now: t0 + 1 }), { reserved: true, created: false, total: 0n });
    // The first is refused after reserving (a policy): it lets go of its hold, the second still counts on the reservation.
    await a.release(scope, 'tx', 'issuance-1');
    assert.equal(await b.total(scope, t0 + 2), units(900), 'the second issuance\'s transfer still counts');
    assert.equal((await a.reserve({ scope, id: 'other', holder: 'issuance-3', amount: units(200), limit: units(1000), now: t0 + 3 })).reserved, false, 'and the limit holds against it');
    await a.release(scope, 'tx', 'issuance-1');
    assert.equal(await a.total(scope, t0 + 4), units(900), 'letting go twice is letting go once');
    await b.release(scope, 'tx', 'issuance-2');
    assert.equal(await a.total(scope, t0 + 5), 0n, 'no one holds it: taken back');
  });

  test('a reservation joined later still leaves the window from its first reservation', async (t) => {
    const { a } = await make(t);
    await a.reserve({ scope, id: 'tx', holder: 'issuance-1', amount: units(900), limit: units(1000), now: t0 });
    await a.keep(scope, 'tx', 'issuance-1');
    await a.reserve({ scope, id: 'tx', holder: 'issuance-2', amount: units(900), limit: units(1000), now: t0 + 3600_000 });
    await a.keep(scope, 'tx', 'issuance-2');
    assert.equal(await a.total(scope, t0 + totalWindowMs - 1), units(900));
    assert.equal(await a.total(scope, t0 + totalWindowMs), 0n, 'a refreshed token does not stretch its transfer\'s window');
  });

  test("keeps an issued holder's hold lasting: its own release no longer takes it back, and the reservation leaves with its window", async (t) => {
    const { a, b } = await make(t);
    await a.reserve({ scope, id: 'tx', holder: 'issuance-1', amount: units(900), limit: units(1000), now: t0 });
    await a.keep(scope, 'tx', 'issuance-1');
    await a.keep(scope, 'tx', 'issuance-1');
    await b.release(scope, 'tx', 'issuance-1');
    assert.equal(await b.total(scope, t0 + 1), units(900), 'an issued token never lets go');
    // A refresh: one more holder while it is decided; refused, it lets go of its own hold only.
    assert.deepEqual(await b.reserve({ scope, id: 'tx', holder: 'refresh-1', amount: units(900), limit: units(1000), now: t0 + 2 }), { reserved: true, created: false, total: 0n });
    await b.release(scope, 'tx', 'refresh-1');
    assert.equal(await a.total(scope, t0 + 3), units(900));
    await a.keep(scope, 'tx', 'nobody');
    assert.equal(await a.total(scope, t0 + totalWindowMs - 1), units(900));
    assert.equal(await a.total(scope, t0 + totalWindowMs), 0n, 'a refreshed token does not stretch its window');
  });

  test('of two identical issuances of one txn, the one issued keeps the reservation when the other, its creator, is refused', async (t) => {
    const { a, b } = await make(t);
    await a.reserve({ scope, id: 'tx', holder: 'issuance-1', amount: units(900), limit: units(1000), now: t0 });
    await b.reserve({ scope, id: 'tx', holder: 'issuance-2', amount: units(900), limit: units(1000), now: t0 + 1 });
    await b.keep(scope, 'tx', 'issuance-2');
    await a.release(scope, 'tx', 'issuance-1');
    assert.equal(await a.total(scope, t0 + 2), units(900));
    assert.equal((await a.reserve({ scope, id: 'other', holder: 'issuance-3', amount: units(200), limit: units(1000), now: t0 + 3 })).reserved, false);
  });

  test('slides: what was reserved 24 hours ago leaves the total', async (t) => {
    const { a } = await make(t);
    // Each one's token issued: its hold lasting.
    await a.reserve({ scope, id: 'morning', holder: 'h', amount: units(900), limit: units(1000), now: t0 });
    await a.keep(scope, 'morning', 'h');
    await a.reserve({ scope, id: 'noon', holder: 'h', amount: units(100), limit: units(1000), now: t0 + 3 * 3600_000 });
    await a.keep(scope, 'noon', 'h');
    assert.equal((await a.reserve({ scope, id: 'evening', holder: 'h', amount: units(500), limit: units(1000), now: t0 + totalWindowMs - 1 })).reserved, false);
    assert.deepEqual(await a.reserve({ scope, id: 'next-day', holder: 'h', amount: units(500), limit: units(1000), now: t0 + totalWindowMs }), { reserved: true, created: true, total: units(100) });
    assert.equal(await a.total(scope, t0 + totalWindowMs), units(600));
  });

  test('answers created only to the call that added the reservation, on either node', async (t) => {
    const { a, b } = await make(t);
    assert.equal((await a.reserve({ scope, id: 'tx', holder: 'h', amount: units(900), limit: units(1000), now: t0 })).created, true);
    const again = await b.reserve({ scope, id: 'tx', holder: 'h2', amount: units(900), limit: units(1000), now: t0 + 1 });
    assert.deepEqual(again, { reserved: true, created: false, total: 0n }, 'found counted: the earlier call\'s, not this one\'s to release');
    assert.equal(await a.total(scope, t0 + 2), units(900));
  });

  test('shares one total between the spellings of one ERC-20 token', async (t) => {
    const { a } = await make(t);
    const usdc = 'eip155:1/erc20:0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48';
    assert.equal(totalScope('5493001KJTIIGC8Y1R12', 'CRY-001', usdc), totalScope('5493001KJTIIGC8Y1R12', 'CRY-001', usdc.toLowerCase()));
    await a.reserve({ scope: totalScope('5493001KJTIIGC8Y1R12', 'CRY-001', usdc), id: 'x', holder: 'h', amount: units(600), limit: units(1000), now: t0 });
    const upper = `eip155:1/erc20:0x${usdc.slice(-40).toUpperCase()}`;
    assert.deepEqual(await a.reserve({ scope: totalScope('5493001KJTIIGC8Y1R12', 'CRY-001', upper), id: 'y', holder: 'h', amount: units(600), limit: units(1000), now: t0 + 1 }), { reserved: false, created: false, total: units(600) });
  });

  test('keeps each account and asset apart', async (t) => {
    const { a } = await make(t);
    await a.reserve({ scope, id: 'x', holder: 'h', amount: units(1000), limit: units(1000), now: t0 });
    assert.equal((await a.reserve({ scope: totalScope('5493001KJTIIGC8Y1R12', 'GB-FX-001', 'EUR'), id: 'x', holder: 'h', amount: units(1000), limit: units(1000), now: t0 })).reserved, true);
    assert.equal((await a.reserve({ scope: totalScope('5493001KJTIIGC8Y1R12', 'GB-FX-002', 'USD'), id: 'x', holder: 'h', amount: units(1000), limit: units(1000), now: t0 })).reserved, true);
  });

  test('two nodes reserving at once never pass the limit together', async (t) => {
    const { a, b } = await make(t);
    // 40 reservations of 100 against a limit of 1,000, half from each node, all at once.
    const attempts = Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? a : b).reserve({ scope, id: `c${i}`, holder: 'h', amount: units(100), limit: units(1000), now: t0 + i }));
    const results = await Promise.all(attempts);
    assert.equal(results.filter((r) => r.reserved).length, 10);
    assert.equal(await a.total(scope, t0 + 100), units(1000));
    assert.equal(await b.total(scope, t0 + 100), units(1000));
  });
}

for (const dialect of testDialects()) {
  describe(`transfer totals in the database on ${dialect.name}`, () => {
    contract(async (t) => {
      const database = await dialect.create(t);
      await migrate(database.storage);
      // Two handles, as two nodes (two pools on PostgreSQL).
      return { a: new DatabaseTotals(database.storage.db), b: new DatabaseTotals(database.connect().db) };
    });

    test('pruning drops reservations out of every window and first uses past their retention', async (t) => {
      const database = await dialect.create(t);
      await migrate(database.storage);
      const db = database.storage.db;
      const totals = new DatabaseTotals(db);
      await totals.reserve({ scope, id: 'old', holder: 'h', amount: units(1), limit: units(10), now: t0 });
      await totals.reserve({ scope: totalScope('5493001KJTIIGC8Y1R12', 'OTHER', 'USD'), id: 'new', holder: 'h', amount: units(1), limit: units(10), now: t0 + totalWindowMs - 1 });
      assert.equal(await pruneTransferLedger(db, t0 + totalWindowMs), 1);
      assert.equal(await recordUse(db, 'TRE-001', 'iban:X', t0), true, 'a first use');
      assert.equal(await recordUse(db, 'TRE-001', 'iban:X', t0 + 1), false, 'used before');
      const retention = destinationUseRetentionDays * 86_400_000;
      assert.equal(await usedBefore(db, 'TRE-001', 'iban:X', t0 + retention), true);
      assert.equal(await pruneDestinationUses(db, t0 + 1 + retention), 0);
      assert.equal(await pruneDestinationUses(db, t0 + 2 + retention), 1);
      assert.equal(await usedBefore(db, 'TRE-001', 'iban:X', t0 + 2 + retention), false);
    });

    test('a reservation whose token is refreshed again and again keeps one row, which pruning drops with its window', async (t) => {
      const database = await dialect.create(t);
      await migrate(database.storage);
      const db = database.storage.db;
      const totals = new DatabaseTotals(db);
      const rows = async () => (await db.selectFrom('transfer_ledger').select('id').where('scope', '=', scope).execute()).map((r) => r.id).sort();
      await totals.reserve({ scope, id: 'tx', holder: 'issuance', amount: units(900), limit: units(1000), now: t0 });
      await totals.keep(scope, 'tx', 'issuance');
      for (let i = 0; i < 10; i++) {
        await totals.reserve({ scope, id: 'tx', holder: `refresh-${i}`, amount: units(900), limit: units(1000), now: t0 + (i + 1) * 60_000 });
        if (i === 3) assert.deepEqual(await rows(), ['tx', 'tx/refresh-3'], 'the lasting row, and the refresh being decided');
        await totals.keep(scope, 'tx', `refresh-${i}`);
      }
      assert.deepEqual(await rows(), ['tx']);
      assert.equal(await pruneTransferLedger(db, t0 + totalWindowMs), 1);
      assert.deepEqual(await rows(), []);
    });

    test('settles the holders left behind once the grace has passed: beside a lasting hold, or with no token issued, taken back; one of before migration 0067, kept', async (t) => {
      const database = await dialect.create(t);
      await migrate(database.storage);
      const db = database.storage.db;
      const totals = new DatabaseTotals(db);
      const rows = async () => (await db.selectFrom('transfer_ledger').select('id').where('scope', '=', scope).execute()).map((r) => r.id).sort();
      // A token issued and kept; a refresh of it whose node died while it was decided.
      await totals.reserve({ scope, id: 'tx', holder: newHolder('issuance'), amount: units(500), limit: units(1000), now: t0 });
      await db.updateTable('transfer_ledger').set({ id: 'tx' }).where('scope', '=', scope).execute();
      await totals.reserve({ scope, id: 'tx', holder: 'refresh:1', amount: units(500), limit: units(1000), now: t0 + 2 });
      // An issuance that died before its token was issued, and a holder of a node of the release before (no held_at).
      await totals.reserve({ scope, id: 'died', holder: 'died:1', amount: units(300), limit: units(1000), now: t0 + 2 });
      await db.insertInto('transfer_ledger').values({ scope, id: 'old/before:1', amount: '100', reserved_at: t0 + 3, held_at: null }).execute();
      assert.equal(await pruneTransferLedger(db, t0 + 2 + holdGraceMs - 1), 0, 'within the grace: still deciding, as far as anyone knows');
      assert.deepEqual(await rows(), ['died/died:1', 'old/before:1', 'tx', 'tx/refresh:1']);
      assert.equal(await pruneTransferLedger(db, t0 + 2 + holdGraceMs), 2);
      assert.deepEqual(await rows(), ['old/before:1', 'tx']);
      assert.equal(await totals.total(scope, t0 + 2 + holdGraceMs), units(500) + 100n);
    });

    test("a destination's uses before its latest removal do not count: its next use is a first use again, which a refusal takes back", async (t) => {
      const database = await dialect.create(t);
      await migrate(database.storage);
      const db = database.storage.db;
      assert.equal(await recordUse(db, 'TRE-001', 'iban:X', t0), true);
      const removedAt = t0 + 1000;
      assert.equal(await usedBefore(db, 'TRE-001', 'iban:X', t0 + 2000), true, 'used, as far as the book never removed it');
      assert.equal(await usedBefore(db, 'TRE-001', 'iban:X', t0 + 2000, removedAt), false, 'not since it was removed and added again');
      assert.equal(await recordUse(db, 'TRE-001', 'iban:X', t0 + 2000, removedAt), true, 'a first use again');
      assert.equal(await usedBefore(db, 'TRE-001', 'iban:X', t0 + 3000, removedAt), true);
      await forgetFirstUse(db, 'TRE-001', 'iban:X', t0 + 2000);
      assert.equal(await usedBefore(db, 'TRE-001', 'iban:X', t0 + 3000, removedAt), false, 'its issuance refused: taken back');
      // The same for a use older than the retention: new again, and its first use taken back on a refusal.
      const retention = destinationUseRetentionDays * 86_400_000;
      assert.equal(await recordUse(db, 'TRE-002', 'iban:Y', t0), true);
      assert.equal(await recordUse(db, 'TRE-002', 'iban:Y', t0 + retention + 1), true, 'unused for the retention: a first use again');
    });
  });
}

/** A database with an (empty) audit log: the Redis totals read it to settle a holder a dead node left. */
async function auditLog(t: TestContext) {
  const database = await testDialects()[0]!.create(t);
  await migrate(database.storage);
  return database.storage.db;
}

describe('transfer totals in Redis', { skip: redisSkip }, () => {
  contract(async (t) => {
    const store = await testSharedStore(t);
    const db = await auditLog(t);
    // A second connection under the same prefix: another node sharing the store.
    const other = new SharedStore({ url: store.client.options.host ? `redis://${store.client.options.host}:${store.client.options.port}` : 'redis://127.0.0.1:6379', prefix: store.prefix, timeoutMs: 1000, log: createLogger('silent') });
    await other.connect();
    t.after(() => other.close());
    return { a: new RedisTotals(store, db), b: new RedisTotals(other, db) };
  });

  /** A store on the shared Redis, with the database whose audit log tells whether a holder's request issued its token. */
  async function redisTotals(t: TestContext) {
    const store = await testSharedStore(t);
    const totals = new RedisTotals(store, await auditLog(t));
    const key = (name: string) => `${store.prefix}transfer-total:{${scope}}:${name}`;
    const holders = () => store.client.hgetall(key('holders'));
    return { store, totals, key, holders };
  }

  test("a reservation whose token is refreshed again and again keeps one name in its holders' list, and leaves the hashes with its window", async (t) => {
    const { totals, store, key, holders } = await redisTotals(t);
    await totals.reserve({ scope, id: 'tx', holder: 'issuance', amount: units(900), limit: units(1000), now: t0 });
    await totals.keep(scope, 'tx', 'issuance');
    for (let i = 0; i < 10; i++) {
      await totals.reserve({ scope, id: 'tx', holder: `refresh-${i}`, amount: units(900), limit: units(1000), now: t0 + (i + 1) * 60_000 });
      if (i === 3) assert.deepEqual(await holders(), { tx: ' * refresh-3 ' }, 'the lasting hold, and the refresh being decided');
      await totals.keep(scope, 'tx', `refresh-${i}`);
    }
    assert.deepEqual(await holders(), { tx: ' * ' });
    // The next reservation of the scope, a window on, drops it from every key.
    await totals.reserve({ scope, id: 'next', holder: 'h', amount: units(1), limit: units(1000), now: t0 + totalWindowMs });
    assert.deepEqual(await holders(), { next: ' h ' });
    assert.deepEqual(await store.client.zrange(key('held'), 0, -1), ['next h'], 'the kept holders have no time left to settle');
    assert.deepEqual(await store.client.hkeys(key('amounts')), ['next']);
    assert.deepEqual(await store.client.zrange(key('times'), 0, -1), ['next']);
    assert.ok((await store.client.pttl(key('holders'))) > 0, 'and the keys expire a window after their newest reservation');
  });

  test('gives each holder the time it took its hold, in the script that writes it, until it lets go or is kept', async (t) => {
    const { totals, store, key } = await redisTotals(t);
    const held = () => store.client.zrange(key('held'), 0, -1, 'WITHSCORES');
    await totals.reserve({ scope, id: 'tx', holder: 'issuance', amount: units(900), limit: units(1000), now: t0 });
    await totals.reserve({ scope, id: 'tx', holder: 'refresh', amount: units(900), limit: units(1000), now: t0 + 5 });
    assert.deepEqual(await held(), ['tx issuance', String(t0), 'tx refresh', String(t0 + 5)]);
    await totals.keep(scope, 'tx', 'issuance');
    await totals.release(scope, 'tx', 'refresh');
    assert.deepEqual(await held(), [], 'a holder kept or let go has no time left to settle');
  });

  test('settles the holders left behind once the grace has passed, at the next reservation: beside a lasting hold, or with no token issued, taken back; one of the release before (no time), kept', async (t) => {
    const { totals, store, key, holders } = await redisTotals(t);
    // A token issued and kept; a refresh of it whose node died while it was decided.
    await totals.reserve({ scope, id: 'tx', holder: newHolder('issuance'), amount: units(500), limit: units(1000), now: t0 });
    await store.client.hset(key('holders'), 'tx', ' * ');
    await totals.reserve({ scope, id: 'tx', holder: 'refresh:1', amount: units(500), limit: units(1000), now: t0 + 2 });
    // An issuance that died before its token was issued, and a holder of a node of the release before (as its script wrote it: no time).
    await totals.reserve({ scope, id: 'died', holder: 'died:1', amount: units(300), limit: units(1000), now: t0 + 2 });
    await store.client.zadd(key('times'), t0 + 3, 'old');
    await store.client.hset(key('amounts'), 'old', '100');
    await store.client.hset(key('holders'), 'old', ' before:1 ');
    const probe = (id: string, now: number) => totals.reserve({ scope, id, holder: 'h', amount: units(1000), limit: units(1000), now });
    assert.deepEqual(await probe('within', t0 + 2 + holdGraceMs - 1), { reserved: false, created: false, total: units(800) + 100n }, 'within the grace: still deciding, as far as anyone knows');
    assert.deepEqual(await holders(), { tx: ' * refresh:1 ', died: ' died:1 ', old: ' before:1 ' });
    assert.deepEqual(await probe('after', t0 + 2 + holdGraceMs), { reserved: false, created: false, total: units(500) + 100n }, 'settled before it is counted');
    assert.deepEqual(await holders(), { tx: ' * ', old: ' before:1 ' });
    assert.deepEqual(await store.client.hkeys(key('amounts')), ['tx', 'old']);
    assert.equal(await totals.total(scope, t0 + 2 + holdGraceMs), units(500) + 100n);
  });

  test('the pruning settles the holders left behind in every account and asset once the grace has passed, not before', async (t) => {
    const { totals, holders } = await redisTotals(t);
    const elsewhere = totalScope('5493001KJTIIGC8Y1R12', 'GB-FX-002', 'USD');
    await totals.reserve({ scope, id: 'died', holder: 'died:1', amount: units(300), limit: units(1000), now: t0 });
    await totals.reserve({ scope: elsewhere, id: 'died', holder: 'died:2', amount: units(300), limit: units(1000), now: t0 });
    await totals.reserve({ scope, id: 'young', holder: 'young:1', amount: units(300), limit: units(1000), now: t0 + 1 });
    assert.equal(await totals.prune(t0 + holdGraceMs - 1), 0);
    assert.equal(await totals.total(elsewhere, t0 + holdGraceMs), units(300), 'within the grace: kept');
    assert.equal(await totals.prune(t0 + holdGraceMs), 2);
    assert.deepEqual(await holders(), { young: ' young:1 ' });
    assert.equal(await totals.total(elsewhere, t0 + holdGraceMs), 0n);
    assert.equal(await totals.total(scope, t0 + holdGraceMs), units(300));
  });

  test('a Redis that does not answer refuses, never counts in memory', async (t) => {
    const port = await freePort();
    const store = new SharedStore({ url: `redis://127.0.0.1:${port}`, prefix: 'clearance-test:down:', timeoutMs: 100, log: createLogger('silent') });
    await store.connect();
    t.after(() => store.close());
    const totals = new RedisTotals(store, await auditLog(t));
    await assert.rejects(totals.reserve({ scope, id: 'r', holder: 'h', amount: units(1), limit: units(1000), now: t0 }), TotalsUnavailable);
    await assert.rejects(totals.total(scope, t0), TotalsUnavailable);
  });
});
