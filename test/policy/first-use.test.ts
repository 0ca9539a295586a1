import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { firstUseRetentionDays, knownUses, pruneFirstUses, recordUses, type Use } from '../../src/policy/first-use.ts';
import { testContext, testDialects } from '../helpers/storage.ts';

const fx: Use = { kind: 'instrument_class', value: 'fx' };
const rates: Use = { kind: 'instrument_class', value: 'rates' };
const account: Use = { kind: 'settlement_account', value: 'fx' };
const day = 24 * 3600 * 1000;

for (const dialect of testDialects()) {
  describe(`the first-use history on ${dialect.name}`, () => {
    test('records uses per person and kind, and tells which are known', async (t) => {
      const { ctx } = await testContext({ t, dialect });
      assert.deepEqual(await knownUses(ctx, 'u1', [fx, rates, account]), new Set());
      const flight = ctx.storage.flight();
      void recordUses(flight, ctx, 'u1', [fx, fx, account]);
      await flight.commit();
      const known = await knownUses(ctx, 'u1', [fx, rates, account]);
      assert.deepEqual([...known].sort(), ['instrument_class\nfx', 'settlement_account\nfx']);
      assert.deepEqual(await knownUses(ctx, 'u2', [fx]), new Set(), 'another person has not used it');
      // Recording again moves the last use, in a transaction too.
      await ctx.storage.db.transaction().execute((trx) => recordUses(trx, ctx, 'u1', [fx, rates]));
      const rows = await ctx.storage.db.selectFrom('first_uses').selectAll().where('user_id', '=', 'u1').orderBy('kind').orderBy('value').execute();
      assert.deepEqual(rows.map((r) => `${r.kind}:${r.value}`), ['instrument_class:fx', 'instrument_class:rates', 'settlement_account:fx']);
    });

    test(`keeps a use ${firstUseRetentionDays} days after its last one, then forgets it`, async (t) => {
      const { ctx, clock } = await testContext({ t, dialect });
      await ctx.storage.db.transaction().execute((trx) => recordUses(trx, ctx, 'u1', [fx]));
      await ctx.storage.db.transaction().execute((trx) => recordUses(trx, ctx, 'u2', [fx]));
      clock.advance((firstUseRetentionDays - 1) * day);
      await ctx.storage.db.transaction().execute((trx) => recordUses(trx, ctx, 'u2', [fx]));
      assert.equal(await pruneFirstUses(ctx, clock.now()), 0);
      clock.advance(2 * day);
      // Past its retention and not yet pruned: forgotten all the same (a fresh process: nothing remembered).
      const fresh = { ...ctx, storage: Object.create(ctx.storage) as typeof ctx.storage };
      assert.deepEqual(await knownUses(fresh, 'u1', [fx]), new Set());
      assert.equal(await pruneFirstUses(ctx, clock.now()), 1, 'u1’s use, last made over the retention ago');
      assert.deepEqual([...(await knownUses(fresh, 'u2', [fx]))], ['instrument_class\nfx'], 'u2 used it since');
    });
  });
}
