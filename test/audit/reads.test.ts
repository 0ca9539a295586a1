import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { countPeople } from '../../src/audit/reads.ts';
import { upsertUser } from '../../src/identity/users.ts';
import { testContext, testDialects } from '../helpers/storage.ts';

for (const dialect of testDialects()) {
  describe(`counting the people an answer names on ${dialect.name}`, () => {
    test('counts each person of the directory once, by id or by username, and no one else', async (t) => {
      const { ctx } = await testContext({ t, dialect });
      const add = (username: string) => ctx.storage.db.transaction().execute(async (trx) => (await upsertUser(trx, ctx.clock.now(), { username }, { keep: true })).id);
      const ana = await add('ana');
      const bo = await add('bo');
      await add('cy');
      assert.equal(await countPeople(ctx, {}), 0);
      // ana by id and by username is one person; a key id, an account name, a too-long id are no one.
      assert.equal(await countPeople(ctx, { ids: [ana, ana, bo, 'kid-2026-01', 'x'.repeat(65)], usernames: ['ana', 'bg-orders'] }), 2);
      assert.equal(await countPeople(ctx, { usernames: ['cy'] }), 1);
      // Past one chunk of candidates (500), the people at its end are still counted.
      const many = [...Array.from({ length: 600 }, (_, i) => `not-a-user-${i}`), ana];
      assert.equal(await countPeople(ctx, { ids: many, usernames: [...many, 'cy'] }), 2);
    });
  });
}
