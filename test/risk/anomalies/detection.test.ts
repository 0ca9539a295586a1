import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { planApply, executeApply } from '../../../src/apply/index.ts';
import type { StoredAuditEvent } from '../../../src/audit/events.ts';
import type { Context } from '../../../src/context.ts';
import { evaluateClosedWindows } from '../../../src/risk/anomalies/evaluate.ts';
import { formatProblem } from '../../../src/validation.ts';
import { testDialects } from '../../helpers/storage.ts';
import { anomalyNodes, client, closeWindow, logins, ordersApi, tokens, user, type Nodes } from './fixture.ts';

// Detection targets (AMENDMENTS "Risk, limits, KYC/AML"): a burst of 10× a principal's baseline
// raises an anomaly within one evaluation window; steady traffic at baseline raises none.

async function anomalies(ctx: Context) {
  return ctx.storage.db.selectFrom('risk_anomalies').selectAll().orderBy('created_at').execute();
}

async function events(ctx: Context, type: string): Promise<StoredAuditEvent[]> {
  const rows = await ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', type).orderBy('seq').execute();
  return rows.map((r) => JSON.parse(r.event) as StoredAuditEvent);
}

async function apply(f: Nodes, document: Record<string, unknown>) {
  const { plan, problems } = await planApply(f.ctx, document);
  if (!plan) assert.fail(problems.map(formatProblem).join('\n'));
  return executeApply(f.ctx, plan, { actor: 'test', via: 'cli' });
}

/** `windows` windows of `perWindow` tokens of `id` on the first node. */
async function history(f: Nodes, id: string, windows: number, perWindow: number) {
  for (let i = 0; i < windows; i++) {
    tokens(f.ctx, id, perWindow);
    await closeWindow(f);
  }
}

for (const dialect of testDialects()) {
  describe(`baselines and anomalies on ${dialect.name}`, () => {
    test('steady traffic at its baseline through a simulated day raises no anomaly, and a quiet night does not make the morning a burst', async (t) => {
      const f = await anomalyNodes(t, dialect, 2);
      const [a, b] = f.nodes as [Context, Context];
      let evaluated = 0;
      for (let w = 0; w < 288; w++) {
        // A service steady around 4 tokens a window, served by both nodes; a trader signing in during
        // the trading day only (08:00–16:00), to two desks' APIs.
        tokens(a, 'oms', 2 + (w % 2));
        tokens(b, 'oms', 2 - (w % 3 === 0 ? 1 : 0));
        const hour = Math.floor((w * 5) / 60);
        if (hour >= 8 && hour < 16) {
          logins(w % 2 === 0 ? a : b, 'alice', 1 + (w % 4 === 0 ? 1 : 0));
          a.risk.activity.countToken(user('alice'), 'trading-ui', w % 2 === 0 ? ordersApi : 'https://clearing.example.com');
        }
        evaluated += (await closeWindow(f, w % 2 === 0 ? a : b)).length;
      }
      assert.equal(evaluated, 288, 'each window was evaluated once');
      assert.deepEqual(await anomalies(f.ctx), []);
      assert.deepEqual(await events(f.ctx, 'risk.anomaly'), []);
      const baselines = await f.ctx.storage.db.selectFrom('risk_baselines').selectAll().where('principal_id', '=', 'oms').execute();
      const rate = baselines.find((r) => r.metric === 'token_rate')!;
      assert.equal(Number(rate.windows), 288);
      assert.ok(Number(rate.ewma) > 3 && Number(rate.ewma) < 4.5, `the baseline is the service's rate: ${rate.ewma}`);
      const alice = await f.ctx.storage.db.selectFrom('risk_baselines').selectAll().where('principal_id', '=', 'alice').where('metric', '=', 'login_rate').executeTakeFirstOrThrow();
      assert.equal(Number(alice.windows), 96, 'only the trading day counts: the night left the baseline as it was');
    });

    test('a burst of ten times the baseline raises an anomaly for the window it happened in, with its audit event and alert', async (t) => {
      const f = await anomalyNodes(t, dialect);
      await history(f, 'oms', 24, 3);
      tokens(f.ctx, 'oms', 30);
      const [window] = await closeWindow(f);
      assert.equal(window!.raised.length, 1, 'found when the burst window itself closed');
      const [anomaly] = await anomalies(f.ctx);
      assert.equal(anomaly!.class, 'token_rate');
      assert.equal(anomaly!.principal_type, 'Client');
      assert.equal(anomaly!.principal_id, 'oms');
      assert.equal(Number(anomaly!.observed), 30);
      assert.equal(Number(anomaly!.baseline), 3);
      assert.equal(anomaly!.status, 'open');
      assert.equal(anomaly!.reaction, 'step_up', 'the default reaction of token_rate');
      assert.equal(Number(anomaly!.window_start), window!.windowStart);
      const [event] = await events(f.ctx, 'risk.anomaly');
      assert.equal(event!.client, 'oms');
      assert.deepEqual(event!.details, {
        anomaly_id: anomaly!.id,
        class: 'token_rate',
        principal_type: 'Client',
        principal_id: 'oms',
        window_start: window!.windowStart,
        window_end: window!.windowStart + window!.windowMs,
        observed: 30,
        baseline: 3,
        factor: 10,
        reaction: 'step_up',
      });
      const alerts = await f.ctx.storage.db.selectFrom('alerts').selectAll().where('type', '=', 'risk.anomaly').execute();
      assert.equal(alerts.length, 1);
      assert.equal(JSON.parse(alerts[0]!.data).anomaly_id, anomaly!.id);
      const baseline = await f.ctx.storage.db.selectFrom('risk_baselines').selectAll().where('principal_id', '=', 'oms').where('metric', '=', 'token_rate').executeTakeFirstOrThrow();
      assert.equal(Number(baseline.ewma), 3, 'the burst was not folded into the baseline');
      assert.equal(Number(baseline.windows), 24);
    });

    test('just under ten times the baseline, or under the minimum count, is not an anomaly', async (t) => {
      const f = await anomalyNodes(t, dialect);
      await history(f, 'oms', 24, 3);
      await history(f, 'quiet', 24, 1);
      tokens(f.ctx, 'oms', 29);
      tokens(f.ctx, 'quiet', 19);
      await closeWindow(f);
      assert.deepEqual(await anomalies(f.ctx), []);
    });

    test('does not judge a principal with less history than minimum_history', async (t) => {
      const f = await anomalyNodes(t, dialect);
      await history(f, 'new-service', 11, 2);
      tokens(f.ctx, 'new-service', 500);
      await closeWindow(f);
      assert.deepEqual(await anomalies(f.ctx), []);
      await apply(f, { anomalies: { minimum_history: 5 } });
      tokens(f.ctx, 'new-service', 500);
      await closeWindow(f);
      assert.equal((await anomalies(f.ctx)).length, 1, 'judged with the lower minimum');
    });

    test('extends the open anomaly of a principal while the burst goes on, instead of raising another', async (t) => {
      const f = await anomalyNodes(t, dialect);
      await history(f, 'oms', 24, 3);
      tokens(f.ctx, 'oms', 30);
      await closeWindow(f);
      tokens(f.ctx, 'oms', 45);
      const [second] = await closeWindow(f);
      assert.equal(second!.raised.length, 0);
      const [anomaly] = await anomalies(f.ctx);
      assert.equal(Number(anomaly!.windows), 2);
      assert.equal(Number(anomaly!.observed), 45);
      assert.equal(Number(anomaly!.last_window_start), second!.windowStart);
      assert.equal((await events(f.ctx, 'risk.anomaly')).length, 1);
    });

    test('finds a spike in logins, and in distinct audiences, each its own class', async (t) => {
      const f = await anomalyNodes(t, dialect);
      for (let w = 0; w < 24; w++) {
        logins(f.ctx, 'alice', 2);
        tokens(f.ctx, 'scanner', 1);
        await closeWindow(f);
      }
      logins(f.ctx, 'alice', 20);
      tokens(f.ctx, 'scanner', 10, Array.from({ length: 10 }, (_, i) => `https://api-${i}.example.com`));
      await closeWindow(f);
      const found = (await anomalies(f.ctx)).map((a) => [a.principal_id, a.class, Number(a.observed), a.reaction]).sort();
      assert.deepEqual(found, [
        ['alice', 'login_rate', 20, 'step_up'],
        ['scanner', 'audience_spread', 10, 'alert'],
      ]);
    });

    test('two nodes share counts and baselines: a burst split across them is seen whole, whichever node evaluates', async (t) => {
      const f = await anomalyNodes(t, dialect, 2);
      const [a, b] = f.nodes as [Context, Context];
      for (let w = 0; w < 12; w++) {
        tokens(a, 'oms', 2);
        tokens(b, 'oms', 2);
        await closeWindow(f, w % 2 === 0 ? a : b);
      }
      const baseline = await b.storage.db.selectFrom('risk_baselines').selectAll().where('principal_id', '=', 'oms').where('metric', '=', 'token_rate').executeTakeFirstOrThrow();
      assert.equal(Number(baseline.ewma), 4, "the baseline is both nodes' traffic");
      assert.equal(Number(baseline.windows), 12);

      tokens(a, 'oms', 20);
      tokens(b, 'oms', 20);
      await b.risk.activity.flush();
      await a.risk.activity.flush();
      assert.equal(a.risk.activity.current(client('oms')).tokens, 40, "node a sees its live count and node b's flushed one");
      // Both nodes' passes run at once: the window is evaluated once.
      for (const node of f.nodes) await node.risk.activity.flush();
      f.clock.advance(300_000);
      const [fromA, fromB] = await Promise.all([evaluateClosedWindows(a), evaluateClosedWindows(b)]);
      assert.equal(fromA!.length + fromB!.length, 1, 'one node evaluated the window');
      const [anomaly] = await anomalies(a);
      assert.equal(Number(anomaly!.observed), 40);
      assert.equal((await anomalies(a)).length, 1);
      assert.equal((await events(a, 'risk.anomaly')).length, 1);
    });

    test('a node that stops cleanly loses no count, and writing its totals again counts nothing twice', async (t) => {
      const f = await anomalyNodes(t, dialect, 2);
      const [a, b] = f.nodes as [Context, Context];
      tokens(b, 'oms', 7);
      await b.risk.activity.flush();
      await b.risk.activity.flush();
      tokens(b, 'oms', 3);
      await b.risk.activity.close();
      const rows = await a.storage.db.selectFrom('risk_activity').selectAll().where('principal_id', '=', 'oms').execute();
      assert.equal(rows.length, 1);
      assert.equal(Number(rows[0]!.tokens), 10);
      assert.deepEqual(JSON.parse(rows[0]!.audiences), [ordersApi]);
    });

    test('a window setting from apply is used by every node from its next flush, and a baseline is rescaled to it', async (t) => {
      const f = await anomalyNodes(t, dialect);
      await history(f, 'oms', 12, 3);
      await apply(f, { anomalies: { window: 600, reactions: { token_rate: 'alert' } } });
      await f.ctx.risk.activity.flush();
      f.clock.set(Math.ceil(f.clock.now() / 600_000) * 600_000 + 1000);
      tokens(f.ctx, 'oms', 60);
      await f.ctx.risk.activity.flush();
      f.clock.advance(600_000 + 15_000);
      const [window] = await evaluateClosedWindows(f.ctx);
      assert.equal(window!.windowMs, 600_000);
      const [anomaly] = await anomalies(f.ctx);
      assert.equal(Number(anomaly!.baseline), 6, 'three per five minutes is six per ten');
      assert.equal(anomaly!.reaction, 'alert');
    });
  });
}
