import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import type { StoredAuditEvent } from '../../src/audit/events.ts';
import { ManualClock } from '../../src/clock.ts';
import type { Context } from '../../src/context.ts';
import { raiseLapsesInFlight, settleMs } from '../../src/mandates/lapses.ts';
import { amendMandate, createMandate, revokeMandate } from '../../src/mandates/store.ts';
import { startSignalService } from '../../src/signals/service.ts';
import { testContext, testDialects } from '../helpers/storage.ts';
import { mandateEntry, monday0900London } from './fixture.ts';

// Issue 17 item 2 (docs/mandates.md "Lapses in flight"): a mandate that lapses between execution
// and settlement raises mandate.lapsed_in_flight for every txn that used it within the window.

const admin = { actor: 'compliance' };
const acceptance = { by: 'algo-desk-head-42', at: Date.parse('2026-04-30T12:00:00Z') };
const hour = 3600_000;

async function lapses(ctx: Context): Promise<StoredAuditEvent[]> {
  const rows = await ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', 'mandate.lapsed_in_flight').orderBy('seq').execute();
  return rows.map((r) => JSON.parse(r.event) as StoredAuditEvent);
}

/** A trade's event under a mandate version, at the clock's time (what token.issued or a decision writes). */
const trade = (ctx: Context, txn: string, mandate: { id: string; v: number }) => ctx.audit.record({ type: 'token.issued', txn, client: 'algo-7', mandate, details: { jti: `jti-${txn}` } });

for (const dialect of testDialects()) {
  describe(`mandate lapses in flight on ${dialect.name}`, () => {
    const setup = async (t: TestContext) => {
      const clock = new ManualClock(monday0900London);
      const { ctx } = await testContext({ t, dialect, clock, env: { CLEARANCE_MANDATE_IN_FLIGHT_WINDOW: String(24 * 3600) } });
      return { ctx, clock };
    };

    test('revoking a mandate raises one event per txn that used it within the window, once, with an alert', async (t) => {
      const { ctx, clock } = await setup(t);
      const m = await createMandate(ctx, { ...mandateEntry(), acceptance }, admin);
      const other = await createMandate(ctx, { ...mandateEntry({ id: 'another_mandate' }), acceptance }, admin);
      const ref = { id: m.id, v: 1 };
      await trade(ctx, 'settled-long-ago', ref);
      clock.advance(30 * hour);
      await trade(ctx, 'trade-a', ref);
      await trade(ctx, 'trade-b', ref);
      await trade(ctx, 'trade-b', ref);
      await trade(ctx, 'under-another', { id: other.id, v: 1 });
      clock.advance(hour);
      await revokeMandate(ctx, m.id, { reason: 'algorithm suspended' }, admin);

      assert.equal(await raiseLapsesInFlight(ctx), 0, 'not before the requests under way at the lapse have settled');
      clock.advance(settleMs);
      assert.equal(await raiseLapsesInFlight(ctx), 2);
      const raised = await lapses(ctx);
      assert.deepEqual(raised.map((e) => e.txn), ['trade-a', 'trade-b'], 'one per txn; outside the window, under another mandate: none');
      assert.deepEqual(raised[0]!.mandate, ref);
      assert.equal(raised[0]!.details!.lapse, 'revoked');
      const alerts = await ctx.storage.db.selectFrom('alerts').selectAll().where('type', '=', 'mandate.lapsed_in_flight').execute();
      assert.equal(alerts.length, 1);
      assert.deepEqual(JSON.parse(alerts[0]!.data).txns, ['trade-a', 'trade-b']);

      assert.equal(await raiseLapsesInFlight(ctx), 0, 'a rerun raises nothing twice');
      assert.equal((await lapses(ctx)).length, 2);
    });

    test('an amendment lapses the version it supersedes; an expiry is found by the periodic pass', async (t) => {
      const { ctx, clock } = await setup(t);
      const m = await createMandate(ctx, { ...mandateEntry(), acceptance }, admin);
      const expiring = await createMandate(ctx, { ...mandateEntry({ id: 'expiring-mandate', effective_to: new Date(clock.now() + 2 * hour).toISOString() }), acceptance }, admin);
      await trade(ctx, 'trade-v1', { id: m.id, v: 1 });
      await trade(ctx, 'trade-exp', { id: expiring.id, v: 1 });
      clock.advance(hour);
      await amendMandate(ctx, m.id, 1, mandateEntry({ scopes: ['order:create'] }).terms, { by: 'algo-desk-head-42', at: clock.now() }, admin);
      clock.advance(2 * hour);
      const service = startSignalService(ctx, { intervalMs: 3_600_000 });
      t.after(() => service.stop());
      await service.runOnce();
      const raised = await lapses(ctx);
      assert.deepEqual(raised.map((e) => [e.txn, e.details!.lapse, e.mandate]).sort(), [
        ['trade-exp', 'expired', { id: 'expiring-mandate', v: 1 }],
        ['trade-v1', 'superseded', { id: m.id, v: 1 }],
      ]);
    });

    if (dialect.name === 'postgres') {
      test('two nodes running the pass at once raise each lapse once', async (t) => {
        const { ctx, clock } = await setup(t);
        const m = await createMandate(ctx, { ...mandateEntry(), acceptance }, admin);
        await trade(ctx, 'trade-a', { id: m.id, v: 1 });
        clock.advance(hour);
        await revokeMandate(ctx, m.id, { reason: 'closed' }, admin);
        clock.advance(settleMs);
        const counts = await Promise.all([raiseLapsesInFlight(ctx), raiseLapsesInFlight(ctx), raiseLapsesInFlight(ctx)]);
        assert.deepEqual(counts.sort(), [0, 0, 1]);
        assert.equal((await lapses(ctx)).length, 1);
      });
    }
  });
}
