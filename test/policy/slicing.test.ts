import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { schemaToJson } from '@cedar-policy/cedar-wasm/nodejs';
import { compilePolicySet, evaluate, evaluateWhole, formatPolicyProblem, type CedarEntity, type CedarRequest, type CompiledPolicySet, type Evaluation } from '../../src/policy/engine.ts';
import { approveAction, cedarSchema, policyActions } from '../../src/policy/schema.ts';
import { actionEntity, contextConforms, planFor, readSchemaFacts, sliceContext, sliceEntities, withAnyAction } from '../../src/policy/slicing.ts';
import { loadTestCases, readPolicySources } from '../../src/policy/testing.ts';
import { answerSources, examplePoliciesDir, outcome } from './fixture.ts';

/**
 * Slicing (src/policy/slicing.ts) and the engine's memory of answers must never change a decision:
 * `evaluate` answers exactly as Cedar asked the whole request does (`evaluateWhole`) — the same
 * allow, reasons and errors — for any request, including the malformed ones that must deny.
 */

const numRuns = 300;

/** Policies that read what slicing must not cut: other entities' attributes, `in` on them, optional attributes, the action or an action entity in a condition. */
const extraPolicies = `
@id("embargoed-firm-by-entity")
forbid (principal, action, resource is Account) when { resource.legal_entity.jurisdiction == "CU" };

@id("desk-of-the-broker")
permit (principal is User, action in Action::"read", resource is Account)
when { resource has desk && resource.desk in LegalEntity::"5493001KJTIIGC8Y1R12" };

@id("services-of-two-firms")
permit (principal is Client, action == Action::"report:view", resource)
when { principal in [LegalEntity::"5493001KJTIIGC8Y1R12", LegalEntity::"254900EXAMPLEUS0AA64"] };

@id("resource-server-region")
forbid (principal, action, resource is ResourceServer)
when { resource has region && context has region && resource.region != context.region };

@id("mandate-venues")
forbid (principal is Agent, action in Action::"trading", resource is Instrument)
when { context has mandate && context.mandate has venues && resource has venue && !context.mandate.venues.contains(resource.venue) };

@id("fx-or-rates-rfq")
permit (principal is User in Desk::"fx-spot", action == Action::"rfq:send", resource is Instrument)
when { resource.instrument_class == "fx" || resource.instrument_class == "rates" };

@id("small-orders-only-at-risk")
forbid (principal, action in [Action::"order:create", Action::"order:amend"], resource)
when { context has risk && (context.risk.score >= 90 || context.risk.level == "high") && (context has notional && context.notional > 1000 || context has acr) };

@id("outside-gb-reads-nothing")
forbid (principal is User, action in Action::"read", resource)
unless { principal.jurisdictions == ["GB"] || principal.jurisdictions.contains("GB") };

@id("reads-by-condition")
permit (principal is Client, action, resource is ResourceServer)
when { action in Action::"read" && principal.kind == "service" };

@id("names-an-action-in-a-condition")
forbid (principal is User, action in Action::"trading", resource is Instrument)
when { Action::"order:cancel" in Action::"trading" && context has notional && context.notional > 75000000 };

@id("no-retail-trading")
forbid (principal is User, action in Action::"trading", resource)
when { principal has client_category && principal.client_category == "retail" };
`;

function compile(version: string, texts: string[]): CompiledPolicySet {
  const { set, problems } = compilePolicySet(version, texts.map((text, i) => ({ name: `policies-${i}.cedar`, text })));
  assert.deepEqual(problems.map(formatPolicyProblem), []);
  return set!;
}

const exampleTexts = readPolicySources(examplePoliciesDir).map((s) => s.text);
const examples = compile('examples', exampleTexts);
const withExtras = compile('examples+extras', [...exampleTexts, extraPolicies]);

const { cases } = loadTestCases(examplePoliciesDir, 1767225600);
/** Every entity the example test cases know, once. */
const pool: CedarEntity[] = [...new Map(cases.flatMap((c) => c.request.entities).map((e) => [`${e.uid.type}::${e.uid.id}`, e])).values()];
const ofType = (type: string) => pool.filter((e) => e.uid.type === type).map((e) => e.uid);

const accounts = [...ofType('Account'), { type: 'Account', id: 'no-such-account' }];
const instruments = ofType('Instrument');
const resourceServers = ofType('ResourceServer');

/** A request as the server or a test file could make it, right or wrong in any part. */
const request: fc.Arbitrary<CedarRequest> = fc
  .record({
    principal: fc.constantFrom(...ofType('User'), ...ofType('Client'), ...ofType('Agent'), { type: 'User', id: 'nobody' }, { type: 'Desk', id: 'fx-spot' }),
    action: fc.constantFrom(...policyActions, approveAction, 'order:delete', 'trading'),
    resource: fc.constantFrom(...accounts, ...instruments, ...resourceServers, ...ofType('User'), { type: 'LegalEntity', id: '5493001KJTIIGC8Y1R12' }),
    context: fc.record(
      {
        notional: fc.oneof(fc.integer({ min: 0, max: 80_000_000 }), fc.constant('lots')),
        currency: fc.constantFrom<unknown>('USD', 'EUR', 5),
        acr: fc.constantFrom<unknown>('urn:example:mfa', 7, undefined),
        venue: fc.constantFrom<unknown>('XLON', ['XLON']),
        risk: fc.oneof(fc.record({ score: fc.integer({ min: 0, max: 100 }), level: fc.constantFrom('low', 'medium', 'high'), signals: fc.subarray(['new_device', 'off_hours']) }), fc.constant(42)),
        region: fc.constantFrom('uk', 'us', 'eu'),
        kyc_status: fc.constantFrom('verified', 'pending'),
        suitability: fc.oneof(fc.subarray<unknown>(['fx', 'crypto', 'crypto_derivatives', 'rates_derivatives']), fc.constant(['fx', 3])),
        mandate: fc.record(
          { id: fc.constant('m-1'), version: fc.constantFrom<unknown>(1, 1.5), instrument_classes: fc.subarray(['fx', 'crypto']), venues: fc.subarray(['example-derivatives', 'XLON']), max_notional: fc.integer({ min: 0, max: 20_000_000 }), colour: fc.constant('red') },
          { requiredKeys: ['id'] },
        ),
        colour: fc.constant('red'),
      },
      { requiredKeys: [] },
    ),
    entities: fc.subarray(pool, { minLength: 0 }),
    extra: fc.array(
      fc.constantFrom<Partial<CedarEntity> | 'duplicate' | 'unconforming' | 'escaped-parent' | 'action' | 'no-desk' | 'bare-reference'>('duplicate', 'unconforming', 'escaped-parent', 'action', 'no-desk', 'bare-reference'),
      { maxLength: 2 },
    ),
    time: fc.oneof(fc.constant(1767225600), fc.integer({ min: 0, max: 2_000_000_000 })),
  })
  .map(({ principal, action, resource, context, entities, extra, time }) => {
    // Mostly the entities the principal and resource need, with their desks and firms; sometimes fewer, more or wrong.
    const needed = pool.filter((e) => sameUid(e.uid, principal) || sameUid(e.uid, resource) || e.uid.type === 'Desk' || e.uid.type === 'LegalEntity');
    let list = [...new Map([...needed, ...entities].map((e) => [`${e.uid.type}::${e.uid.id}`, e])).values()];
    for (const change of extra) {
      if (change === 'duplicate' && list.length) list = [...list, list[0]!];
      if (change === 'unconforming') list = list.map((e) => (e.uid.type === 'Desk' ? { ...e, attrs: { ...e.attrs, jurisdiction: 5 } } : e));
      if (change === 'escaped-parent') list = list.map((e) => (e.uid.type === 'User' ? { ...e, parents: e.parents.map((p) => ({ __entity: p }) as never) } : e));
      if (change === 'action') list = [...list, { uid: { type: 'Action', id: action }, attrs: {}, parents: [] }];
      if (change === 'no-desk') list = list.filter((e) => e.uid.type !== 'Desk');
      if (change === 'bare-reference') list = list.map(bareReferences);
    }
    return { principal, action, resource, context: { time, ...context } as CedarRequest['context'], entities: list };
  });

/** The entity with the entities its attributes refer to written `{ type, id }`, which Cedar takes with the schema. */
function bareReferences(entity: CedarEntity): CedarEntity {
  const bare = (value: unknown): unknown =>
    Array.isArray(value) ? value.map(bare) : typeof value === 'object' && value !== null && '__entity' in value ? (value as { __entity: unknown }).__entity : value;
  return { ...entity, attrs: Object.fromEntries(Object.entries(entity.attrs).map(([name, value]) => [name, bare(value)])) as CedarEntity['attrs'] };
}

/**
 * A request every part of which conforms to the schema, as the server makes them from its records:
 * Cedar is asked it without the schema (engine.ts `checkedCall`).
 */
const wellFormedRequest: fc.Arbitrary<CedarRequest> = fc
  .record({
    // A scope on a resource, or a second person's approval of a person's request (four-eyes).
    shape: fc.oneof(
      fc.record({ principal: fc.constantFrom(...ofType('User'), ...ofType('Client'), ...ofType('Agent')), action: fc.constantFrom(...policyActions), resource: fc.constantFrom(...ofType('Account'), ...instruments, ...resourceServers) }),
      fc.record({ principal: fc.constantFrom(...ofType('User')), action: fc.constant(approveAction), resource: fc.constantFrom(...ofType('User')) }),
      // A person asked to approve their own request: one entity both principal and resource.
      fc.constantFrom(...ofType('User')).map((person) => ({ principal: person, action: approveAction, resource: person })),
    ),
    context: fc.record(
      {
        notional: fc.integer({ min: 0, max: 80_000_000 }),
        currency: fc.constantFrom('USD', 'EUR'),
        acr: fc.constantFrom('urn:example:mfa', 'urn:example:pwd'),
        acr_levels: fc.subarray(['urn:example:pwd', 'urn:example:mfa', 'urn:example:phr', 'urn:clearance:acr:phr']),
        venue: fc.constantFrom('XLON', 'example-derivatives'),
        risk: fc.record({ score: fc.integer({ min: 0, max: 100 }), level: fc.constantFrom('low', 'medium', 'high'), signals: fc.subarray(['new_device', 'off_hours']) }),
        region: fc.constantFrom('uk', 'us', 'eu'),
        kyc_status: fc.constantFrom('verified', 'pending'),
        suitability: fc.subarray(['fx', 'crypto', 'crypto_derivatives', 'rates_derivatives']),
        local_time: fc.integer({ min: 0, max: 1439 }),
        local_weekday: fc.integer({ min: 1, max: 7 }),
        approved: fc.boolean(),
        approvals: fc.integer({ min: 0, max: 3 }),
        approval_kind: fc.constantFrom('ciba', 'recovery', 'break_glass'),
        mandate: fc.record(
          { id: fc.constant('m-1'), version: fc.integer({ min: 1, max: 3 }), instrument_classes: fc.subarray(['fx', 'crypto']), venues: fc.subarray(['example-derivatives', 'XLON']), max_notional: fc.integer({ min: 0, max: 20_000_000 }) },
          { requiredKeys: ['id', 'version'] },
        ),
      },
      { requiredKeys: [] },
    ),
    time: fc.oneof(fc.constant(1767225600), fc.integer({ min: 0, max: 2_000_000_000 })),
  })
  .map(({ shape: { principal, action, resource }, context, time }) => ({
    principal,
    action,
    resource,
    context: { time, ...context } as CedarRequest['context'],
    entities: pool.filter((e) => sameUid(e.uid, principal) || sameUid(e.uid, resource) || e.uid.type === 'Desk' || e.uid.type === 'LegalEntity'),
  }));

/** What one evaluation added to the answer sources. */
async function answeredBy(evaluateIt: () => unknown): Promise<string[]> {
  const before = await answerSources();
  evaluateIt();
  const after = await answerSources();
  return Object.keys(after).filter((source) => after[source] !== (before[source] ?? 0));
}

function sameUid(a: { type: string; id: string }, b: { type: string; id: string }): boolean {
  return a.type === b.type && a.id === b.id;
}

describe('slicing a decision to what its policies read', () => {
  test('decides every example test case as Cedar does on the whole request', () => {
    for (const set of [examples, withExtras]) {
      for (const c of cases) assert.deepEqual(evaluate(set, c.request), evaluateWhole(set, c.request), c.name);
    }
  });

  test('decides any request, well formed or not, as Cedar does on the whole request', () => {
    for (const set of [examples, withExtras]) {
      fc.assert(
        fc.property(request, (r) => {
          const whole = outcome(evaluateWhole(set, r));
          assert.deepEqual(outcome(evaluate(set, r)), whole);
          // Asked again, the remembered answer is the same.
          assert.deepEqual(outcome(evaluate(set, r)), whole);
        }),
        { numRuns, seed: set === examples ? 1301 : 1302 },
      );
    }
  });

  test('asks Cedar a request known to conform without the schema, and answers as Cedar does with it', async () => {
    for (const set of [examples, withExtras]) {
      await fc.assert(
        fc.asyncProperty(wellFormedRequest, async (r) => {
          const whole = evaluateWhole(set, r);
          let answer: Evaluation | undefined;
          const sources = await answeredBy(() => (answer = evaluate(set, r)));
          // A request generated twice is remembered the second time; a new one is asked without the
          // schema, unless its policies may name an action entity in a condition (the extras' one).
          const namesAction = planFor(set.policies, r.principal.type, r.action, r.resource.type)!.reads.actionLiterals;
          const allowed = ['checked', 'remembered', ...(namesAction ? ['schema'] : [])];
          assert.ok(sources.length === 1 && allowed.includes(sources[0]!), `answered by ${sources.join(', ')}`);
          assert.deepEqual(answer, whole);
        }),
        { numRuns, seed: set === examples ? 1303 : 1304 },
      );
    }
  });

  test('asks Cedar with the schema a request that may not conform, which it refuses', async () => {
    const order = cases.find((c) => c.expect === 'allow' && c.request.action === 'order:create' && c.request.principal.id === 'alice' && c.request.resource.type === 'Instrument')!.request;
    assert.deepEqual(await answeredBy(() => evaluate(examples, { ...order, context: { ...order.context, notional: 1_000_001 } })), ['checked']);
    const wrong: Record<string, CedarRequest> = {
      'a string notional': { ...order, context: { ...order.context, notional: 'lots' } },
      'an undeclared attribute': { ...order, context: { ...order.context, colour: 'red' } },
      'an entity in the context': { ...order, context: { ...order.context, venue: { __entity: { type: 'Instrument', id: 'EURUSD' } } } },
      'a desk of the wrong shape': { ...order, entities: order.entities.map((e) => (e.uid.type === 'Desk' ? { ...e, attrs: { ...e.attrs, jurisdiction: 5 } } : e)) },
      'an unknown action': { ...order, action: 'order:delete' },
    };
    for (const [name, r] of Object.entries(wrong)) {
      let answer: Evaluation | undefined;
      assert.deepEqual(await answeredBy(() => (answer = evaluate(examples, r))), ['schema'], name);
      assert.equal(answer!.allow, false, name);
      assert.deepEqual(outcome(answer!), outcome(evaluateWhole(examples, r)), name);
    }
  });

  test('holds a context to the schema before leaving the schema out', () => {
    const context = { time: 1767225600, notional: 5, currency: 'USD', suitability: ['fx'], mandate: { id: 'm-1', version: 1, max_notional: 10 }, risk: { score: 3, level: 'low', signals: [] } };
    assert.equal(contextConforms(context), true);
    assert.equal(contextConforms({ time: 1767225600 }), true);
    for (const [name, wrong] of Object.entries({
      'no time': { notional: 5 },
      'a fraction': { ...context, notional: 1.5 },
      'an integer past 2^53': { ...context, notional: 2 ** 60 },
      'a lone surrogate': { ...context, currency: '\ud800' },
      'a set of the wrong items': { ...context, suitability: ['fx', 3] },
      'a record member undeclared': { ...context, mandate: { ...context.mandate, colour: 'red' } },
      'a record without a required member': { ...context, mandate: { id: 'm-1' } },
      'an entity reference': { ...context, venue: { __entity: { type: 'Instrument', id: 'EURUSD' } } },
      'an array': [],
    })) {
      assert.equal(contextConforms(wrong), false, name);
    }
  });

  test("reads the context's record types from the schema as Cedar does", () => {
    const answer = schemaToJson(cedarSchema);
    assert.equal(answer.type, 'success');
    type JsonType = { type: string; name?: string; element?: JsonType; required?: boolean };
    const common = (answer.json as Record<string, { commonTypes: Record<string, { attributes: Record<string, JsonType> }> }>)['']!.commonTypes;
    const text = (t: JsonType): string => (t.type === 'Set' ? `Set<${text(t.element!)}>` : (t.name ?? t.type));
    const expected = new Map(Object.entries(common).map(([name, record]) => [name, new Map(Object.entries(record.attributes).map(([a, t]) => [a, { type: text(t), optional: t.required === false }]))]));
    assert.deepEqual(readSchemaFacts(cedarSchema).records, expected);
  });

  test('makes an action scope `action` only where it names actions, and knows a condition that reads the action', () => {
    const byId = (set: CompiledPolicySet, id: string) => set.policies.find((p) => p.id === id)!;
    const trading = byId(examples, 'desk-trades-its-product-classes').json;
    assert.deepEqual(trading.action, { op: 'in', entity: { type: 'Action', id: 'trading' } });
    assert.deepEqual(withAnyAction(trading), { ...trading, action: { op: 'All' } });
    assert.equal(withAnyAction({ ...trading, action: { op: 'in', entities: [{ type: 'Action', id: 'read' }, { type: 'Desk', id: 'fx-spot' }] } } as never), undefined);
    assert.equal(byId(withExtras, 'reads-by-condition').reads.action, true);
    assert.equal(byId(examples, 'desk-trades-its-product-classes').reads.action, false);
    assert.equal(planFor(withExtras.policies, 'Client', 'report:view', 'ResourceServer')!.reads.action, true);
  });

  test('brings the action as the schema declares it, in its groups', () => {
    assert.deepEqual(actionEntity('order:create'), { uid: { type: 'Action', id: 'order:create' }, attrs: {}, parents: [{ type: 'Action', id: 'trading' }] });
    assert.deepEqual(actionEntity('approve'), { uid: { type: 'Action', id: 'approve' }, attrs: {}, parents: [] });
  });

  test('keeps only the principal and resource, with the ancestors an `in` asks about', () => {
    const order = cases.find((c) => c.request.action === 'order:create' && c.request.principal.id === 'alice' && c.request.resource.type === 'Instrument')!.request;
    const plan = planFor(examples.policies, 'User', 'order:create', 'Instrument')!;
    assert.ok(plan.policyIds.includes('limit-fx-spot-desk-fx') && !plan.policyIds.includes('tokens-for-active-principals'));
    const sliced = sliceEntities(plan, order)!;
    assert.deepEqual(sliced.map((e) => `${e.uid.type}::${e.uid.id}`), ['User::alice', `Instrument::${order.resource.id}`]);
    // `principal in Desk::"fx-spot"` (and "rates", "crypto") are the only `in`s: the firm is not among them.
    assert.deepEqual(sliced[0]!.parents.map((p) => p.id).sort(), ['fx-spot', 'rates']);
  });

  test("slices a second person's approval as it slices a scope: the approve permit, the approver's attributes it reads", async () => {
    const approval = cases.find((c) => c.expect === 'allow' && c.request.action === approveAction)!.request;
    const plan = planFor(examples.policies, 'User', approveAction, 'User')!;
    assert.deepEqual(plan.policyIds, ['supervisors-approve-their-desks']);
    assert.deepEqual([...plan.reads.principal.attrs].sort(), ['approval_limit', 'roles', 'status', 'supervises']);
    // `resource in principal.supervises`: every ancestor of the person approved for matters.
    assert.equal(plan.reads.resource.inAny, true);
    assert.equal(planFor(examples.policies, 'User', approveAction, 'Instrument'), undefined, 'the schema declares approve on a person only');
    const sliced = sliceEntities(plan, approval, 'checked')!;
    assert.deepEqual(sliced.map((e) => `${e.uid.type}::${e.uid.id}`), [`User::${approval.principal.id}`, `User::${approval.resource.id}`]);
    let answer: Evaluation | undefined;
    const fresh = { ...approval, context: { ...approval.context, time: 1767225601 } };
    assert.deepEqual(await answeredBy(() => (answer = evaluate(examples, fresh))), ['checked']);
    assert.equal(answer!.allow, true);
    assert.deepEqual(answer, evaluateWhole(examples, fresh));
  });

  test('sends a person approving their own request once, cut to what the policies read of either', () => {
    const approval = cases.find((c) => c.expect === 'allow' && c.request.action === approveAction)!.request;
    const self = { ...approval, resource: approval.principal, context: { ...approval.context, time: 1767225602 } };
    const plan = planFor(examples.policies, 'User', approveAction, 'User')!;
    const sliced = sliceEntities(plan, self, 'checked')!;
    assert.deepEqual(sliced.map((e) => `${e.uid.type}::${e.uid.id}`), [`User::${approval.principal.id}`]);
    // The approver's attributes (read of the principal) and their desks (`resource in principal.supervises`).
    assert.deepEqual(Object.keys(sliced[0]!.attrs).sort(), ['approval_limit', 'roles', 'status', 'supervises']);
    assert.ok(sliced[0]!.parents.length > 0);
    const whole = evaluateWhole(examples, self);
    assert.equal(whole.allow, true, 'the policy alone would let a supervisor approve themselves; src/approvals/independence.ts refuses it');
    assert.deepEqual(evaluate(examples, self), whole);
  });

  test('asks with the schema a request whose entities refer to others written `{ type, id }`', async () => {
    const approval = cases.find((c) => c.expect === 'allow' && c.request.action === approveAction)!.request;
    const bare = { ...approval, context: { ...approval.context, time: 1767225604 }, entities: approval.entities.map(bareReferences) };
    assert.ok(JSON.stringify(bare.entities) !== JSON.stringify(approval.entities), 'the approver supervises a desk: a reference to write bare');
    let answer: Evaluation | undefined;
    assert.deepEqual(await answeredBy(() => (answer = evaluate(examples, bare))), ['schema']);
    assert.equal(answer!.allow, true);
    assert.deepEqual(answer, evaluateWhole(examples, bare));
  });

  test('asks with the schema a request whose policies name an action entity in a condition', async () => {
    const order = cases.find((c) => c.expect === 'allow' && c.request.action === 'order:create' && c.request.principal.id === 'alice' && c.request.resource.type === 'Instrument')!.request;
    assert.equal(planFor(withExtras.policies, 'User', 'order:create', 'Instrument')!.reads.actionLiterals, true);
    assert.equal(planFor(examples.policies, 'User', 'order:create', 'Instrument')!.reads.actionLiterals, false);
    const large = { ...order, context: { ...order.context, notional: 76_000_000, time: 1767225603 } };
    let answer: Evaluation | undefined;
    assert.deepEqual(await answeredBy(() => (answer = evaluate(withExtras, large))), ['schema']);
    assert.ok(answer!.reasons.includes('names-an-action-in-a-condition'), JSON.stringify(answer));
    assert.deepEqual(answer, evaluateWhole(withExtras, large));
  });

  test('sends a request known to conform with only the attributes its policies read, none the schema alone requires', () => {
    const alice = pool.find((e) => e.uid.type === 'User' && e.uid.id === 'alice')!;
    const account = pool.find((e) => e.uid.type === 'Account')!;
    const read: CedarRequest = { principal: alice.uid, action: 'report:view', resource: account.uid, context: { time: 1767225600, region: 'uk', currency: 'USD' }, entities: [alice, account] };
    const plan = planFor(examples.policies, 'User', 'report:view', 'Account')!;
    // The example policies read a reader's status, and nothing else of theirs.
    assert.deepEqual([...plan.reads.principal.attrs], ['status']);
    const [forSchema, forChecked] = [sliceEntities(plan, read, 'schema')!, sliceEntities(plan, read, 'checked')!];
    // With the schema the person's required attributes go, read or not; without it only what is read.
    assert.deepEqual(Object.keys(forSchema[0]!.attrs).sort(), ['jurisdictions', 'kyc_status', 'product_classes', 'status', 'suitability']);
    assert.deepEqual(Object.keys(forChecked[0]!.attrs), ['status']);
    assert.deepEqual(forChecked[0]!.parents, forSchema[0]!.parents);
    // The context: the required `time` stays for the schema; without it, only what is read.
    assert.deepEqual(Object.keys(sliceContext(plan, read.context, 'schema')).sort(), ['region', 'time']);
    assert.deepEqual(Object.keys(sliceContext(plan, read.context, 'checked')), ['region']);
    assert.deepEqual(evaluate(examples, read), evaluateWhole(examples, read));
  });

  test('leaves out context attributes no policy reads, but still refuses one of the wrong type', () => {
    const order = cases.find((c) => c.expect === 'allow' && c.request.action === 'order:create' && c.request.principal.id === 'alice' && c.request.resource.type === 'Instrument' && 'notional' in c.request.context)!.request;
    const plan = planFor(examples.policies, 'User', 'order:create', 'Instrument')!;
    const context = { time: order.context.time!, notional: order.context.notional! };
    // `acr` is read by no policy (the step-up policies read `acr_levels`), nor is `currency`.
    assert.deepEqual(Object.keys(sliceContext(plan, { ...context, acr: 'urn:example:mfa', currency: 'USD' })).sort(), ['notional', 'time']);
    assert.deepEqual(Object.keys(sliceContext(plan, { ...context, currency: 5 })).sort(), ['currency', 'notional', 'time']);
    const wrong = { ...order, context: { ...order.context, currency: 5 } };
    assert.equal(evaluate(examples, order).allow, true);
    assert.equal(evaluate(examples, wrong).allow, false);
    assert.deepEqual(outcome(evaluate(examples, wrong)), outcome(evaluateWhole(examples, wrong)));
  });

  test('keeps every entity when a policy reads an entity other than the principal and resource', () => {
    const plan = planFor(withExtras.policies, 'Client', 'position:view', 'Account')!;
    assert.equal(plan.reads.opaque, true);
    assert.equal(sliceEntities(plan, cases[0]!.request), undefined);
  });

  test("reads each entity type's optional attributes from the schema as Cedar does", () => {
    const answer = schemaToJson(cedarSchema);
    assert.equal(answer.type, 'success');
    const types = (answer.json as Record<string, { entityTypes: Record<string, { shape?: { attributes?: Record<string, { required?: boolean }> } }> }>)['']!.entityTypes;
    const expected = new Map(Object.entries(types).map(([type, d]) => [type, new Set(Object.entries(d.shape?.attributes ?? {}).filter(([, a]) => a.required === false).map(([name]) => name))]));
    const facts = readSchemaFacts(cedarSchema);
    assert.deepEqual(facts.optional, expected);
    assert.equal(facts.contextHoldsEntities, false);
    // An entity in the context (directly or in a record of it) would make every read of the context count.
    assert.equal(readSchemaFacts(cedarSchema.replace('risk?: Risk,', 'risk?: Risk, account?: Account,')).contextHoldsEntities, true);
    assert.equal(readSchemaFacts(cedarSchema.replace('max_notional?: Long,', 'max_notional?: Long, desks?: Set<Desk>,')).contextHoldsEntities, true);
  });

  test('leaves a request of a shape the schema does not know whole', () => {
    assert.equal(planFor(examples.policies, 'Desk', 'order:create', 'Instrument'), undefined);
    assert.equal(planFor(examples.policies, 'User', 'order:delete', 'Instrument'), undefined);
    assert.equal(planFor(examples.policies, 'User', 'trading', 'Instrument'), undefined);
  });
});

describe('the engine remembering answers', () => {
  const alice = pool.find((e) => e.uid.id === 'alice')!;
  const order = (entities: CedarEntity[], set = examples): boolean =>
    evaluate(set, {
      principal: alice.uid,
      action: 'order:create',
      resource: { type: 'Instrument', id: 'EURUSD' },
      // Within trading hours at the desk: the example step-up policies ask nothing more.
      context: { time: 1767225600, notional: 1_000_000, local_time: 600, local_weekday: 4 },
      entities: [...entities, { uid: { type: 'Instrument', id: 'EURUSD' }, attrs: { instrument_class: 'fx', complex: false }, parents: [] }],
    }).allow;
  const desks = pool.filter((e) => e.uid.type === 'Desk' || e.uid.type === 'LegalEntity');

  test('answers a new version of the policy set by that version', () => {
    const v1 = compile('v1', exampleTexts);
    const v2 = compile('v2', [...exampleTexts, '@id("no-fx") forbid (principal, action, resource is Instrument) when { resource.instrument_class == "fx" };']);
    assert.equal(order([alice, ...desks], v1), true);
    assert.equal(order([alice, ...desks], v2), false);
    assert.equal(order([alice, ...desks], v1), true);
  });

  test('sees a changed entity, the principal or one that slicing leaves out', () => {
    assert.equal(order([alice, ...desks]), true);
    assert.equal(order([{ ...alice, attrs: { ...alice.attrs, kyc_status: 'pending' } }, ...desks]), false);
    // A desk the policies never read, no longer conforming to the schema: the request is refused whole.
    const broken = desks.map((e) => (e.uid.id === 'fx-spot' ? { ...e, attrs: { ...e.attrs, product_classes: 'fx' } } : e));
    assert.equal(order([alice, ...broken]), false);
    assert.equal(order([alice, ...desks]), true);
  });

  test('hands out copies, so a caller changing an answer changes no later one', () => {
    const r: CedarRequest = { principal: alice.uid, action: 'order:cancel', resource: { type: 'Instrument', id: 'EURUSD' }, context: { time: 1 }, entities: [alice, ...desks, { uid: { type: 'Instrument', id: 'EURUSD' }, attrs: { instrument_class: 'fx', complex: false }, parents: [] }] };
    const first = evaluate(examples, r);
    first.reasons.push('tampered');
    first.allow = !first.allow;
    assert.deepEqual(evaluate(examples, r), evaluateWhole(examples, r));
  });
});
