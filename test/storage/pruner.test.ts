import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { migrate } from '../../src/storage/database.ts';
import { deleteExpired, pruneChunkRows } from '../../src/storage/pruner.ts';
import { testDialects } from '../helpers/storage.ts';

const replay = { table: 'jti_replay', key: 'key', expiresBy: 'expires_at' } as const;

/**
 * Counts the event loop's turns until `stop()`. A check-phase callback runs only when the loop
 * turns, and node:sqlite answers synchronously: without a yield between statements a whole prune
 * runs before the first one.
 */
function countTurns(): { stop(): number } {
  let turns = 0;
  let done = false;
  const tick = () => {
    turns++;
    if (!done) setImmediate(tick);
  };
  setImmediate(tick);
  return {
    stop() {
      done = true;
      return turns;
    },
  };
}

for (const dialect of testDialects()) {
  describe(`pruning expired rows on ${dialect.name}`, () => {
    test('deletes every row that expired before the time (on SQLite in several statements) and keeps the rest', async (t) => {
      const { storage } = await dialect.create(t);
      await migrate(storage);
      const expired = 3 * pruneChunkRows + 17;
      const rows = [
        ...Array.from({ length: expired }, (_, i) => ({ key: `old-${i}`, expires_at: 1_000 + i })),
        { key: 'at-the-time', expires_at: 5_000 },
        ...Array.from({ length: 40 }, (_, i) => ({ key: `live-${i}`, expires_at: 9_000 + i })),
      ];
      for (let i = 0; i < rows.length; i += 200) await storage.db.insertInto('jti_replay').values(rows.slice(i, i + 200)).execute();

      assert.equal(await deleteExpired(storage.db, replay, 5_000), expired);
      const left = await storage.db.selectFrom('jti_replay').select('key').orderBy('key').execute();
      assert.deepEqual(
        left.map((r) => r.key),
        ['at-the-time', ...Array.from({ length: 40 }, (_, i) => `live-${i}`)].sort(),
        'a row expiring exactly at the time is kept unless the prune is inclusive',
      );
      assert.equal(await deleteExpired(storage.db, replay, 5_000, { inclusive: true }), 1);
      assert.equal(await deleteExpired(storage.db, replay, 5_000, { inclusive: true }), 0);
    });

    test('deletes in statements of the size a table asks for', { skip: dialect.name !== 'sqlite' && 'PostgreSQL deletes in one statement' }, async (t) => {
      const { storage } = await dialect.create(t);
      await migrate(storage);
      await storage.db.insertInto('jti_replay').values(Array.from({ length: 30 }, (_, i) => ({ key: `old-${i}`, expires_at: 1_000 }))).execute();
      const turns = countTurns();
      assert.equal(await deleteExpired(storage.db, replay, 2_000, { rowsPerStatement: 7 }), 30);
      assert.ok(turns.stop() >= 4, 'five statements of at most 7 rows, the loop turning between them');
      assert.equal(Number((await storage.db.selectFrom('jti_replay').select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow()).n), 0);
    });

    test('lets the event loop turn between statements on SQLite, so a large backlog never holds it for long', { skip: dialect.name !== 'sqlite' && 'PostgreSQL deletes in one statement, on the database server' }, async (t) => {
      const { storage } = await dialect.create(t);
      await migrate(storage);
      const chunks = 6;
      const rows = Array.from({ length: chunks * pruneChunkRows }, (_, i) => ({ key: `old-${i}`, expires_at: 1_000 }));
      for (let i = 0; i < rows.length; i += 200) await storage.db.insertInto('jti_replay').values(rows.slice(i, i + 200)).execute();

      const turns = countTurns();
      const deleted = await deleteExpired(storage.db, replay, 2_000);
      const turned = turns.stop();
      assert.equal(deleted, chunks * pruneChunkRows);
      assert.ok(turned >= chunks, `the loop turned ${turned} times during ${chunks + 1} statements`);
    });
  });
}
