import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { createLogger } from '../../src/log.ts';
import { SharedStore } from '../../src/risk/limits/redis.ts';
import { migrate } from '../../src/storage/database.ts';
import { formatAmount, maxLimit, parseAmount } from '../../src/transfers/amounts.ts';
import { DatabaseTotals, pruneTransferLedger } from '../../src/transfers/totals-database.ts';
import { destinationUseRetentionDays, pruneDestinationUses, recordUse, usedBefore } from '../../src/transfers/destination-uses.ts';
import { RedisTotals } from '../../src/transfers/totals-redis.ts';
import { totalScope, totalWindowMs, TotalsUnavailable, type TransferTotals } from '../../src/transfers/totals.ts';
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
    assert.deepEqual(await a.reserve({ scope, id: 'r1', amount: units(600), limit: units(1000), now: t0 }), { reserved: true, created: true, total: 0n });
    assert.deepEqual(await a.reserve({ scope, id: 'r2', amount: units(400), limit: units(1000), now: t0 + 1 }), { reserved: true, created: true, total: units(600) }, 'exactly at the limit passes');
    assert.deepEqual(await a.reserve({ scope, id: 'r3', amount: units('0.01'), limit: units(1000), now: t0 + 2 }), { reserved: false, created: false, total: units(1000) });
    assert.equal(await a.total(scope, t0 + 3), units(1000));
  });

  test('counts one id once and takes a released reservation back', async (t) => {
    const { a } = await make(t);
    await a.reserve({ scope, id: 'same', amount: units(700), limit: units(1000), now: t0 });
    assert.deepEqual(await a.reserve({ scope, id: 'same', amount: units(700), limit: units(1000), now: t0 + 5 }), { reserved: true, created: false, total: 0n }, 'the same transfer again is not counted twice, and not created by this call');
    assert.equal(await a.total(scope, t0 + 6), units(700));
    await a.release(scope, 'same');
    assert.equal(await a.total(scope, t0 + 7), 0n);
    assert.equal((await a.reserve({ scope, id: 'next', amount: units(1000), limit: units(1000), now: t0 + 8 })).reserved, true);
  });

  test('slides: what was reserved 24 hours ago leaves the total', async (t) => {
    const { a } = await make(t);
    await a.reserve({ scope, id: 'morning', amount: units(900), limit: units(1000), now: t0 });
    await a.reserve({ scope, id: 'noon', amount: units(100), limit: units(1000), now: t0 + 3 * 3600_000 });
    assert.equal((await a.reserve({ scope, id: 'evening', amount: units(500), limit: units(1000), now: t0 + totalWindowMs - 1 })).reserved, false);
    assert.deepEqual(await a.reserve({ scope, id: 'next-day', amount: units(500), limit: units(1000), now: t0 + totalWindowMs }), { reserved: true, created: true, total: units(100) });
    assert.equal(await a.total(scope, t0 + totalWindowMs), units(600));
  });

  test('answers created only to the call that added the reservation, on either node', async (t) => {
    const { a, b } = await make(t);
    assert.equal((await a.reserve({ scope, id: 'tx', amount: units(900), limit: units(1000), now: t0 })).created, true);
    const again = await b.reserve({ scope, id: 'tx', amount: units(900), limit: units(1000), now: t0 + 1 });
    assert.deepEqual(again, { reserved: true, created: false, total: 0n }, 'found counted: the earlier call\'s, not this one\'s to release');
    assert.equal(await a.total(scope, t0 + 2), units(900));
  });

  test('shares one total between the spellings of one ERC-20 token', async (t) => {
    const { a } = await make(t);
    const usdc = 'eip155:1/erc20:0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48';
    assert.equal(totalScope('5493001KJTIIGC8Y1R12', 'CRY-001', usdc), totalScope('5493001KJTIIGC8Y1R12', 'CRY-001', usdc.toLowerCase()));
    await a.reserve({ scope: totalScope('5493001KJTIIGC8Y1R12', 'CRY-001', usdc), id: 'x', amount: units(600), limit: units(1000), now: t0 });
    const upper = `eip155:1/erc20:0x${usdc.slice(-40).toUpperCase()}`;
    assert.deepEqual(await a.reserve({ scope: totalScope('5493001KJTIIGC8Y1R12', 'CRY-001', upper), id: 'y', amount: units(600), limit: units(1000), now: t0 + 1 }), { reserved: false, created: false, total: units(600) });
  });

  test('keeps each account and asset apart', async (t) => {
    const { a } = await make(t);
    await a.reserve({ scope, id: 'x', amount: units(1000), limit: units(1000), now: t0 });
    assert.equal((await a.reserve({ scope: totalScope('5493001KJTIIGC8Y1R12', 'GB-FX-001', 'EUR'), id: 'x', amount: units(1000), limit: units(1000), now: t0 })).reserved, true);
    assert.equal((await a.reserve({ scope: totalScope('5493001KJTIIGC8Y1R12', 'GB-FX-002', 'USD'), id: 'x', amount: units(1000), limit: units(1000), now: t0 })).reserved, true);
  });

  test('two nodes reserving at once never pass the limit together', async (t) => {
    const { a, b } = await make(t);
    // 40 reservations of 100 against a limit of 1,000, half from each node, all at once.
    const attempts = Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? a : b).reserve({ scope, id: `c${i}`, amount: units(100), limit: units(1000), now: t0 + i }));
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
      await totals.reserve({ scope, id: 'old', amount: units(1), limit: units(10), now: t0 });
      await totals.reserve({ scope: totalScope('5493001KJTIIGC8Y1R12', 'OTHER', 'USD'), id: 'new', amount: units(1), limit: units(10), now: t0 + totalWindowMs - 1 });
      assert.equal(await pruneTransferLedger(db, t0 + totalWindowMs), 1);
      assert.equal(await recordUse(db, 'TRE-001', 'iban:X', t0), true, 'a first use');
      assert.equal(await recordUse(db, 'TRE-001', 'iban:X', t0 + 1), false, 'used before');
      const retention = destinationUseRetentionDays * 86_400_000;
      assert.equal(await usedBefore(db, 'TRE-001', 'iban:X', t0 + retention), true);
      assert.equal(await pruneDestinationUses(db, t0 + 1 + retention), 0);
      assert.equal(await pruneDestinationUses(db, t0 + 2 + retention), 1);
      assert.equal(await usedBefore(db, 'TRE-001', 'iban:X', t0 + 2 + retention), false);
    });
  });
}

describe('transfer totals in Redis', { skip: redisSkip }, () => {
  contract(async (t) => {
    const store = await testSharedStore(t);
    // A second connection under the same prefix: another node sharing the store.
    const other = new SharedStore({ url: store.client.options.host ? `redis://${store.client.options.host}:${store.client.options.port}` : 'redis://127.0.0.1:6379', prefix: store.prefix, timeoutMs: 1000, log: createLogger('silent') });
    await other.connect();
    t.after(() => other.close());
    return { a: new RedisTotals(store), b: new RedisTotals(other) };
  });

  test('a Redis that does not answer refuses, never counts in memory', async (t) => {
    const port = await freePort();
    const store = new SharedStore({ url: `redis://127.0.0.1:${port}`, prefix: 'clearance-test:down:', timeoutMs: 100, log: createLogger('silent') });
    await store.connect();
    t.after(() => store.close());
    const totals = new RedisTotals(store);
    await assert.rejects(totals.reserve({ scope, id: 'r', amount: units(1), limit: units(1000), now: t0 }), TotalsUnavailable);
    await assert.rejects(totals.total(scope, t0), TotalsUnavailable);
  });
});
