import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { stringify } from 'yaml';
import { applyCommand } from '../../src/cli/commands/apply.ts';
import { policyCommand } from '../../src/cli/commands/policy.ts';
import type { Output } from '../../src/cli/output.ts';
import { ManualClock } from '../../src/clock.ts';
import type { Context } from '../../src/context.ts';
import { examplePoliciesDir, examplePolicyText } from '../policy/fixture.ts';
import { testContext, testDialects } from '../helpers/storage.ts';
import { tuesdayAfternoonUtc, useRiskSettings } from '../risk/fixture.ts';

// Intrusion signals on the CLI (issue 16 item 5): `clearance policy activate` soon after the version
// was stored (quick_activation), and an apply that stores and activates a version at once, are
// alerted as risk.admin_unusual, naming the action and the OS user; the activation goes ahead.

const quiet: Output = { out: () => undefined, err: () => undefined };
const admin = `cli:${userInfo().username}`;

async function unusual(ctx: Context) {
  const rows = await ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', 'risk.admin_unusual').orderBy('seq').execute();
  return rows.map((row) => JSON.parse(row.event) as { actor: string; details: { action: string; risk: { signals: { signal: string; detail?: string }[] } } });
}

const policy = (version: string, target: string, extra: Record<string, string> = {}) => ({ action: 'add', target, version, changeRef: `CHG-${version}`, author: 'alice', ...extra });

for (const dialect of testDialects()) {
  describe(`intrusion signals on the CLI on ${dialect.name}`, () => {
    test('a policy set activated within quick_activation_seconds of being stored is activated and alerted; one reviewed longer is not', async (t) => {
      const { ctx, clock } = await testContext({ t, dialect, clock: new ManualClock(tuesdayAfternoonUtc) });
      useRiskSettings(ctx);
      assert.equal(await policyCommand(ctx, policy('2026-06.1', examplePoliciesDir), quiet), 0);
      clock.advance(5 * 60_000);
      assert.equal(await policyCommand(ctx, { action: 'activate', target: '2026-06.1', approver: 'bob' }, quiet), 0);
      assert.equal((await ctx.policies.list()).find((p) => p.active)?.version, '2026-06.1', 'alerted, not refused');
      const [event] = await unusual(ctx);
      assert.equal(event!.actor, admin);
      assert.equal(event!.details.action, 'policy.activate 2026-06.1');
      assert.deepEqual(event!.details.risk.signals, [{ signal: 'quick_activation', points: 30, detail: 'activated 300 s after it was stored' }]);
      const [alert] = await ctx.storage.db.selectFrom('alerts').selectAll().where('type', '=', 'risk.admin_unusual').execute();
      assert.equal(JSON.parse(alert!.data).admin, admin);

      assert.equal(await policyCommand(ctx, policy('2026-06.2', examplePoliciesDir), quiet), 0);
      clock.advance(16 * 60_000);
      assert.equal(await policyCommand(ctx, { action: 'activate', target: '2026-06.2', approver: 'bob' }, quiet), 0);
      assert.equal((await unusual(ctx)).length, 1, 'reviewed for 16 minutes: nothing raised');
    });

    test('an apply that stores and activates a policy set at once is a quick activation', async (t) => {
      const { ctx } = await testContext({ t, dialect, clock: new ManualClock(tuesdayAfternoonUtc) });
      useRiskSettings(ctx);
      const dir = mkdtempSync(join(tmpdir(), 'clearance-intrusion-'));
      t.after(() => rmSync(dir, { recursive: true, force: true }));
      const file = join(dir, 'policies.yaml');
      writeFileSync(file, stringify({ policies: [{ version: '2026-06.3', text: examplePolicyText(), change_ref: 'CHG-3', author: 'alice', approver: 'bob', active: true }] }));
      assert.equal(await applyCommand(ctx, file, { plan: false, dryRun: false, prune: false, force: false }, quiet), 0);
      const [event] = await unusual(ctx);
      assert.equal(event!.details.action, 'apply (policy.activate 2026-06.3)');
      assert.deepEqual(
        event!.details.risk.signals.map((s) => s.signal),
        ['quick_activation'],
      );
      // Applying the same document again activates nothing: an ordinary apply.
      assert.equal(await applyCommand(ctx, file, { plan: false, dryRun: false, prune: false, force: false }, quiet), 0);
      assert.equal((await unusual(ctx)).length, 1);
    });
  });
}
