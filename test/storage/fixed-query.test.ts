import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { PostgresAdapter } from 'kysely';
import { migrate } from '../../src/storage/database.ts';
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
  }
});

/** Only what `textFor` asks of a database: its adapter. */
function fakeDb(postgres: boolean): Parameters<FixedQuery<unknown>['textFor']>[0] {
  return { getExecutor: () => ({ adapter: postgres ? new PostgresAdapter() : {} }) } as never;
}
