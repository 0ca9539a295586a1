import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ManualClock } from '../../src/clock.ts';
import type { Context } from '../../src/context.ts';
import { assessAdminAction } from '../../src/risk/intrusion.ts';
import { SightingStore } from '../../src/risk/sightings.ts';
import { testContext, testDialects } from '../helpers/storage.ts';
import { hit, saturdayAfternoonUtc, tuesdayAfternoonUtc, useRiskSettings } from './fixture.ts';

const dayMs = 86_400_000;

async function alerts(ctx: Context) {
  return (await ctx.storage.db.selectFrom('alerts').selectAll().where('type', '=', 'risk.admin_unusual').orderBy('created_at').execute()).map((row) => ({
    ...row,
    data: JSON.parse(row.data) as Record<string, unknown>,
  }));
}

async function unusualEvents(ctx: Context) {
  const rows = await ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', 'risk.admin_unusual').orderBy('seq').execute();
  return rows.map((row) => JSON.parse(row.event) as { actor: string; decision: { allow: boolean; reasons: string[] }; details: { action: string; risk: { score: number; level: string; signals: { signal: string }[] } } });
}

describe('the intrusion signals, one by one', () => {
  test('admin_off_hours reads the trading hours in UTC', async (t) => {
    const { ctx, clock } = await testContext({ t, clock: new ManualClock(tuesdayAfternoonUtc) });
    useRiskSettings(ctx);
    const action = { admin: 'cli:ops', action: 'apply' };
    assert.equal(hit(await assessAdminAction(ctx, action), 'admin_off_hours'), undefined);
    clock.set(tuesdayAfternoonUtc - 7 * 3600_000); // 07:00 UTC: the trading day has begun
    assert.equal(hit(await assessAdminAction(ctx, action), 'admin_off_hours'), undefined);
    clock.set(tuesdayAfternoonUtc - 7 * 3600_000 - 60_000); // 06:59 UTC
    assert.ok(hit(await assessAdminAction(ctx, action), 'admin_off_hours'));
    clock.set(tuesdayAfternoonUtc + 5 * 3600_000); // 19:00 UTC
    assert.deepEqual(hit(await assessAdminAction(ctx, action), 'admin_off_hours'), { signal: 'admin_off_hours', points: 20, detail: '19:00 UTC on ISO weekday 2' });
    clock.set(saturdayAfternoonUtc);
    assert.ok(hit(await assessAdminAction(ctx, action), 'admin_off_hours'));
  });

  test('quick_activation fires for a version activated within quick_activation_seconds of being stored, and only for an activation', async (t) => {
    const { ctx, clock } = await testContext({ t, clock: new ManualClock(tuesdayAfternoonUtc) });
    useRiskSettings(ctx);
    const stored = clock.now() - 5 * 60_000;
    assert.deepEqual(hit(await assessAdminAction(ctx, { admin: 'cli:ops', action: 'policy.activate v2', createdAt: stored }), 'quick_activation'), {
      signal: 'quick_activation',
      points: 30,
      detail: 'activated 300 s after it was stored',
    });
    assert.equal(hit(await assessAdminAction(ctx, { admin: 'cli:ops', action: 'policy.activate v1', createdAt: clock.now() - 15 * 60_000 }), 'quick_activation'), undefined);
    assert.equal(hit(await assessAdminAction(ctx, { admin: 'cli:ops', action: 'apply' }), 'quick_activation'), undefined);
  });
});

for (const dialect of testDialects()) {
  describe(`the intrusion signals on ${dialect.name}`, () => {
    test('admin_new_network fires for a network the administrator has not used within network_memory_days', async (t) => {
      const { ctx, clock } = await testContext({ t, dialect, clock: new ManualClock(tuesdayAfternoonUtc) });
      useRiskSettings(ctx);
      const action = (address: string) => ({ admin: 'admin-client', action: 'PUT /admin/users/:username', address });
      assert.equal(hit(await assessAdminAction(ctx, action('192.0.2.10')), 'admin_new_network')?.detail, 'network 192.0.2.0/24 never used by this administrator');
      assert.equal(hit(await assessAdminAction(ctx, action('192.0.2.99')), 'admin_new_network'), undefined);
      // Another administrator's networks are not this one's; a person's sign-in networks are another kind.
      assert.ok(hit(await assessAdminAction(ctx, { ...action('192.0.2.10'), admin: 'other-admin' }), 'admin_new_network'));
      clock.advance(31 * dayMs);
      assert.ok(hit(await assessAdminAction(ctx, action('192.0.2.10')), 'admin_new_network'));
      // The CLI has no address: nothing to compare.
      assert.equal(hit(await assessAdminAction(ctx, { admin: 'cli:ops', action: 'apply' }), 'admin_new_network'), undefined);
    });

    test('admin_burst counts one administrator’s changes within the window on every node, and forgets them after it', async (t) => {
      const { ctx, clock, database } = await testContext({ t, dialect, clock: new ManualClock(tuesdayAfternoonUtc) });
      useRiskSettings(ctx, { adminBurstCount: 4, adminBurstWindowSeconds: 60 });
      // A second node: the same database, its own caches.
      const other: Context = { ...ctx, risk: { ...ctx.risk, sightings: new SightingStore(database.storage.db, clock) } };
      const change = { admin: 'admin-client', action: 'PATCH /admin/clients/:id' };
      assert.equal(hit(await assessAdminAction(ctx, change), 'admin_burst'), undefined);
      assert.equal(hit(await assessAdminAction(other, change), 'admin_burst'), undefined);
      assert.equal(hit(await assessAdminAction(ctx, { ...change, admin: 'someone-else' }), 'admin_burst'), undefined);
      assert.equal(hit(await assessAdminAction(other, change), 'admin_burst'), undefined);
      assert.deepEqual(hit(await assessAdminAction(ctx, change), 'admin_burst'), { signal: 'admin_burst', points: 30, detail: '4 changes within 60 s' });
      clock.advance(61_000);
      assert.equal(hit(await assessAdminAction(other, change), 'admin_burst'), undefined);
    });

    test('an unusual admin action (medium level or above) is audited as risk.admin_unusual and alerted, naming the action, the administrator and the signals; a usual one is not', async (t) => {
      const { ctx, clock } = await testContext({ t, dialect, clock: new ManualClock(tuesdayAfternoonUtc) });
      useRiskSettings(ctx);
      const change = { admin: 'admin-client', clientId: 'admin-client', action: 'PUT /admin/users/:username', address: '192.0.2.10', requestId: 'req-1' };
      // A new network alone (25 points) is low: nothing raised.
      const first = await assessAdminAction(ctx, change);
      assert.equal(first.level, 'low');
      assert.deepEqual(await alerts(ctx), []);
      // From a new network, off hours: 45 points, medium.
      clock.set(saturdayAfternoonUtc);
      const unusual = await assessAdminAction(ctx, { ...change, address: '203.0.113.5', requestId: 'req-2' });
      assert.deepEqual(
        unusual.signals.map((s) => s.signal),
        ['admin_new_network', 'admin_off_hours'],
      );
      assert.equal(unusual.level, 'medium');
      const [alert] = await alerts(ctx);
      assert.deepEqual(alert!.data, {
        action: 'PUT /admin/users/:username',
        admin: 'admin-client',
        score: 45,
        level: 'medium',
        signals: ['admin_new_network', 'admin_off_hours'],
        source_address: '203.0.113.5',
        client: 'admin-client',
      });
      const [event] = await unusualEvents(ctx);
      assert.equal(event!.actor, 'admin-client');
      assert.deepEqual(event!.decision, { allow: true, reasons: ['admin_new_network', 'admin_off_hours'] });
      assert.equal(event!.details.action, 'PUT /admin/users/:username');
      assert.equal(event!.details.risk.score, 45);
      assert.equal(event!.details.risk.level, 'medium');
    });

    test('a disabled engine assesses nothing and remembers nothing', async (t) => {
      const { ctx } = await testContext({ t, dialect, clock: new ManualClock(saturdayAfternoonUtc) });
      useRiskSettings(ctx, { enabled: false });
      const quiet = await assessAdminAction(ctx, { admin: 'admin-client', action: 'apply', address: '192.0.2.10', createdAt: saturdayAfternoonUtc });
      assert.equal(quiet.score, 0);
      assert.deepEqual(await alerts(ctx), []);
      assert.equal((await ctx.storage.db.selectFrom('risk_admin_actions').selectAll().execute()).length, 0);
    });
  });
}
