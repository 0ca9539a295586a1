import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { planApply } from '../../src/apply/index.ts';
import { ManualClock } from '../../src/clock.ts';
import { PolicyActivationError, PolicyStore } from '../../src/policy/store.ts';
import { formatProblem } from '../../src/validation.ts';
import { testContext, testDialects } from '../helpers/storage.ts';
import { applyDocument, examplePolicyText } from './fixture.ts';
import { migrate } from '../../src/storage/database.ts';

const permitAll = `@id("permit-all")\npermit (principal, action, resource);\n`;
const permitNone = `@id("permit-agents")\npermit (principal is Agent, action, resource);\n`;

describe('policy set versions', () => {
  test('stores a version from apply, idempotently, and lists it inactive', async (t) => {
    const { ctx } = await testContext({ t });
    const entry = { version: '2026-01.1', text: examplePolicyText(), change_ref: 'https://git.example/pr/14', author: 'alice' };
    const { plan } = await planApply(ctx, { policies: [entry] });
    assert.ok(plan);
    await applyDocument(ctx, { policies: [entry] });
    const again = await planApply(ctx, { policies: [entry] });
    assert.deepEqual(again.problems, []);
    const listed = await ctx.policies.list();
    assert.deepEqual(listed.map((p) => [p.version, p.active, p.author, p.approver]), [['2026-01.1', false, 'alice', null]]);
    assert.deepEqual(await ctx.policies.active(), { set: null, version: null, error: 'no policy set is active' });
  });

  test('refuses invalid policy text with the line and column in the path-addressed problem', async (t) => {
    const { ctx } = await testContext({ t });
    const text = `@id("limit")\nforbid (principal, action, resource)\n  when { context.notional > 5 };\n`;
    const { plan, problems } = await planApply(ctx, {
      policies: [
        { version: 'v1', text, change_ref: 'CHG-1', author: 'alice' },
        { version: 'v 2', text: permitAll, change_ref: 'CHG-2', author: 'alice', active: true },
        { version: 'v3', text: permitAll, change_ref: 'CHG-3', author: 'alice', approver: 'Alice ', active: true },
      ],
    });
    assert.equal(plan, undefined);
    assert.deepEqual(problems.map(formatProblem), [
      'policies[0].text: line 3, column 10: policy "limit": unable to guarantee safety of access to optional attribute `notional` in context (try testing for the attribute\'s presence with `context has notional && ..`)',
      'policies[1].version: must be 1–64 letters, digits and . _ - (e.g. 2025-06-01.1)',
      'policies[1].approver: is required to activate a policy set (active: true)',
      'policies[2].approver: must not be the author: a policy set is activated by a second person',
    ]);
  });

  test('never changes a stored version', async (t) => {
    const { ctx } = await testContext({ t });
    await applyDocument(ctx, { policies: [{ version: 'v1', text: permitAll, change_ref: 'CHG-1', author: 'alice' }] });
    const { problems } = await planApply(ctx, { policies: [{ version: 'v1', text: permitNone, change_ref: 'CHG-1', author: 'alice' }] });
    assert.deepEqual(problems.map(formatProblem), ['policies[0].text: version "v1" is stored with another text; a version never changes: use a new version']);
  });

  test('activation requires an approver who is not the author', async (t) => {
    const { ctx } = await testContext({ t });
    await applyDocument(ctx, { policies: [{ version: 'v1', text: permitAll, change_ref: 'CHG-1', author: 'alice' }] });
    const activate = (approver: string) => ctx.audit.recordWith(async (trx) => ({ value: await ctx.policies.activate(trx, 'v1', approver, 'test'), events: [] }));
    await assert.rejects(activate('alice'), PolicyActivationError);
    await assert.rejects(activate(' ALICE '), /must not be the author/);
    await assert.rejects(activate(''), /approver is required/);
    await assert.rejects(ctx.audit.recordWith(async (trx) => ({ value: await ctx.policies.activate(trx, 'v9', 'bob', 'test'), events: [] })), /no policy set version v9/);
    assert.equal((await ctx.policies.list())[0]!.active, false);
    await activate('bob');
    const [v1] = await ctx.policies.list();
    assert.equal(v1!.active, true);
    assert.equal(v1!.approver, 'bob');
  });

  test('keeps exactly one version active', async (t) => {
    const { ctx } = await testContext({ t });
    await applyDocument(ctx, { policies: [{ version: 'v1', text: permitAll, change_ref: 'CHG-1', author: 'alice', approver: 'bob', active: true }] });
    await applyDocument(ctx, { policies: [{ version: 'v2', text: permitNone, change_ref: 'CHG-2', author: 'carol', approver: 'bob', active: true }] });
    assert.deepEqual((await ctx.policies.list()).map((p) => [p.version, p.active]), [['v1', false], ['v2', true]]);
    // Two activations in one document are refused.
    const { problems } = await planApply(ctx, {
      policies: [
        { version: 'v3', text: permitAll, change_ref: 'CHG-3', author: 'carol', approver: 'bob', active: true },
        { version: 'v4', text: permitAll, change_ref: 'CHG-4', author: 'carol', approver: 'bob', active: true },
      ],
    });
    assert.deepEqual(problems.map(formatProblem), ['policies[1].active: only one policy set can be activated; policies[0] is activated too']);
    // The database refuses a second active row whoever writes it.
    await assert.rejects(ctx.storage.db.updateTable('policy_sets').set({ active: 1 }).where('version', '=', 'v1').execute());
  });

  test('records the activation as a policy.activated audit event', async (t) => {
    const { ctx } = await testContext({ t });
    await applyDocument(ctx, { policies: [{ version: 'v1', text: permitAll, change_ref: 'CHG-1', author: 'alice', approver: 'bob', active: true }] }, 'cli:ops');
    const rows = await ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', 'policy.activated').execute();
    assert.equal(rows.length, 1);
    const event = JSON.parse(rows[0]!.event);
    assert.equal(event.actor, 'cli:ops');
    assert.deepEqual(event.details, { version: 'v1', author: 'alice', approver: 'bob', change_ref: 'CHG-1', previous: null });
  });

  test('serves a new activation at once in-process', async (t) => {
    const { ctx } = await testContext({ t });
    await applyDocument(ctx, {
      policies: [
        { version: 'v1', text: permitAll, change_ref: 'CHG-1', author: 'alice', approver: 'bob', active: true },
        { version: 'v2', text: permitNone, change_ref: 'CHG-2', author: 'alice' },
      ],
    });
    assert.equal(((await ctx.policies.active()) as { set: { version: string } }).set.version, 'v1');
    await ctx.audit.recordWith(async (trx) => ({ value: await ctx.policies.activate(trx, 'v2', 'bob', 'test'), events: [] }));
    ctx.policies.invalidate();
    assert.equal(((await ctx.policies.active()) as { set: { version: string } }).set.version, 'v2');
  });

  for (const dialect of testDialects()) {
    test(`serves an activation made by another process within the check interval on ${dialect.name}`, async (t) => {
      const database = await dialect.create(t);
      await migrate(database.storage);
      const clock = new ManualClock();
      const server = new PolicyStore(database.storage.db, clock, { checkEveryMs: 1000 });
      const cliStorage = database.connect();
      const cli = new PolicyStore(cliStorage.db, clock);
      const insert = (version: string, text: string, approve: boolean) =>
        cliStorage.db.transaction().execute(async (trx) => {
          await cli.upsert(trx, { version, text, change_ref: 'CHG', author: 'alice', ...(approve ? { approver: 'bob', active: true } : {}) }, 'cli');
        });
      await insert('v1', permitAll, true);
      assert.equal(((await server.active()) as { set: { version: string } }).set.version, 'v1');
      await insert('v2', permitNone, true);
      // Within the interval the cached version may still be served...
      clock.advance(999);
      assert.equal(((await server.active()) as { set: { version: string } }).set.version, 'v1');
      // ...never after it.
      clock.advance(1);
      assert.equal(((await server.active()) as { set: { version: string } }).set.version, 'v2');
    });
  }
});
