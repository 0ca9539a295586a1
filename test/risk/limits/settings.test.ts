import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { executeApply, planApply } from '../../../src/apply/index.ts';
import { defaultRateLimits, storedRateLimits } from '../../../src/risk/limits/settings.ts';
import { formatProblem } from '../../../src/validation.ts';
import { testContext, testDialects } from '../../helpers/storage.ts';

for (const dialect of testDialects()) {
  describe(`apply's rate_limits on ${dialect.name}`, () => {
    test('refuses what is not a limit, each problem at its path, and writes nothing', async (t) => {
      const { ctx } = await testContext({ t, dialect });
      const { plan, problems } = await planApply(ctx, {
        rate_limits: {
          address: { quota: 0, window: 60 },
          client: { quota: 10 },
          person: 'sometimes',
          endpoint: { quota: 10, window: 100_000, routes: { token: 'off', '/par': { quota: 5, window: 60, burst: 2 } } },
          tenant: { quota: 1, window: 1 },
        },
      });
      assert.equal(plan, undefined);
      assert.deepEqual(problems.map(formatProblem).sort(), [
        'rate_limits.address.quota: must be from 1 to 1000000000',
        'rate_limits.client.window: must be an integer',
        'rate_limits.endpoint.routes./par.burst: is not a recognised field',
        'rate_limits.endpoint.routes.token: is not a route path (starts with /, as the endpoint is registered below the issuer, e.g. /token or /interaction/:id/login)',
        'rate_limits.endpoint.window: must be from 1 to 86400',
        'rate_limits.person: must be { quota, window } or off',
        'rate_limits.tenant: is not a recognised field',
      ].sort());
    });

    test('stores the limits it names, keeps the others, replaces the route list, and says what changed', async (t) => {
      const { ctx, clock } = await testContext({ t, dialect });
      const apply = async (document: Record<string, unknown>) => {
        const { plan, problems } = await planApply(ctx, document);
        assert.ok(plan, problems.map(formatProblem).join('\n'));
        return (await executeApply(ctx, plan, { actor: 'test', via: 'cli' })).changes.filter((c) => c.kind === 'rate_limit');
      };
      const source = storedRateLimits(ctx.storage.db, ctx.clock);
      assert.deepEqual(await source.get(), { limits: defaultRateLimits.limits, routes: new Map() });
      assert.deepEqual(await apply({ rate_limits: { client: { quota: 50, window: 10 }, person: 'off', endpoint: { routes: { '/token': { quota: 7, window: 1 }, '/jwks': 'off' } } } }), [
        { kind: 'rate_limit', id: 'client', outcome: 'created' },
        { kind: 'rate_limit', id: 'person', outcome: 'created' },
        { kind: 'rate_limit', id: 'route:/token', outcome: 'created' },
        { kind: 'rate_limit', id: 'route:/jwks', outcome: 'created' },
      ]);
      // Another process's cache sees it within a second.
      clock.advance(1000);
      const stored = await source.get();
      assert.deepEqual(stored.limits, { ...defaultRateLimits.limits, client: { quota: 50, windowSeconds: 10 }, person: undefined });
      assert.deepEqual([...stored.routes], [['/token', { quota: 7, windowSeconds: 1 }], ['/jwks', undefined]]);

      assert.deepEqual(await apply({ rate_limits: { client: { quota: 50, window: 10 }, endpoint: { quota: 9, window: 9, routes: { '/token': { quota: 8, window: 1 } } } } }), [
        { kind: 'rate_limit', id: 'endpoint', outcome: 'created' },
        { kind: 'rate_limit', id: 'client', outcome: 'unchanged' },
        { kind: 'rate_limit', id: 'route:/token', outcome: 'updated' },
        { kind: 'rate_limit', id: 'route:/jwks', outcome: 'removed' },
      ]);
      clock.advance(1000);
      const again = await source.get();
      assert.deepEqual(again.limits.person, undefined, 'not named: kept');
      assert.deepEqual(again.limits.endpoint, { quota: 9, windowSeconds: 9 });
      assert.deepEqual([...again.routes], [['/token', { quota: 8, windowSeconds: 1 }]]);
      const applied = (await ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', 'config.applied').execute()).map((r) => JSON.parse(r.event));
      assert.ok(applied.at(-1).details.changes.some((c: { kind: string; id: string }) => c.kind === 'rate_limit' && c.id === 'route:/jwks'));
    });
  });
}
