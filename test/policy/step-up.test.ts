import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { acr } from '../../src/identity/acr.ts';
import { localClock } from '../../src/policy/desk-time.ts';
import { compilePolicySet, evaluate, formatPolicyProblem, type CedarRequest, type CompiledPolicySet } from '../../src/policy/engine.ts';
import { stepUpOf, withDerivedAuthentication } from '../../src/policy/step-up.ts';

const permitAll = '@id("all") permit (principal, action, resource);';
const passkeyForLarge = `@id("large") @step_up("${acr.phishingResistant}")
forbid (principal, action == Action::"order:create", resource is Instrument)
when { context has notional && context.notional > 1000 }
unless { context has acr_levels && context.acr_levels.contains("${acr.phishingResistant}") };`;
const secondFactorFresh = `@id("fresh") @step_up("${acr.multiFactor}") @step_up_max_age("300")
forbid (principal, action == Action::"order:create", resource)
unless { context has acr_levels && context.acr_levels.contains("${acr.multiFactor}") && context has auth_age && context.auth_age <= 300 };`;

function compile(...texts: string[]): CompiledPolicySet {
  const { set, problems } = compilePolicySet(`t-${texts.join('').length}-${Math.random()}`, [{ name: 'p.cedar', text: texts.join('\n') }]);
  assert.deepEqual(problems.map(formatPolicyProblem), []);
  return set!;
}

function order(context: Record<string, unknown>, principal = { type: 'User', id: 'u1' }): CedarRequest {
  return {
    principal,
    action: 'order:create',
    resource: { type: 'Instrument', id: 'EURUSD' },
    context: withDerivedAuthentication({ time: 10_000, ...context } as CedarRequest['context']),
    entities: [
      { uid: principal, attrs: principal.type === 'User' ? { status: 'active', kyc_status: 'verified', suitability: [], product_classes: [], jurisdictions: [] } : { kind: 'agent' }, parents: [] },
      { uid: { type: 'Instrument', id: 'EURUSD' }, attrs: { instrument_class: 'fx', complex: false }, parents: [] },
    ],
  };
}

const decide = (set: CompiledPolicySet, request: CedarRequest) => {
  const evaluation = evaluate(set, request);
  return { ...evaluation, stepUp: stepUpOf(set, request, evaluation, evaluate) };
};

describe('step-up annotations', () => {
  test('are checked when the set is compiled', () => {
    const problems = (text: string) => compilePolicySet(`bad-${Math.random()}`, [{ name: 'p.cedar', text }]).problems.map((p) => p.message);
    assert.match(problems(`@id("a") @step_up("${acr.phishingResistant}") permit (principal, action, resource);`).join(), /belongs on a forbid/);
    assert.match(problems('@id("a") @step_up("urn:example:gold") forbid (principal, action, resource);').join(), /must name a level of the ladder/);
    assert.match(problems('@id("a") @step_up("urn:clearance:acr:1fa") forbid (principal, action, resource);').join(), /must name a level of the ladder/);
    assert.match(problems('@id("a") @step_up forbid (principal, action, resource);').join(), /must name a level of the ladder/);
    assert.match(problems('@id("a") @step_up_max_age("60") forbid (principal, action, resource);').join(), /needs a @step_up/);
    assert.match(problems(`@id("a") @step_up("${acr.multiFactor}") @step_up_max_age("-1") forbid (principal, action, resource);`).join(), /number of seconds/);
    const set = compile(permitAll, passkeyForLarge, secondFactorFresh);
    assert.deepEqual(Object.fromEntries(set.stepUps), { large: { acr: acr.phishingResistant }, fresh: { acr: acr.multiFactor, maxAge: 300 } });
  });
});

describe('a step-up decision', () => {
  const set = compile(permitAll, passkeyForLarge);

  test('is a deny carrying the level, below it; no deny at or above it', () => {
    const below = decide(set, order({ notional: 5000, acr: acr.multiFactor }));
    assert.equal(below.allow, false);
    assert.deepEqual(below.reasons, ['large']);
    assert.deepEqual(below.stepUp, { acr: acr.phishingResistant, policies: ['large'] });
    for (const level of [acr.phishingResistant, acr.phishingResistantHardware]) assert.equal(decide(set, order({ notional: 5000, acr: level })).allow, true);
    assert.equal(decide(set, order({ notional: 5000 })).stepUp?.acr, acr.phishingResistant, 'no acr at all: the same step-up');
  });

  test('asks the strongest level and the shortest max age of several', () => {
    const both = compile(permitAll, passkeyForLarge, secondFactorFresh);
    const decision = decide(both, order({ notional: 5000, acr: acr.password, auth_time: 9000 }));
    assert.deepEqual(decision.stepUp, { acr: acr.phishingResistant, maxAge: 300, policies: ['fresh', 'large'] });
    assert.deepEqual(decide(both, order({ notional: 5, acr: acr.multiFactor, auth_time: 9000 })).stepUp, { acr: acr.multiFactor, maxAge: 300, policies: ['fresh'] }, 'too old an authentication');
    assert.equal(decide(both, order({ notional: 5, acr: acr.multiFactor, auth_time: 9800 })).allow, true);
  });

  test('is a plain deny when a forbid without @step_up fires too', () => {
    const withLimit = compile(permitAll, passkeyForLarge, '@id("limit") forbid (principal, action, resource) when { context has notional && context.notional > 9000 };');
    const decision = decide(withLimit, order({ notional: 10_000, acr: acr.multiFactor }));
    assert.equal(decision.allow, false);
    assert.deepEqual(decision.reasons, ['large', 'limit']);
    assert.equal(decision.stepUp, undefined);
  });

  test('is a plain deny when no permit would allow the request at that level', () => {
    const noPermit = compile(passkeyForLarge);
    assert.equal(decide(noPermit, order({ notional: 5000, acr: acr.multiFactor })).stepUp, undefined);
  });

  test('is a plain deny when the forbid does not depend on the authentication (no loop)', () => {
    const careless = compile(permitAll, `@id("careless") @step_up("${acr.phishingResistant}") forbid (principal, action, resource) when { context has notional && context.notional > 1000 };`);
    const decision = decide(careless, order({ notional: 5000, acr: acr.multiFactor }));
    assert.equal(decision.allow, false);
    assert.equal(decision.stepUp, undefined);
  });

  test('is for people only: an agent gets a plain deny', () => {
    const decision = decide(set, order({ notional: 5000 }, { type: 'Agent', id: 'algo' }));
    assert.equal(decision.allow, false);
    assert.equal(decision.stepUp, undefined);
  });

  test('is a plain deny when evaluation errs', () => {
    const erring = compile(permitAll, passkeyForLarge, `@id("overflow") forbid (principal, action, resource) when { context has notional && context.notional * 9223372036854775807 > 0 };`);
    const decision = decide(erring, order({ notional: 5000, acr: acr.multiFactor }));
    assert.equal(decision.allow, false);
    assert.ok(decision.errors.length > 0);
    assert.equal(decision.stepUp, undefined);
  });
});

describe('the authentication context Clearance derives', () => {
  test('acr_levels and auth_age come from acr and auth_time, never from the caller', () => {
    assert.deepEqual(withDerivedAuthentication({ time: 1000, acr: acr.multiFactor, auth_time: 400, acr_levels: [acr.phishingResistantHardware], auth_age: 0 }), {
      time: 1000,
      acr: acr.multiFactor,
      auth_time: 400,
      acr_levels: [acr.password, acr.multiFactor],
      auth_age: 600,
    });
    assert.deepEqual(withDerivedAuthentication({ time: 1000, acr: 'urn:example:gold', acr_levels: [acr.phishingResistant] }), { time: 1000, acr: 'urn:example:gold', acr_levels: [] });
    assert.deepEqual(withDerivedAuthentication({ time: 1000, auth_time: 2000 }).auth_age, 0, 'never negative');
  });

  test('the local clock of a desk follows its time zone and summer time', () => {
    // Thursday 1 January 2026, 09:00 UTC.
    assert.deepEqual(localClock('Europe/London', Date.UTC(2026, 0, 1, 9, 0)), { minutes: 540, weekday: 4 });
    assert.deepEqual(localClock('America/New_York', Date.UTC(2026, 0, 1, 9, 0)), { minutes: 240, weekday: 4 });
    assert.deepEqual(localClock('Asia/Tokyo', Date.UTC(2026, 0, 1, 20, 30)), { minutes: 330, weekday: 5 });
    // Wednesday 1 July 2026, 17:30 UTC: 18:30 in London (BST).
    assert.deepEqual(localClock('Europe/London', Date.UTC(2026, 6, 1, 17, 30)), { minutes: 1110, weekday: 3 });
    assert.equal(localClock('Not/AZone', 0), undefined);
  });
});
