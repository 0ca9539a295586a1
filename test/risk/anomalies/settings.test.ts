import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { executeApply, planApply } from '../../../src/apply/index.ts';
import { defaultAnomalySettings } from '../../../src/risk/anomalies/settings.ts';
import { formatProblem } from '../../../src/validation.ts';
import { testContext, testDialects } from '../../helpers/storage.ts';

for (const dialect of testDialects()) {
  describe(`apply's anomalies section on ${dialect.name}`, () => {
    test('refuses every bad setting at its path, and writes nothing', async (t) => {
      const { ctx } = await testContext({ t, dialect });
      const { plan, problems } = await planApply(ctx, {
        anomalies: { window: 30, minimum_history: 0, baseline_windows: 1.5, audience_minimum: 'five', reactions: { token_rate: 'freeze', bursts: 'alert' }, factor: 3 },
      });
      assert.equal(plan, undefined);
      assert.deepEqual(problems.map(formatProblem).sort(), [
        'anomalies.audience_minimum: must be an integer',
        'anomalies.baseline_windows: must be an integer',
        'anomalies.factor: is not a recognised field',
        'anomalies.minimum_history: must be from 1 to 10000',
        'anomalies.reactions.bursts: is not a recognised field',
        'anomalies.reactions.token_rate: must be one of alert, step_up, suspend',
        'anomalies.window: must be from 60 to 3600',
      ]);
      assert.deepEqual(await ctx.risk.anomalySettings.get(), defaultAnomalySettings);
    });

    test('stores what a document names, keeps the rest, and reports an unchanged re-apply', async (t) => {
      const { ctx } = await testContext({ t, dialect });
      const apply = async (anomalies: unknown) => {
        const { plan, problems } = await planApply(ctx, { anomalies });
        assert.deepEqual(problems, []);
        return (await executeApply(ctx, plan!, { actor: 'test', via: 'cli' })).changes.map((c) => [c.kind, c.id, c.outcome]);
      };
      assert.deepEqual(await apply({ window: 600, reactions: { audience_spread: 'suspend' } }), [
        ['anomaly_setting', 'window', 'created'],
        ['anomaly_setting', 'reactions.audience_spread', 'created'],
      ]);
      assert.deepEqual(await ctx.risk.anomalySettings.get(), { ...defaultAnomalySettings, windowMs: 600_000, reactions: { token_rate: 'step_up', login_rate: 'step_up', audience_spread: 'suspend' } });
      assert.deepEqual(await apply({ window: 600, minimum_history: 24 }), [
        ['anomaly_setting', 'window', 'unchanged'],
        ['anomaly_setting', 'minimum_history', 'created'],
      ]);
      const settings = await ctx.risk.anomalySettings.get();
      assert.equal(settings.minimumHistory, 24);
      assert.equal(settings.reactions.audience_spread, 'suspend', 'kept');
    });
  });
}
