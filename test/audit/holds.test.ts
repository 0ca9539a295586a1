import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { exportBundle, verifyBundle } from '../../src/audit/bundle.ts';
import { activeHolds, HoldError, placeHold, readHoldRequest } from '../../src/audit/holds.ts';
import { parseRetention, planPrune, prune } from '../../src/audit/retention.ts';
import { testDialects } from '../helpers/storage.ts';
import { auditFixture, origin } from './helpers.ts';

// Issue 17 item 5 (docs/audit.md "Legal hold"): pruning never removes an event a legal hold covers.

const day = 86_400_000;
const policy = parseRetention('token.issued=30d,policy.denied=30d');

test('a hold covers exactly one of a txn, a subject, a client or a time range, under a matter reference', () => {
  assert.deepEqual(readHoldRequest({ txn: 'trade-1', matterRef: 'SEC-2026-114' }), { kind: 'txn', value: 'trade-1', matterRef: 'SEC-2026-114' });
  assert.deepEqual(readHoldRequest({ from: 1, to: 2, matterRef: 'M' }), { kind: 'range', from: 1, to: 2, matterRef: 'M' });
  for (const [request, message] of [
    [{ txn: 'trade-1' }, /matter reference/],
    [{ txn: 'trade-1', matterRef: '  ' }, /matter reference/],
    [{ matterRef: 'M' }, /exactly one/],
    [{ txn: 'trade-1', client: 'c', matterRef: 'M' }, /exactly one/],
    [{ from: 5, to: 5, matterRef: 'M' }, /inverted or empty/],
    [{ from: 9, to: 5, matterRef: 'M' }, /inverted or empty/],
    [{ from: 9, matterRef: 'M' }, /both ends/],
    [{ txn: 'has space', matterRef: 'M' }, /txn must be/],
  ] as const) {
    assert.throws(() => readHoldRequest(request), (e: unknown) => e instanceof HoldError && message.test(e.message), JSON.stringify(request));
  }
});

for (const dialect of testDialects()) {
  describe(`legal holds on ${dialect.name}`, () => {
    test('a prune stops before the first event a hold covers, names the hold, and what remains verifies', async (t) => {
      const f = await auditFixture(dialect, t);
      await f.fill(600);
      f.clock.advance(100 * day);
      await f.fill(600);
      const key = await f.keys.signingKey(origin);
      assert.equal((await planPrune(f.db, policy, f.clock.now())).pruneBefore, 512, 'without a hold');

      // sampleEvent: txn-100 is events 400..403.
      const hold = await placeHold({ audit: f.recorder, clock: f.clock }, { txn: 'txn-100', matterRef: 'SEC-2026-114' }, 'compliance@firm');
      await f.sealer.sealAll();
      const plan = await planPrune(f.db, policy, f.clock.now());
      assert.deepEqual(plan.held.map((h) => [h.hold.id, h.leaf]), [[hold.id, 400]]);
      assert.equal(plan.pruneBefore, 256, 'the tile before the held event');

      const result = await prune(f.db, policy, key, f.clock.now());
      assert.equal(result.events, 256);
      const held = await f.db.selectFrom('audit_events').select('seq').where('txn', '=', 'txn-100').execute();
      assert.equal(held.length, 5, "every held event is kept: the trade's four and the hold's own, filed under the trade");
      const report = await f.verify();
      assert.equal(report.ok, true, report.problem?.message);
      const { text } = await exportBundle(f.db, { query: { txn: 'txn-100' }, key, jwksInForce: async () => ({ keys: [] }), now: f.clock.now() });
      assert.equal(verifyBundle(text).ok, true);

      const [placed] = await f.db.selectFrom('audit_events').select('event').where('type', '=', 'audit.hold_placed').execute();
      assert.equal(JSON.parse(placed!.event).details.matter_ref, 'SEC-2026-114');
      assert.deepEqual((await activeHolds(f.db)).map((h) => h.id), [hold.id]);
    });

    test('a time-range hold over the oldest events keeps the whole log; a hold on events already newer than retention changes nothing', async (t) => {
      const f = await auditFixture(dialect, t);
      const start = f.clock.now();
      await f.fill(600);
      f.clock.advance(100 * day);
      await f.fill(600);
      await placeHold({ audit: f.recorder, clock: f.clock }, { client: 'client-3', matterRef: 'newer' }, 'compliance@firm');
      await placeHold({ audit: f.recorder, clock: f.clock }, { from: f.clock.now() - day, to: f.clock.now() + day, matterRef: 'recent' }, 'compliance@firm');
      await f.sealer.sealAll();
      // client-3's first event is leaf 3: it stops the cut at 0. The recent range is above the cut.
      const plan = await planPrune(f.db, policy, f.clock.now());
      assert.equal(plan.pruneBefore, 0);
      assert.deepEqual(plan.held.map((h) => h.hold.matterRef), ['newer']);

      const g = await auditFixture(dialect, t);
      await g.fill(600);
      g.clock.advance(100 * day);
      await g.fill(600);
      await placeHold({ audit: g.recorder, clock: g.clock }, { from: start, to: start + 1, matterRef: 'first-moment' }, 'compliance@firm');
      await g.sealer.sealAll();
      const ranged = await planPrune(g.db, policy, g.clock.now());
      assert.equal(ranged.pruneBefore, 0, 'the range covers the first events');
      assert.deepEqual(ranged.held.map((h) => [h.hold.matterRef, h.leaf]), [['first-moment', 0]]);
    });
  });
}
