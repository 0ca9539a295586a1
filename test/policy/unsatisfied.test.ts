import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { policyToJson, type PolicyJson } from '@cedar-policy/cedar-wasm/nodejs';
import type { CedarRequest } from '../../src/policy/engine.ts';
import { requestView, unsatisfied } from '../../src/policy/unsatisfied.ts';

function policy(text: string): PolicyJson {
  const answer = policyToJson(text);
  assert.equal(answer.type, 'success');
  return (answer as { json: PolicyJson }).json;
}

const alice = {
  uid: { type: 'User', id: 'alice' },
  attrs: { status: 'active', kyc_status: 'verified', suitability: ['fx'], product_classes: ['fx'], jurisdictions: ['GB'] },
  parents: [{ type: 'Desk', id: 'fx-spot' }],
};
const desk = { uid: { type: 'Desk', id: 'fx-spot' }, attrs: {}, parents: [{ type: 'LegalEntity', id: 'LEI-1' }] };
const eurusd = { uid: { type: 'Instrument', id: 'EURUSD' }, attrs: { instrument_class: 'fx', complex: false }, parents: [] };

function order(context: Record<string, unknown> = {}, entities: unknown[] = [alice, desk, eurusd]): CedarRequest {
  return { principal: alice.uid, action: 'order:create', resource: eurusd.uid, context: { time: 1, ...context }, entities } as CedarRequest;
}

const cannot = (text: string, request = order()) => unsatisfied(policy(text), requestView(request)!);

describe('telling which policies a request cannot satisfy', () => {
  test('leaves out a policy whose scope or first condition is certainly false', () => {
    assert.equal(cannot('permit (principal is Agent, action, resource);'), true);
    assert.equal(cannot('permit (principal, action in Action::"read", resource);'), true);
    assert.equal(cannot('forbid (principal, action, resource) when { resource.instrument_class == "crypto" && principal.status == "active" };'), true);
    assert.equal(cannot('forbid (principal, action, resource) unless { principal.kyc_status == "verified" };'), true);
    assert.equal(cannot('forbid (principal, action, resource) when { context has notional && context.notional >= 80 };', order({ notional: 10 })), true);
  });

  test('compares integers as Cedar does at, below and above the bound, for each comparison', () => {
    const compare = { '<': (a: number, b: number) => a < b, '<=': (a: number, b: number) => a <= b, '>': (a: number, b: number) => a > b, '>=': (a: number, b: number) => a >= b };
    for (const [op, holds] of Object.entries(compare)) {
      for (const notional of [79, 80, 81]) {
        const text = `forbid (principal, action, resource) when { context has notional && context.notional ${op} 80 };`;
        assert.equal(cannot(text, order({ notional })), !holds(notional, 80), `${notional} ${op} 80`);
      }
    }
  });

  test('answers each request afresh with a policy read once', () => {
    // One policy object asked about three requests: what it read of the policy is kept, nothing of a request.
    const once = policy('forbid (principal, action, resource) when { context has notional && context.notional != 80 };');
    const ask = (context: Record<string, unknown>) => unsatisfied(once, requestView(order(context))!);
    assert.deepEqual([ask({ notional: 80 }), ask({ notional: 81 }), ask({}), ask({ notional: 80 })], [true, false, true, true]);
  });

  test('keeps a policy the request satisfies, or may', () => {
    assert.equal(cannot('permit (principal is User, action in Action::"trading", resource) when { principal.product_classes.contains(resource.instrument_class) };'), false);
    // Comparing sets is not read here: cannot tell.
    assert.equal(cannot('forbid (principal, action, resource) when { principal.jurisdictions == ["US"] };'), false);
  });

  test('keeps a policy that may err before anything certainly false, so the error still denies', () => {
    // The principal's entity is missing: reading its status errs in Cedar, before the false part.
    assert.equal(cannot('forbid (principal, action, resource) when { principal.status == "locked" && resource.instrument_class == "crypto" };', order({}, [eurusd])), false);
    // An overflow is not computed here.
    assert.equal(cannot('forbid (principal, action, resource) when { context has notional && context.notional + 9223372036854775807 > 0 && false };', order({ notional: 1 })), false);
  });

  test('follows `in` through every ancestor, written either way Cedar takes a uid', () => {
    const forbid = 'forbid (principal in LegalEntity::"LEI-1", action, resource);';
    assert.equal(cannot(forbid), false);
    const escaped = { ...alice, parents: [{ __entity: { type: 'Desk', id: 'fx-spot' } }] };
    assert.equal(cannot(forbid, order({}, [escaped, desk, eurusd])), false);
    assert.equal(cannot('forbid (principal in LegalEntity::"LEI-2", action, resource);'), true);
  });

  test('treats values of two types as unequal, as Cedar does, and integers it cannot hold exactly as unknown', () => {
    assert.equal(cannot('forbid (principal, action, resource) when { context has notional && context.notional == 5 };', order({ notional: '5' })), true);
    assert.equal(cannot('forbid (principal, action, resource) when { context has notional && context.notional < 5 };', order({ notional: 2 ** 60 })), false);
  });

  test('reads nothing of a request whose entities repeat a uid', () => {
    assert.equal(requestView(order({}, [alice, alice, eurusd])), undefined);
  });
});
