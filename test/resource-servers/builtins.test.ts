/**
 * The built-in resource servers (src/resource-servers/builtins.ts), seeded on every start: nodes
 * starting at once on a fresh database must all start.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { builtinResourceServers, seedBuiltins } from '../../src/resource-servers/builtins.ts';
import { testContext, testDialects } from '../helpers/storage.ts';

for (const dialect of testDialects()) {
  describe(`the built-in resource servers on ${dialect.name}`, () => {
    test('are seeded by starts racing on a database that has none: every start succeeds, each server once', async (t) => {
      const { ctx } = await testContext({ t, dialect });
      await ctx.storage.db.deleteFrom('resource_servers').execute();
      // Each seed reads none, then inserts (on PostgreSQL each in a transaction of its own).
      await Promise.all([seedBuiltins(ctx), seedBuiltins(ctx), seedBuiltins(ctx)]);
      const stored = (await ctx.storage.db.selectFrom('resource_servers').select('identifier').execute()).map((r) => r.identifier).sort();
      assert.deepEqual(stored, builtinResourceServers(ctx.config.issuer).map((s) => s.identifier).sort());
    });
  });
}
