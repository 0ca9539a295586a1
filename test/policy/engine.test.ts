import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { compilePolicySet, evaluate, formatPolicyProblem, splitPolicies, type CedarRequest } from '../../src/policy/engine.ts';
import { policyActions } from '../../src/policy/schema.ts';

const alice = {
  uid: { type: 'User', id: 'alice' },
  attrs: { status: 'active', kyc_status: 'verified', suitability: ['fx'], product_classes: ['fx'], jurisdictions: ['GB'] },
  parents: [{ type: 'Desk', id: 'fx-spot' }],
};
const desk = {
  uid: { type: 'Desk', id: 'fx-spot' },
  attrs: { legal_entity: { __entity: { type: 'LegalEntity', id: '5493001KJTIIGC8Y1R12' } }, jurisdiction: 'GB', product_classes: ['fx'] },
  parents: [],
};
const eurusd = { uid: { type: 'Instrument', id: 'EURUSD' }, attrs: { instrument_class: 'fx', complex: false }, parents: [] };

function order(context: Record<string, unknown> = {}): CedarRequest {
  return {
    principal: { type: 'User', id: 'alice' },
    action: 'order:create',
    resource: { type: 'Instrument', id: 'EURUSD' },
    context: { time: 1767225600, ...context } as CedarRequest['context'],
    entities: [alice, desk, eurusd] as CedarRequest['entities'],
  };
}

const permitFx = `@id("permit-fx")
permit (principal is User, action in Action::"trading", resource is Instrument)
when { principal.product_classes.contains(resource.instrument_class) };
`;

function compile(text: string, version = 'test') {
  const compiled = compilePolicySet(version, [{ name: 'policies.cedar', text }]);
  assert.deepEqual(compiled.problems.map(formatPolicyProblem), []);
  return compiled.set!;
}

describe('the policy engine', () => {
  test('denies by default when no policy permits', () => {
    const set = compile(`@id("nothing-for-agents") permit (principal is Agent, action, resource);`);
    assert.deepEqual(evaluate(set, order({ notional: 5 })), { allow: false, reasons: [], errors: [] });
  });

  test('allows with the permitting policy as the reason', () => {
    const set = compile(permitFx);
    assert.deepEqual(evaluate(set, order({ notional: 5 })), { allow: true, reasons: ['permit-fx'], errors: [] });
  });

  test('lets a forbid win over a permit and names the forbid', () => {
    const set = compile(`${permitFx}
@id("fx-limit")
forbid (principal in Desk::"fx-spot", action == Action::"order:create", resource)
when { context has notional && context.notional > 100 };`);
    assert.deepEqual(evaluate(set, order({ notional: 101 })), { allow: false, reasons: ['fx-limit'], errors: [] });
    assert.equal(evaluate(set, order({ notional: 100 })).allow, true);
  });

  test('denies when a policy errs, although Cedar skips the erring forbid and allows', () => {
    // The forbid overflows (an evaluation error): Cedar ignores it and the permit allows.
    const set = compile(`${permitFx}
@id("overflowing-forbid")
forbid (principal, action, resource) when { context has notional && context.notional + 9223372036854775807 > 0 };`);
    const result = evaluate(set, order({ notional: 1 }));
    assert.equal(result.allow, false);
    assert.deepEqual(result.reasons, ['permit-fx'], 'Cedar itself decided allow');
    assert.equal(result.errors.length, 1);
    assert.match(result.errors[0]!, /overflowing-forbid.*overflow/);
    // Without the overflow the same request is allowed.
    assert.equal(evaluate(set, order({})).allow, true);
  });

  test('denies a request the schema refuses: unknown action, unknown or mistyped context, non-conforming entity', () => {
    const set = compile(permitFx);
    assert.equal(evaluate(set, { ...order(), action: 'order:delete' }).allow, false);
    assert.match(evaluate(set, { ...order(), action: 'order:delete' }).errors[0]!, /order:delete/);
    assert.equal(evaluate(set, order({ colour: 'red' })).allow, false);
    assert.equal(evaluate(set, order({ notional: 'lots' })).allow, false);
    const badAlice = { ...alice, attrs: { ...alice.attrs, kyc_status: 5 } };
    const result = evaluate(set, { ...order(), entities: [badAlice, desk, eurusd] as CedarRequest['entities'] });
    assert.equal(result.allow, false);
    assert.ok(result.errors.length > 0);
  });

  test('denies when an entity the policy reads is missing from the request', () => {
    const set = compile(permitFx);
    const result = evaluate(set, { ...order(), entities: [desk, eurusd] as CedarRequest['entities'] });
    assert.equal(result.allow, false);
    assert.ok(result.errors.length > 0);
  });

  test('reports parse and schema problems with file, line and column', () => {
    const text = `// limits
@id("ok")
permit (principal, action, resource);

@id("reads-optional")
forbid (principal, action, resource)
  when { context.notional > 5 };
`;
    const compiled = compilePolicySet('bad', [{ name: 'limits.cedar', text }]);
    assert.equal(compiled.set, undefined);
    assert.deepEqual(compiled.problems.map((p) => [p.source, p.line, p.column, p.policyId]), [['limits.cedar', 7, 10, 'reads-optional']]);
    assert.match(compiled.problems[0]!.message, /optional attribute `notional`/);

    const syntax = compilePolicySet('bad', [{ name: 'a.cedar', text: `@id("a") permit (principal, action, resource);\n@id("b")\npermit (principal, action, resource) when { context. };` }]);
    assert.deepEqual(syntax.problems.map((p) => [p.line, p.column]), [[3, 54]]);
    assert.match(formatPolicyProblem(syntax.problems[0]!), /^a\.cedar:3:54: /);
  });

  test('requires a unique @id on every policy', () => {
    const compiled = compilePolicySet('ids', [
      { name: 'a.cedar', text: `@id("x") permit (principal, action, resource);\npermit (principal, action, resource);` },
      { name: 'b.cedar', text: `\n\n@id("x") forbid (principal, action, resource);` },
    ]);
    assert.deepEqual(compiled.problems.map(formatPolicyProblem), [
      'a.cedar:2:1: has no @id("...") annotation; every policy needs a unique id',
      'b.cedar:3:1: @id "x" is also used at a.cedar:1:1',
    ]);
  });

  test('lets a later layer replace a policy by id (a candidate overlay)', () => {
    const base = `${permitFx}\n@id("limit") forbid (principal, action, resource) when { context has notional && context.notional > 100 };`;
    const lower = `@id("limit") forbid (principal, action, resource) when { context has notional && context.notional > 10 };`;
    const set = compilePolicySet('overlay', [
      { name: 'base.cedar', text: base, layer: 0 },
      { name: 'lower.cedar', text: lower, layer: 1 },
    ]).set!;
    assert.deepEqual(set.policyIds, ['permit-fx', 'limit']);
    assert.deepEqual(evaluate(set, order({ notional: 50 })), { allow: false, reasons: ['limit'], errors: [] });
  });

  test('splits policies at semicolons outside strings and comments', () => {
    const chunks = splitPolicies({ name: 'x', text: `// a; comment\n@id("a;b") permit (principal, action, resource) when { "x;y" == "x;y" };\n// tail; only` });
    assert.equal(chunks.length, 1);
    assert.match(chunks[0]!.text, /"x;y" == "x;y" };$/);
  });

  test('knows every scope of the vocabulary as an action', () => {
    const set = compile(`@id("all") permit (principal, action, resource);`);
    for (const action of policyActions) assert.equal(evaluate(set, { ...order(), action }).allow, true, action);
  });
});
