import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Context } from '../../../src/context.ts';
import { assessRisk } from '../../../src/risk/engine.ts';
import { velocity } from '../../../src/risk/signals/velocity.ts';
import { testDialects } from '../../helpers/storage.ts';
import { anomalyNodes, closeWindow, logins, tokens } from '../anomalies/fixture.ts';

const issuance = (principal: { type: 'User' | 'Client'; id: string }, clientId = principal.id) => ({ moment: 'issuance' as const, principal, clientId });

for (const dialect of testDialects()) {
  describe(`the velocity signal on ${dialect.name}`, () => {
    test('fires while a burst of ten times the baseline is under way, before its window closes, counting what the other node flushed', async (t) => {
      const f = await anomalyNodes(t, dialect, 2);
      const [a, b] = f.nodes as [Context, Context];
      for (let w = 0; w < 12; w++) {
        tokens(a, 'oms', 2);
        await closeWindow(f);
      }
      const svc = { type: 'Client', id: 'oms' } as const;
      tokens(a, 'oms', 12);
      await a.risk.activity.flush();
      assert.deepEqual((await assessRisk(a, issuance(svc), [velocity])).signals, [], '12 is not ten times 2');
      tokens(b, 'oms', 8);
      await b.risk.activity.flush();
      assert.deepEqual((await assessRisk(a, issuance(svc), [velocity])).signals, [], "node a has not read node b's count yet");
      await a.risk.activity.flush();
      const assessed = await assessRisk(a, issuance(svc), [velocity]);
      assert.deepEqual(assessed.signals, [{ signal: 'velocity', points: 30, detail: '20 tokens this window, baseline 2.0' }]);
      assert.equal(assessed.outcome, 'allow', 'velocity alone is a medium risk; policy decides what it means');
      assert.equal(assessed.level, 'medium');
    });

    test("judges a person's logins at sign-in, and at a person's token the client's rate too", async (t) => {
      const f = await anomalyNodes(t, dialect);
      for (let w = 0; w < 12; w++) {
        logins(f.ctx, 'alice', 1);
        f.ctx.risk.activity.countToken({ type: 'User', id: 'alice' }, 'trading-ui', 'https://orders.example.com/api');
        await closeWindow(f);
      }
      logins(f.ctx, 'alice', 25);
      for (let i = 0; i < 30; i++) f.ctx.risk.activity.countToken({ type: 'User', id: `someone-${i}` }, 'trading-ui', 'https://orders.example.com/api');
      await f.ctx.risk.activity.flush();
      const login = await assessRisk(f.ctx, { moment: 'login', principal: { type: 'User', id: 'alice' } }, [velocity]);
      assert.deepEqual(login.signals, [{ signal: 'velocity', points: 30, detail: '25 logins this window, baseline 1.0' }]);
      const token = await assessRisk(f.ctx, issuance({ type: 'User', id: 'alice' }, 'trading-ui'), [velocity]);
      assert.deepEqual(token.signals, [{ signal: 'velocity', points: 30, detail: 'the client: 30 tokens this window, baseline 1.0' }]);
    });

    test('does not judge a principal without enough history', async (t) => {
      const f = await anomalyNodes(t, dialect);
      for (let w = 0; w < 3; w++) {
        tokens(f.ctx, 'fresh', 1);
        await closeWindow(f);
      }
      tokens(f.ctx, 'fresh', 200);
      await f.ctx.risk.activity.flush();
      assert.deepEqual((await assessRisk(f.ctx, issuance({ type: 'Client', id: 'fresh' }), [velocity])).signals, []);
    });
  });
}
