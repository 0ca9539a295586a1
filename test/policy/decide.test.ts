import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { StoredAuditEvent } from '../../src/audit/events.ts';
import type { Context } from '../../src/context.ts';
import { decide, evaluateDecision, Resolutions } from '../../src/policy/decide.ts';
import { testContext } from '../helpers/storage.ts';
import { applyDocument, exampleEntities, ordersApi, peopleAndClients, policyContext, userId } from './fixture.ts';

async function decisions(ctx: Context): Promise<StoredAuditEvent[]> {
  const rows = await ctx.storage.db.selectFrom('audit_events').select('event').where('type', 'in', ['policy.allowed', 'policy.denied']).orderBy('seq').execute();
  return rows.map((r) => JSON.parse(r.event) as StoredAuditEvent);
}

describe('the policy decision point', () => {
  test('allows with reasons and the policy version, from Clearance own records, and audits it', async (t) => {
    const { ctx } = await policyContext(t);
    const alice = await userId(ctx, 'alice');
    const decision = await decide(
      ctx,
      { principal: { type: 'User', id: alice }, action: 'order:create', resource: { type: 'Instrument', id: 'EURUSD', instrument_class: 'fx' }, context: { notional: 1_000_000, currency: 'USD' } },
      { requestId: 'req-1', caller: 'order-gateway', via: 'test' },
    );
    assert.deepEqual(decision, { allow: true, reasons: ['desk-trades-its-product-classes'], policyVersion: 'v1', errors: [] });
    const [event] = await decisions(ctx);
    assert.equal(event!.type, 'policy.allowed');
    assert.equal(event!.subject, alice);
    assert.equal(event!.client, 'order-gateway');
    assert.deepEqual(event!.scopes, ['order:create']);
    assert.deepEqual(event!.decision, { allow: true, reasons: ['desk-trades-its-product-classes'], policyVersion: 'v1' });
    assert.equal(event!.details!.principal, `User::"${alice}"`);
    assert.equal(event!.details!.resource, 'Instrument::"EURUSD"');
    // The request as evaluated, for replay: the person's attributes came from their record.
    const request = event!.details!.request as { context: Record<string, unknown>; entities: { uid: { type: string; id: string }; attrs: Record<string, unknown> }[] };
    assert.equal(request.context.kyc_status, 'verified');
    const user = request.entities.find((e) => e.uid.type === 'User')!;
    assert.deepEqual(user.attrs.product_classes, ['fx', 'rates', 'rates_derivatives']);
    assert.deepEqual(user.attrs.jurisdictions, ['GB']);
  });

  test('denies and audits the deny with the forbidding policy', async (t) => {
    const { ctx } = await policyContext(t);
    const bob = await userId(ctx, 'bob');
    // Bob's record says pending; what the caller claims about KYC does not count for a person.
    const decision = await decide(ctx, {
      principal: { type: 'User', id: bob },
      action: 'order:create',
      resource: { type: 'Instrument', id: 'BTC-USD', instrument_class: 'crypto' },
      context: { notional: 10, kyc_status: 'verified' },
    });
    assert.deepEqual(decision, { allow: false, reasons: ['kyc-verified-to-trade'], policyVersion: 'v1', errors: [] });
    const [event] = await decisions(ctx);
    assert.equal(event!.type, 'policy.denied');
    assert.deepEqual(event!.decision, { allow: false, reasons: ['kyc-verified-to-trade'], policyVersion: 'v1' });
  });

  test('decides for clients, agents and accounts from the registry and the entity model', async (t) => {
    const { ctx } = await policyContext(t);
    const read = (region?: string) =>
      decide(ctx, { principal: { type: 'Client', id: 'risk-engine' }, action: 'position:view', resource: { type: 'Account', id: 'GB-FX-001' }, context: region ? { region } : {} });
    assert.equal((await read('uk')).allow, true);
    assert.deepEqual((await read('us')).reasons, ['account-data-stays-in-region']);
    // A client registered as an agent is an Agent whatever the caller calls it.
    const agent = await decide(ctx, {
      principal: { type: 'Client', id: 'algo-fx-1' },
      action: 'order:create',
      resource: { type: 'Instrument', id: 'EURUSD', instrument_class: 'fx' },
      context: { notional: 5, mandate: { id: 'm-1', version: 1, instrument_classes: ['fx'] } },
    });
    assert.deepEqual(agent.reasons, ['agent-trades-under-mandate']);
    const events = await decisions(ctx);
    assert.equal(events.at(-1)!.details!.principal, 'Agent::"algo-fx-1"');
  });

  test('denies what Clearance does not know, with the error audited', async (t) => {
    const { ctx } = await policyContext(t);
    const cases = [
      { principal: { type: 'User' as const, id: 'no-such-user' }, resource: { type: 'Instrument' as const, id: 'X', instrument_class: 'fx' }, error: 'no user no-such-user' },
      { principal: { type: 'Client' as const, id: 'nobody' }, resource: { type: 'Instrument' as const, id: 'X', instrument_class: 'fx' }, error: 'no client nobody' },
      { principal: { type: 'Client' as const, id: 'risk-engine' }, resource: { type: 'Account' as const, id: 'NOPE' }, error: 'no account NOPE' },
      { principal: { type: 'Client' as const, id: 'risk-engine' }, resource: { type: 'Instrument' as const, id: 'X', instrument_class: 'weather' }, error: '"weather" is not a declared instrument class' },
      { principal: { type: 'Client' as const, id: 'risk-engine' }, resource: { type: 'ResourceServer' as const, id: 'https://nope.example' }, error: 'no resource server https://nope.example' },
    ];
    for (const c of cases) {
      const decision = await decide(ctx, { principal: c.principal, action: 'order:create', resource: c.resource, context: { notional: 1 } });
      assert.deepEqual(decision, { allow: false, reasons: [], policyVersion: 'v1', errors: [c.error] });
    }
    const events = await decisions(ctx);
    assert.equal(events.length, cases.length);
    assert.ok(events.every((e) => e.type === 'policy.denied' && e.decision!.reasons.includes('error')));
  });

  test('denies everything when no policy set is active', async (t) => {
    const { ctx } = await testContext({ t });
    await applyDocument(ctx, { ...exampleEntities(), ...peopleAndClients });
    const decision = await decide(ctx, { principal: { type: 'Client', id: 'risk-engine' }, action: 'position:view', resource: { type: 'ResourceServer', id: ordersApi } });
    assert.deepEqual(decision, { allow: false, reasons: [], policyVersion: 'none', errors: ['no policy set is active'] });
    assert.equal((await decisions(ctx))[0]!.type, 'policy.denied');
  });

  test('denies when the audit log refuses the request, and still records the deny', async (t) => {
    const { ctx } = await policyContext(t);
    const jwtShaped = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln';
    const decision = await decide(ctx, {
      principal: { type: 'Client', id: 'risk-engine' },
      action: 'position:view',
      resource: { type: 'Account', id: 'GB-FX-001' },
      context: { region: 'uk', acr: jwtShaped },
    });
    assert.equal(decision.allow, false);
    assert.match(decision.errors.at(-1)!, /could not be recorded/);
    const [event] = await decisions(ctx);
    assert.equal(event!.type, 'policy.denied');
    assert.equal(JSON.stringify(event).includes(jwtShaped), false);
  });

  test('decides the actions asked together on one resolution of their subject, resource and context', async (t) => {
    const { ctx } = await policyContext(t);
    const alice = await userId(ctx, 'alice');
    const resolutions = new Resolutions();
    const ask = (action: string, id = alice) =>
      evaluateDecision(ctx, { principal: { type: 'User', id }, action, resource: { type: 'ResourceServer', id: ordersApi }, context: {} }, {}, resolutions);
    const create = await ask('order:create');
    const view = await ask('position:view');
    assert.equal(resolutions.size, 1);
    assert.deepEqual([create.decision.allow, view.decision.allow], [true, true]);
    const requests = [create, view].map((d) => d.event.details!.request as { action: string; entities: unknown[]; context: unknown });
    assert.deepEqual(requests.map((r) => r.action), ['order:create', 'position:view']);
    assert.deepEqual(requests[0]!.entities, requests[1]!.entities);
    assert.deepEqual(requests[0]!.context, requests[1]!.context);
    // Another subject is resolved on its own, and one Clearance does not know is still a deny.
    assert.equal((await ask('order:create', 'nobody')).decision.allow, false);
    assert.equal(resolutions.size, 2);
  });

  test('reads a person once for the decisions asked together, whatever their resources and contexts', async (t) => {
    const { ctx } = await policyContext(t);
    const alice = await userId(ctx, 'alice');
    const resolutions = new Resolutions();
    const order = (instrument: string, notional: number, batch: Resolutions | undefined) =>
      evaluateDecision(ctx, { principal: { type: 'User', id: alice }, action: 'order:create', resource: { type: 'Instrument', id: instrument, instrument_class: 'fx' }, context: { notional, currency: 'USD' } }, {}, batch);
    assert.equal((await order('EURUSD', 1_000, resolutions)).decision.allow, true);
    // Locked between two items of one batch: the batch decides on the person as read for its first item.
    await ctx.storage.db.updateTable('users').set({ status: 'locked', lock_reason: 'admin' }).where('id', '=', alice).execute();
    const sameBatch = await order('GBPUSD', 2_000, resolutions);
    assert.equal(sameBatch.decision.allow, true);
    assert.equal(resolutions.size, 2);
    assert.deepEqual(
      (sameBatch.event.details!.request as { entities: { uid: { type: string }; attrs: { status?: string } }[] }).entities.find((e) => e.uid.type === 'User')!.attrs.status,
      'active',
    );
    // The next batch, and a decision asked alone, read the person afresh.
    assert.equal((await order('GBPUSD', 2_000, new Resolutions())).decision.allow, false);
    assert.equal((await order('GBPUSD', 2_000, undefined)).decision.allow, false);
  });
});
