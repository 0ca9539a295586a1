import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CompiledQuery, sql } from 'kysely';
import { migrate, openStorage } from '../../src/storage/database.ts';
import { preparedName, preparedOnPostgres } from '../../src/storage/prepared.ts';
import { testDialects } from '../helpers/storage.ts';

const insert = preparedOnPostgres('insert into jti_replay (key, expires_at) values ($1, $2)');

describe('statements prepared on PostgreSQL', () => {
  test('a registered text has one name; an unregistered one has none', () => {
    assert.match(preparedName(insert) ?? '', /^clearance_\d+$/);
    assert.equal(preparedOnPostgres(insert), insert);
    assert.equal(preparedName('select 1'), undefined);
  });

  for (const dialect of testDialects().filter((d) => d.name === 'postgres')) {
    test('is parsed once per connection and reused; a use that fails leaves the next ones working', async (t) => {
      const database = await dialect.create(t);
      await migrate(database.storage);
      await database.storage.db.connection().execute(async (db) => {
        await db.executeQuery(CompiledQuery.raw(insert, ['a', 1]));
        await assert.rejects(db.executeQuery(CompiledQuery.raw(insert, ['a', 1])), /duplicate key/);
        await db.executeQuery(CompiledQuery.raw(insert, ['b', 1]));
        const { rows } = await sql<{ name: string; statement: string }>`select name, statement from pg_prepared_statements`.execute(db);
        assert.deepEqual(rows, [{ name: preparedName(insert), statement: insert }]);
      });
      const keys = await database.storage.db.selectFrom('jti_replay').select('key').orderBy('key').execute();
      assert.deepEqual(keys.map((k) => k.key), ['a', 'b']);
    });

    test('is sent unnamed when prepared statements are off (behind a pooler that cannot carry them)', async (t) => {
      const database = await dialect.create(t);
      await migrate(database.storage);
      const unprepared = openStorage({ ...database.options, preparedStatements: false });
      t.after(() => unprepared.close());
      await unprepared.db.connection().execute(async (db) => {
        await db.executeQuery(CompiledQuery.raw(insert, ['c', 1]));
        const { rows } = await sql`select name from pg_prepared_statements`.execute(db);
        assert.deepEqual(rows, []);
      });
    });
  }
});
