import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { bandedKey, bandOf } from '../../src/policy/bands.ts';
import { compilePolicySet, evaluate, evaluateWhole, formatPolicyProblem, type CedarEntity, type CedarRequest, type CompiledPolicySet } from '../../src/policy/engine.ts';
import { planFor, type Band } from '../../src/policy/slicing.ts';
import { loadTestCases, readPolicySources } from '../../src/policy/testing.ts';
import { answerSources, examplePoliciesDir, outcome } from './fixture.ts';

/**
 * The engine remembers an answer for a context attribute the policies only compare with integer
 * literals or paths into the context by the attribute's band between those bounds
 * (src/policy/bands.ts). Two values in one band must always get the answer Cedar gives each of
 * them on the whole request.
 */

function compile(version: string, texts: string[]): CompiledPolicySet {
  const { set, problems } = compilePolicySet(version, texts.map((text, i) => ({ name: `policies-${i}.cedar`, text })));
  assert.deepEqual(problems.map(formatPolicyProblem), []);
  return set!;
}

const exampleTexts = readPolicySources(examplePoliciesDir).map((s) => s.text);

/** The bands an order of a person for an instrument has under `texts`. */
function orderBands(texts: string[]): Record<string, Band> {
  const set = compile(`bands-${Math.random()}`, texts);
  return Object.fromEntries(planFor(set.policies, 'User', 'order:create', 'Instrument')!.bands);
}

/** Cedar policies with ids. */
const ided = (...texts: string[]) => texts.map((text, i) => `@id("p${i}") ${text}`);

const permitAll = 'permit (principal, action, resource);';

describe('bands of a context attribute', () => {
  test('tell a value below, at and above each bound apart, and nothing else', () => {
    const bounds = [10, 20];
    assert.deepEqual([9, 10, 11, 19, 20, 21, -5, 1e15].map((v) => bandOf(v, bounds)), [0, 1, 2, 2, 3, 4, 0, 4]);
    assert.equal(bandOf(7, []), 0);
  });

  test('key two values of one band alike, and any other difference apart', () => {
    const bands = new Map([['notional', { literals: [1_000_000], paths: [] }]]);
    const call = (context: Record<string, unknown>) => ({ principal: { type: 'User', id: 'alice' }, context, entities: [] });
    const key = (context: Record<string, unknown>) => bandedKey(call(context), bands);
    assert.equal(key({ notional: 5, currency: 'USD' }), key({ notional: 999_999, currency: 'USD' }));
    assert.notEqual(key({ notional: 999_999 }), key({ notional: 1_000_000 }));
    assert.notEqual(key({ notional: 1_000_000 }), key({ notional: 1_000_001 }));
    assert.notEqual(key({ notional: 5, currency: 'USD' }), key({ notional: 5, currency: 'EUR' }));
    // Not a safe integer: remembered only for itself.
    for (const [a, b] of [
      [5, '5'],
      [5, 5.5],
      [5, undefined],
      [5, { notional: 5 }],
      ['5', '6'],
    ] as const) {
      assert.notEqual(key({ notional: a }), key({ notional: b }), `${JSON.stringify(a)} / ${JSON.stringify(b)}`);
    }
    // No bands: the call's JSON, as the engine always keyed it.
    assert.equal(bandedKey(call({ notional: 5 }), new Map()), JSON.stringify(call({ notional: 5 })));
  });

  test('key a value by the bounds that paths into the context hold', () => {
    const bands = new Map([['notional', { literals: [100], paths: [['mandate', 'max_notional']] }]]);
    const key = (notional: number, mandate?: unknown) => bandedKey({ context: { notional, ...(mandate !== undefined ? { mandate } : {}) } }, bands);
    assert.equal(key(20, { max_notional: 50 }), key(49, { max_notional: 50 }));
    assert.notEqual(key(49, { max_notional: 50 }), key(51, { max_notional: 50 }));
    assert.notEqual(key(50, { max_notional: 50 }), key(49, { max_notional: 50 }));
    // The mandate stays in the key: another ceiling is another key.
    assert.notEqual(key(20, { max_notional: 50 }), key(20, { max_notional: 60 }));
    // A ceiling that is no integer bounds nothing (Cedar errs or answers alike for every notional).
    assert.equal(key(20, { max_notional: '50' }), key(99, { max_notional: '50' }));
    assert.equal(key(20), key(99));
    assert.notEqual(key(20), key(101));
  });

  test('are the literals and paths every policy of the shape compares the attribute with', () => {
    const examples = orderBands(exampleTexts).notional!;
    assert.deepEqual(examples.literals, [1_000_000, 2_000_000, 10_000_000, 25_000_000, 30_000_000, 40_000_000, 50_000_000]);
    assert.deepEqual(examples.paths, [['mandate', 'max_notional']]);
    assert.deepEqual(
      orderBands(ided(permitAll, 'forbid (principal, action, resource) when { context has notional && 500 >= context.notional };', 'forbid (principal, action, resource) when { context has notional && (context.notional == 7 || context.notional != 9) };'))
        .notional,
      { literals: [7, 9, 500], paths: [] },
    );
  });

  test('are none when a policy reads the attribute in any other way', () => {
    const others = {
      'against an attribute': 'principal is User && principal has approval_limit && context.notional <= principal.approval_limit',
      'in arithmetic': 'context.notional + 1 > 5',
      'in a set': '[1, 2].contains(context.notional)',
      'against a negated literal': 'context.notional > -(5)',
      'against itself': 'context.notional < context.notional',
      'as a bound of another attribute': 'context has amount && context.amount < context.notional',
      'whole context': 'context.notional > 10 && context == context',
    };
    for (const [name, condition] of Object.entries(others)) {
      const bands = orderBands(ided(permitAll, 'forbid (principal, action, resource) when { context has notional && context.notional > 10 };', `forbid (principal, action, resource) when { context has notional && ${condition} };`));
      assert.equal(bands.notional, undefined, name);
    }
  });

  test('leave out the policies whose scope a request cannot match', () => {
    // Reports compare the notional with a person's limit; orders never reach that policy.
    const set = compile(
      'bands-shapes',
      ided(
        permitAll,
        'forbid (principal, action == Action::"order:create", resource) when { context has notional && context.notional > 10 };',
        'forbid (principal is User, action == Action::"report:view", resource) when { context has notional && principal has approval_limit && context.notional > principal.approval_limit };',
      ),
    );
    assert.deepEqual(planFor(set.policies, 'User', 'order:create', 'Instrument')!.bands.get('notional'), { literals: [10], paths: [] });
    assert.equal(planFor(set.policies, 'User', 'report:view', 'Account')!.bands.get('notional'), undefined);
  });
});

describe('the engine remembering an answer by band', () => {
  const { cases } = loadTestCases(examplePoliciesDir, 1767225600);
  const pool: CedarEntity[] = [...new Map(cases.flatMap((c) => c.request.entities).map((e) => [`${e.uid.type}::${e.uid.id}`, e])).values()];
  const person = (id: string) => pool.find((e) => e.uid.type === 'User' && e.uid.id === id)!;
  const instruments = pool.filter((e) => e.uid.type === 'Instrument');
  const firms = pool.filter((e) => e.uid.type === 'Desk' || e.uid.type === 'LegalEntity');
  const bounds = [1_000_000, 2_000_000, 10_000_000, 25_000_000, 30_000_000, 40_000_000, 50_000_000];
  const near = fc.oneof(
    fc.constantFrom(...bounds, 5_000_000).chain((b) => fc.integer({ min: b - 2, max: b + 2 })),
    fc.integer({ min: 0, max: 60_000_000 }),
    fc.constantFrom<unknown>('1000000', 1_000_000.5, -1),
  );
  const order = fc.record({
    principal: fc.constantFrom('alice', 'bob', 'carol'),
    instrument: fc.constantFrom(...instruments),
    notional: near,
    approvals: fc.constantFrom(undefined, undefined, undefined, 1, 2),
    approved: fc.constantFrom(undefined, undefined, undefined, true),
    // A mandate's ceiling is a bound that the request itself carries.
    mandate: fc.constantFrom(undefined, undefined, { id: 'm-1', version: 1, max_notional: 5_000_000 }, { id: 'm-1', version: 1, max_notional: 1_000_000 }),
  });
  const request = (o: { principal: string; instrument: CedarEntity; notional: unknown; approvals?: number | undefined; approved?: boolean | undefined; mandate?: object | undefined }, time: number): CedarRequest => ({
    principal: person(o.principal).uid,
    action: 'order:create',
    resource: o.instrument.uid,
    context: {
      time,
      notional: o.notional,
      currency: 'USD',
      local_time: 600,
      local_weekday: 4,
      ...(o.approvals !== undefined ? { approvals: o.approvals } : {}),
      ...(o.approved !== undefined ? { approved: o.approved } : {}),
      ...(o.mandate !== undefined ? { mandate: o.mandate } : {}),
    } as CedarRequest['context'],
    entities: [person(o.principal), o.instrument, ...firms],
  });

  test("answers every order as Cedar does on the whole request, a band's other values from memory", async () => {
    const set = compile('bands-examples', exampleTexts);
    const before = (await answerSources()).remembered ?? 0;
    // One time for the whole run: only the notional and approvals tell these orders apart.
    fc.assert(
      fc.property(order, (o) => {
        const r = request(o, 1767225600);
        assert.deepEqual(outcome(evaluate(set, r)), outcome(evaluateWhole(set, r)));
      }),
      { numRuns: 1000, seed: 1401 },
    );
    const remembered = ((await answerSources()).remembered ?? 0) - before;
    // 1,000 orders of 3 people for 5 instruments, in few bands: many answered from memory.
    assert.ok(remembered > 200, `${remembered} of 1,000 remembered`);
  });

  test('never answers an order from a band when the limit is an attribute of the person', async () => {
    const set = compile('bands-attribute-limit', [
      '@id("traders") permit (principal is User, action, resource is Instrument) when { principal.status == "active" };',
      '@id("within-approval-limit") forbid (principal is User, action, resource is Instrument) when { context has notional && (principal has approval_limit && context.notional > principal.approval_limit) };',
      '@id("huge") forbid (principal, action, resource) when { context has notional && context.notional > 90000000 };',
    ]);
    const limited = { ...person('alice'), attrs: { ...person('alice').attrs, approval_limit: 10 } };
    const ask = (notional: number) => {
      const r: CedarRequest = { principal: limited.uid, action: 'order:create', resource: instruments[0]!.uid, context: { time: 1, notional }, entities: [limited, instruments[0]!, ...firms] };
      const answer = evaluate(set, r);
      assert.deepEqual(answer, evaluateWhole(set, r), String(notional));
      return answer.allow;
    };
    assert.deepEqual([5, 11, 10, 12, 9].map(ask), [true, false, true, false, true]);
  });
});
