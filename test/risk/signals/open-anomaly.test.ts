import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Context } from '../../../src/context.ts';
import { resolveAnomaly } from '../../../src/risk/anomalies/store.ts';
import { assessRisk } from '../../../src/risk/engine.ts';
import { openAnomaly } from '../../../src/risk/signals/open-anomaly.ts';
import { testDialects } from '../../helpers/storage.ts';
import { anomalyNodes, closeWindow, tokens } from '../anomalies/fixture.ts';

for (const dialect of testDialects()) {
  describe(`the open_anomaly signal on ${dialect.name}`, () => {
    test("makes the principal's next token step up on every node while its step-up anomaly is open, and stops once it is resolved", async (t) => {
      const f = await anomalyNodes(t, dialect, 2);
      const [a, b] = f.nodes as [Context, Context];
      for (let w = 0; w < 12; w++) {
        tokens(a, 'oms', 3);
        await closeWindow(f);
      }
      const facts = { moment: 'issuance' as const, principal: { type: 'Client' as const, id: 'oms' }, clientId: 'oms' };
      assert.equal((await assessRisk(b, facts, [openAnomaly])).outcome, 'allow');
      tokens(a, 'oms', 30);
      await closeWindow(f, a);
      // Node b rereads the reactions' generation at most once a second.
      f.clock.advance(1000);
      const assessed = await assessRisk(b, facts, [openAnomaly]);
      assert.deepEqual(assessed.signals, [{ signal: 'open_anomaly', points: 50, detail: 'an open anomaly asks for step-up' }]);
      assert.equal(assessed.outcome, 'step_up');
      assert.equal((await assessRisk(b, { moment: 'issuance', principal: { type: 'User', id: 'alice' }, clientId: 'oms' }, [openAnomaly])).signals[0]?.detail, 'the client has an open anomaly');
      assert.equal((await assessRisk(b, { ...facts, principal: { type: 'Client', id: 'other' }, clientId: 'other' }, [openAnomaly])).outcome, 'allow');

      const [anomaly] = await a.storage.db.selectFrom('risk_anomalies').select('id').execute();
      assert.ok(await resolveAnomaly(a, anomaly!.id, { actor: 'admin-ops', client: 'admin-ops' }));
      f.clock.advance(1000);
      assert.equal((await assessRisk(b, facts, [openAnomaly])).outcome, 'allow');
    });

    test('stays quiet for an anomaly whose reaction is alert only', async (t) => {
      const f = await anomalyNodes(t, dialect);
      for (let w = 0; w < 12; w++) {
        tokens(f.ctx, 'scanner', 1);
        await closeWindow(f);
      }
      tokens(f.ctx, 'scanner', 10, Array.from({ length: 10 }, (_, i) => `https://api-${i}.example.com`));
      await closeWindow(f);
      assert.equal((await f.ctx.storage.db.selectFrom('risk_anomalies').select('reaction').executeTakeFirstOrThrow()).reaction, 'alert');
      assert.deepEqual((await assessRisk(f.ctx, { moment: 'issuance', principal: { type: 'Client', id: 'scanner' }, clientId: 'scanner' }, [openAnomaly])).signals, []);
    });
  });
}
