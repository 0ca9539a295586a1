/**
 * The risk assessment at the AuthZEN API (issue 16, src/risk/evaluation.ts): each evaluation's
 * principal is assessed, Cedar sees context.risk, a risk deny denies what the policies permit, and
 * each decision event carries details.risk.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { StoredAuditEvent } from '../../src/audit/events.ts';
import { buildApp } from '../../src/http/app.ts';
import { applyDocument, exampleEntities, ordersApi, peopleAndClients } from '../policy/fixture.ts';
import { testContext, testDialects } from '../helpers/storage.ts';
import { basicAuthorization, formBody } from './fixture.ts';

const policySet = `
@id("all") permit (principal, action, resource);
@id("calm-only") forbid (principal, action, resource) when { context has risk && context.risk.level != "low" };
`;

for (const dialect of testDialects()) {
  describe(`the risk assessment at the AuthZEN API on ${dialect.name}`, () => {
    test('passes context.risk to the policies, lets a risk deny win over a permit, and records the assessment', async (t) => {
      const { ctx } = await testContext({ t, dialect });
      const secrets = await applyDocument(ctx, { ...exampleEntities(), ...peopleAndClients });
      await applyDocument(ctx, {
        policies: [{ version: 'v1', text: policySet, change_ref: 'CHG-1', author: 'alice.author', approver: 'bob.approver', active: true }],
        risk: { weights: { new_scope: 30 } },
      });
      const app = buildApp(ctx);
      t.after(() => app.close());
      await app.ready();
      // The agent's history: a token for order:create on the orders API.
      const issued = await app.inject({
        method: 'POST',
        url: '/token',
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuthorization('algo-fx-1', secrets['algo-fx-1']!) },
        payload: formBody({ grant_type: 'client_credentials', resource: ordersApi }),
      });
      assert.equal(issued.statusCode, 200, issued.body);

      const evaluate = async (action: string) => {
        const response = await app.inject({
          method: 'POST',
          url: '/access/v1/evaluation',
          headers: { 'content-type': 'application/json', authorization: basicAuthorization('order-gateway', secrets['order-gateway']!) },
          payload: JSON.stringify({ subject: { type: 'agent', id: 'algo-fx-1' }, action: { name: action }, resource: { type: 'resource_server', id: ordersApi } }),
        });
        assert.equal(response.statusCode, 200, response.body);
        return response.json() as { decision: boolean; context: { reasons: string[] } };
      };
      const lastDecision = async (): Promise<StoredAuditEvent> => {
        const row = await ctx.storage.db.selectFrom('audit_events').select('event').where('type', 'in', ['policy.allowed', 'policy.denied']).orderBy('seq', 'desc').executeTakeFirstOrThrow();
        return JSON.parse(row.event) as StoredAuditEvent;
      };

      const known = await evaluate('order:create');
      assert.deepEqual([known.decision, known.context.reasons], [true, ['all']]);
      assert.deepEqual((await lastDecision()).details!.risk, { score: 0, level: 'low', outcome: 'allow', signals: [] });

      // A scope the agent was never issued: medium, which the policy forbids.
      const unusual = await evaluate('order:cancel');
      assert.deepEqual([unusual.decision, unusual.context.reasons], [false, ['calm-only']]);
      const forbidden = await lastDecision();
      assert.deepEqual((forbidden.details!.request as { context: { risk: unknown } }).context.risk, { score: 30, level: 'medium', signals: ['new_scope'] });
      assert.deepEqual((forbidden.details!.risk as { signals: unknown }).signals, [{ signal: 'new_scope', points: 30, detail: 'never seen for this client: order:cancel' }]);

      // Weighing enough to deny: refused although every policy permits it (nothing forbids a high score here).
      await applyDocument(ctx, {
        policies: [{ version: 'v2', text: '@id("all") permit (principal, action, resource);', change_ref: 'CHG-2', author: 'alice.author', approver: 'bob.approver', active: true }],
        risk: { weights: { new_scope: 90 } },
      });
      const denied = await evaluate('order:amend');
      assert.deepEqual([denied.decision, denied.context.reasons], [false, ['risk']]);
      const event = await lastDecision();
      assert.deepEqual([event.type, event.decision!.reasons, event.details!.permitted_by], ['policy.denied', ['risk'], ['all']]);
      assert.equal((event.details!.risk as { outcome: string }).outcome, 'deny');
      const riskDenied = await ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', 'risk.denied').execute();
      assert.equal(riskDenied.length, 1);
      assert.deepEqual((JSON.parse(riskDenied[0]!.event) as StoredAuditEvent).details!.moment, 'evaluation');
      const alerts = await ctx.storage.db.selectFrom('alerts').select(['type', 'data']).execute();
      assert.deepEqual(alerts.map((a) => [a.type, (JSON.parse(a.data) as { subject: string; via: string }).subject]), [['risk.denied', 'algo-fx-1']]);

      // An allowed evaluation is remembered: the action is no longer new.
      await applyDocument(ctx, { risk: { weights: { new_scope: 10 } } });
      assert.equal((await evaluate('order:amend')).decision, true);
      assert.equal((await evaluate('order:amend')).decision, true);
      assert.deepEqual((await lastDecision()).details!.risk, { score: 0, level: 'low', outcome: 'allow', signals: [] });
      // A batch is assessed item by item.
      const batch = await app.inject({
        method: 'POST',
        url: '/access/v1/evaluations',
        headers: { 'content-type': 'application/json', authorization: basicAuthorization('order-gateway', secrets['order-gateway']!) },
        payload: JSON.stringify({ subject: { type: 'agent', id: 'algo-fx-1' }, resource: { type: 'resource_server', id: ordersApi }, evaluations: [{ action: { name: 'order:create' } }, { action: { name: 'rfq:send' } }] }),
      });
      assert.equal(batch.statusCode, 200, batch.body);
      assert.deepEqual((await lastDecision()).details!.risk, { score: 10, level: 'low', outcome: 'allow', signals: [{ signal: 'new_scope', points: 10, detail: 'never seen for this client: rfq:send' }] });
    });
  });
}
