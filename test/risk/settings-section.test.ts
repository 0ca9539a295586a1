/**
 * Apply's `risk` section (src/risk/settings-section.ts): validated with every problem at its path,
 * stored one row per setting, read by every node through a generation-checked cache.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { executeApply, planApply } from '../../src/apply/index.ts';
import { assessRisk } from '../../src/risk/engine.ts';
import { defaultRiskSettings } from '../../src/risk/settings.ts';
import { StoredRiskSettings } from '../../src/risk/settings-section.ts';
import { formatProblem } from '../../src/validation.ts';
import { testContext, testDialects } from '../helpers/storage.ts';

for (const dialect of testDialects()) {
  describe(`apply's risk section on ${dialect.name}`, () => {
    test('stores each setting it names, keeps the others, and every node reads them after the change', async (t) => {
      const { ctx, clock, database } = await testContext({ t, dialect });
      const otherNode = new StoredRiskSettings(database.connect().db, clock);
      assert.deepEqual(await otherNode.get(), defaultRiskSettings);

      const document = {
        risk: {
          weights: { new_network: 60, off_hours: 0 },
          levels: { high: 70 },
          outcomes: { step_up: 40, deny: 55 },
          network_memory_days: 7,
          concurrent_window: 120,
          trading_hours: { start: '08:30', end: '17:00', weekdays: [5, 1, 2, 3, 4] },
        },
      };
      const { plan, problems } = await planApply(ctx, document);
      assert.deepEqual(problems, []);
      const result = await executeApply(ctx, plan!, { actor: 'test', via: 'cli' });
      assert.deepEqual(
        result.changes.filter((c) => c.kind === 'risk_setting').map((c) => [c.id, c.outcome]),
        [
          ['weights.new_network', 'created'],
          ['weights.off_hours', 'created'],
          ['levels.high', 'created'],
          ['outcomes.step_up', 'created'],
          ['outcomes.deny', 'created'],
          ['network_memory_days', 'created'],
          ['concurrent_window', 'created'],
          ['trading_hours', 'created'],
        ],
      );
      const expected = {
        ...defaultRiskSettings,
        weights: { ...defaultRiskSettings.weights, new_network: 60, off_hours: 0 },
        levels: { medium: 30, high: 70 },
        outcomes: { step_up: 40, deny: 55 },
        networkMemoryDays: 7,
        concurrentWindowSeconds: 120,
        tradingHours: { start: 8 * 60 + 30, end: 17 * 60, weekdays: [1, 2, 3, 4, 5] },
      };
      // This process reads them at once (the apply invalidated its cache)...
      assert.deepEqual(await ctx.risk.settings.get(), expected);
      // ...another within a second (it checks the generation bumped by the apply).
      assert.deepEqual(await otherNode.get(), defaultRiskSettings, 'cached until its next check');
      clock.advance(1000);
      assert.deepEqual(await otherNode.get(), expected);

      // The scores follow: a signal now worth 60 steps up and denies nothing.
      const scored = await assessRisk(ctx, { moment: 'issuance', principal: { type: 'Client', id: 'svc' } }, [{ name: 'new_network', moments: ['issuance'], evaluate: () => ({}) }]);
      assert.deepEqual(scored, { score: 60, level: 'medium', outcome: 'deny', signals: [{ signal: 'new_network', points: 60 }] });

      const again = await executeApply(ctx, (await planApply(ctx, { risk: { weights: { new_network: 60 }, enabled: false } })).plan!, { actor: 'test', via: 'cli' });
      assert.deepEqual(again.changes.map((c) => [c.id, c.outcome]), [['enabled', 'created'], ['weights.new_network', 'unchanged']]);
      assert.deepEqual(await assessRisk(ctx, { moment: 'issuance', principal: { type: 'Client', id: 'svc' } }, [{ name: 'new_network', moments: ['issuance'], evaluate: () => ({}) }]), { score: 0, level: 'low', outcome: 'allow', signals: [] }, 'switched off');
    });

    test('refuses a malformed section with every problem at its path, and writes nothing', async (t) => {
      const { ctx } = await testContext({ t, dialect });
      const { plan, problems } = await planApply(ctx, {
        risk: {
          enabled: 'yes',
          weights: { new_network: 101, telepathy: 5, off_hours: 1.5 },
          levels: { medium: 0 },
          outcomes: { deny: 102 },
          failure_window: 10,
          exchange_burst_count: 1,
          trading_hours: { start: '7:00', end: '25:00', weekdays: [1, 1, 8] },
          colour: 'red',
        },
      });
      assert.equal(plan, undefined);
      assert.deepEqual(problems.map(formatProblem).sort(), [
        'risk.colour: is not a recognised field',
        'risk.enabled: must be true or false',
        'risk.exchange_burst_count: must be from 2 to 10000',
        'risk.failure_window: must be from 60 to 86400',
        'risk.levels.medium: must be from 1 to 100',
        'risk.outcomes.deny: must be from 1 to 101',
        'risk.trading_hours.end: must be a time HH:MM (00:00 to 24:00)',
        'risk.trading_hours.start: must be a time HH:MM (00:00 to 24:00)',
        'risk.trading_hours.weekdays[1]: is listed twice',
        'risk.trading_hours.weekdays[2]: must be from 1 to 7',
        'risk.weights.new_network: must be from 0 to 100',
        'risk.weights.off_hours: must be an integer',
        'risk.weights.telepathy: is not a recognised field',
      ]);
      assert.equal((await ctx.storage.db.selectFrom('risk_settings').selectAll().execute()).length, 0);
    });

    test('checks the levels and outcomes as they will be in force, the stored ones included', async (t) => {
      const { ctx } = await testContext({ t, dialect });
      const problems = async (risk: Record<string, unknown>) => (await planApply(ctx, { risk })).problems.map(formatProblem);
      assert.deepEqual(await problems({ levels: { medium: 60 } }), ['risk.levels: medium (60) must be below high (60)']);
      assert.deepEqual(await problems({ outcomes: { step_up: 90 } }), ['risk.outcomes: step_up (90) must not be above deny (80)']);
      assert.deepEqual(await problems({ trading_hours: { start: '09:00', end: '09:00', weekdays: [1] } }), ['risk.trading_hours.end: must differ from start']);
      await executeApply(ctx, (await planApply(ctx, { risk: { outcomes: { deny: 101, step_up: 95 } } })).plan!, { actor: 'test', via: 'cli' });
      assert.deepEqual(await problems({ outcomes: { deny: 90 } }), ['risk.outcomes: step_up (95) must not be above deny (90)'], 'the stored step_up counts');
      assert.deepEqual(await problems({ trading_hours: { start: '22:00', end: '06:00', weekdays: [7, 1, 2, 3, 4] } }), [], 'hours past midnight');
    });

    test('sets the intrusion signals’ burst and quick-activation thresholds, within their ranges', async (t) => {
      const { ctx } = await testContext({ t, dialect });
      const problems = async (risk: Record<string, unknown>) => (await planApply(ctx, { risk })).problems.map(formatProblem);
      assert.deepEqual(await problems({ admin_burst_count: 1, admin_burst_window: 100_000, quick_activation: 10 }), [
        'risk.admin_burst_count: must be from 2 to 100000',
        'risk.admin_burst_window: must be from 10 to 86400',
        'risk.quick_activation: must be from 60 to 2592000',
      ]);
      await executeApply(ctx, (await planApply(ctx, { risk: { admin_burst_count: 5, admin_burst_window: 60, quick_activation: 3600 } })).plan!, { actor: 'test', via: 'cli' });
      const settings = await ctx.risk.settings.get();
      assert.deepEqual([settings.adminBurstCount, settings.adminBurstWindowSeconds, settings.quickActivationSeconds], [5, 60, 3600]);
    });
  });
}
