import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { StoredAuditEvent } from '../../src/audit/events.ts';
import { testContext } from '../helpers/storage.ts';

async function events(ctx: Awaited<ReturnType<typeof testContext>>['ctx']): Promise<StoredAuditEvent[]> {
  const rows = await ctx.storage.db.selectFrom('audit_events').select('event').orderBy('seq').execute();
  return rows.map((r) => JSON.parse(r.event) as StoredAuditEvent);
}

test('the key store records key.created, key.rotated and key.retired', async (t) => {
  const { ctx, clock } = await testContext({ t });
  const [created] = await events(ctx);
  assert.equal(created?.type, 'key.created');
  const first = (await ctx.keys.list())[0]!;
  assert.equal(created?.subject, first.kid);

  const rotated = await ctx.keys.rotate('ES256', 0);
  clock.advance(2 * 3_600_000);
  await ctx.keys.retire(first.kid);
  const types = (await events(ctx)).map((e) => [e.type, e.subject]);
  assert.deepEqual(types, [
    ['key.created', first.kid],
    ['key.rotated', rotated.kid],
    ['key.retired', first.kid],
  ]);
});
