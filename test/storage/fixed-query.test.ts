import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { PostgresAdapter } from 'kysely';
import { migrate, openStorage } from '../../src/storage/database.ts';
import { FixedQuery } from '../../src/storage/fixed-query.ts';
import { testDialects } from '../helpers/storage.ts';

const expiring = new FixedQuery<{ key: string; expires_at: number | string }>('select key, expires_at from jti_replay where key = ? and expires_at > ? order by key');

describe('a fixed query', () => {
  test('numbers its placeholders for PostgreSQL and keeps them for SQLite', () => {
    const query = new FixedQuery('select 1 from t where a = ? and b = ? and c = ?');
    assert.equal(query.textFor(fakeDb(true)), 'select 1 from t where a = $1 and b = $2 and c = $3');
    assert.equal(query.textFor(fakeDb(false)), 'select 1 from t where a = ? and b = ? and c = ?');
  });

  for (const dialect of testDialects()) {
    test(`reads the rows its values select on ${dialect.name}, as the built query does`, async (t) => {
      const database = await dialect.create(t);
      await migrate(database.storage);
      const db = database.storage.db;
      await db.insertInto('jti_replay').values([{ key: 'a?', expires_at: 10 }, { key: 'b', expires_at: 20 }, { key: 'c', expires_at: 5 }]).execute();
      const built = (key: string, after: number) => db.selectFrom('jti_replay').select(['key', 'expires_at']).where('key', '=', key).where('expires_at', '>', after).orderBy('key').execute();
      for (const [key, after] of [['a?', 1], ['b', 25], ['c', 1], ['none', 0]] as const) {
        assert.deepEqual(await expiring.rows(db, [key, after]), await built(key, after));
      }
      // A question mark in a value is a value: only the text's are placeholders.
      assert.equal((await expiring.first(db, ['a?', 1]))?.key, 'a?');
      assert.equal(await expiring.first(db, ['b', 25]), undefined);
    });

    test(`never reads a row a transaction has not committed on ${dialect.name}`, async (t) => {
      const database = await dialect.create(t);
      await migrate(database.storage);
      const db = database.storage.db;
      for (const outcome of ['commit', 'rollback'] as const) {
        const key = `pending-${outcome}`;
        let committed = false;
        let release!: () => void;
        const held = new Promise<void>((resolve) => (release = resolve));
        let inserted!: () => void;
        const insertedYet = new Promise<void>((resolve) => (inserted = resolve));
        const transaction = db.transaction().execute(async (trx) => {
          await trx.insertInto('jti_replay').values({ key, expires_at: 10 }).execute();
          inserted();
          await held;
          if (outcome === 'rollback') throw new Error('rolled back');
        });
        await insertedYet;
        // Asked while the transaction holds the row: on SQLite the read waits for it to end (one
        // connection), on PostgreSQL it reads on another connection at once.
        const read = expiring.rows(db, [key, 0]).then((rows) => ({ rows, committed }));
        await new Promise((resolve) => setTimeout(resolve, 20));
        release();
        await transaction.then(() => (committed = true), () => undefined);
        const { rows, committed: atRead } = await read;
        if (rows.length > 0) assert.ok(atRead && outcome === 'commit', `${outcome}: the row was read before its transaction committed`);
        assert.equal((await expiring.rows(db, [key, 0])).length, outcome === 'commit' ? 1 : 0);
      }
    });
  }

  test('tells the storage\'s onQuery of each read it runs at once, as Kysely tells of its own', async () => {
    const seen: [string, boolean][] = [];
    const storage = openStorage({ sqlitePath: ':memory:', onQuery: (text, roundTrip) => seen.push([text, roundTrip]) });
    try {
      await migrate(storage);
      seen.length = 0;
      await expiring.rows(storage.db, ['x', 0]);
      assert.deepEqual(seen, [['select key, expires_at from jti_replay where key = ? and expires_at > ? order by key', true]]);
    } finally {
      await storage.close();
    }
  });
});

/** Only what `textFor` asks of a database: its adapter. */
function fakeDb(postgres: boolean): Parameters<FixedQuery<unknown>['textFor']>[0] {
  return { getExecutor: () => ({ adapter: postgres ? new PostgresAdapter() : {} }) } as never;
}
