import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { executeApply, planApply } from '../../src/apply/index.ts';
import { acr } from '../../src/identity/acr.ts';
import { minimumAcrFor, requiresPhishingResistant, roleMinimumFor, roleMinimums, upsertRoleMinimums } from '../../src/identity/role-requirements.ts';
import { formatProblem } from '../../src/validation.ts';
import { testContext, testDialects } from '../helpers/storage.ts';

const source = { actor: 'test', via: 'cli' } as const;

describe('role minimums', () => {
  const minimums = new Map([
    ['trader', acr.multiFactor],
    ['approver', acr.phishingResistantHardware],
    ['viewer', acr.password],
  ]);

  test('a person’s minimum is the strongest of their roles’', () => {
    assert.equal(minimumAcrFor(minimums, ['trader']), acr.multiFactor);
    assert.equal(minimumAcrFor(minimums, ['viewer', 'approver', 'trader']), acr.phishingResistantHardware);
    assert.equal(minimumAcrFor(minimums, ['ops']), undefined, 'a role without a minimum asks none');
    assert.equal(minimumAcrFor(minimums, []), undefined);
  });

  test('says whether roles require a phishing-resistant factor', () => {
    assert.equal(requiresPhishingResistant(minimums, ['trader']), false);
    assert.equal(requiresPhishingResistant(minimums, ['trader', 'approver']), true);
    assert.equal(requiresPhishingResistant(new Map([['admin', acr.phishingResistant]]), ['admin']), true);
    assert.equal(requiresPhishingResistant(minimums, []), false);
  });
});

for (const dialect of testDialects()) {
  describe(`apply's authentication section on ${dialect.name}`, () => {
    test('stores role minimums, reports each change, and is idempotent', async (t) => {
      const { ctx } = await testContext({ t, dialect });
      const document = { authentication: { role_minimums: { trader: acr.multiFactor, approver: acr.phishingResistantHardware } } };
      const first = await planApply(ctx, document);
      assert.deepEqual(first.problems, []);
      const applied = await executeApply(ctx, first.plan!, source);
      assert.deepEqual(applied.changes, [
        { kind: 'role_minimum', id: 'approver', outcome: 'created' },
        { kind: 'role_minimum', id: 'trader', outcome: 'created' },
      ]);
      assert.equal(await roleMinimumFor(ctx, ['trader', 'approver']), acr.phishingResistantHardware);

      const again = await executeApply(ctx, (await planApply(ctx, document)).plan!, source);
      assert.ok(again.changes.every((c) => c.outcome === 'unchanged'));

      // Additive: a document naming one role changes that one and keeps the others.
      const raised = await executeApply(ctx, (await planApply(ctx, { authentication: { role_minimums: { trader: acr.phishingResistant } } })).plan!, source);
      assert.deepEqual(raised.changes, [{ kind: 'role_minimum', id: 'trader', outcome: 'updated' }]);
      assert.deepEqual(Object.fromEntries(await roleMinimums(ctx)), { approver: acr.phishingResistantHardware, trader: acr.phishingResistant });
      const [event] = (await ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', 'config.applied').orderBy('seq', 'desc').execute()).map((r) => JSON.parse(r.event));
      assert.deepEqual(event.details.changes, [{ kind: 'role_minimum', id: 'trader', outcome: 'updated' }], 'the change is audited');
    });

    test('a change written by another process is seen within a second', async (t) => {
      const { ctx, clock } = await testContext({ t, dialect });
      assert.equal(await roleMinimumFor(ctx, ['trader']), undefined);
      // Written as another node would: its generation bumped, this process's cache not told.
      await ctx.storage.db.transaction().execute((trx) => upsertRoleMinimums(trx, clock.now(), new Map([['trader', acr.multiFactor]])));
      assert.equal(await roleMinimumFor(ctx, ['trader']), undefined, 'cached for up to a second');
      clock.advance(1001);
      assert.equal(await roleMinimumFor(ctx, ['trader']), acr.multiFactor);
    });
  });
}

describe('validation of the authentication section', () => {
  test('refuses unknown members, role names that are not roles, and levels off the ladder', async (t) => {
    const { ctx } = await testContext({ t });
    const { plan, problems } = await planApply(ctx, {
      authentication: {
        role_minimums: { trader: 'urn:clearance:acr:1fa', Approver: acr.phishingResistant, ops: 'urn:example:gold', desk: 3 },
        step_up: {},
      },
    });
    assert.equal(plan, undefined);
    assert.deepEqual(problems.map(formatProblem).sort(), [
      'authentication.role_minimums.Approver: is not a role name (lowercase a-z0-9_- starting with a letter, as users[].roles)',
      'authentication.role_minimums.desk: must be a non-empty string',
      'authentication.role_minimums.ops: must be a level of the ladder: urn:clearance:acr:pwd, urn:clearance:acr:mfa, urn:clearance:acr:phr or urn:clearance:acr:phrh',
      'authentication.role_minimums.trader: must be a level of the ladder: urn:clearance:acr:pwd, urn:clearance:acr:mfa, urn:clearance:acr:phr or urn:clearance:acr:phrh',
      'authentication.step_up: is not a recognised field',
    ].sort());
  });

  test('refuses a section that is not an object', async (t) => {
    const { ctx } = await testContext({ t });
    const { problems } = await planApply(ctx, { authentication: { role_minimums: ['trader'] } });
    assert.equal(problems.length, 1);
    assert.match(formatProblem(problems[0]!), /^authentication\.role_minimums: must be an object/);
  });
});
