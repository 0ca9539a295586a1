/**
 * Database faults on demand, for tests of what a transaction writes when one of its statements
 * fails: a trigger that refuses every UPDATE of a table (of one column, when named), on SQLite and
 * PostgreSQL alike.
 *
 *   const undo = await failUpdates(ctx.storage, 'users', 'failed_logins');
 *   await assert.rejects(work(), /injected fault/);
 *   await undo();
 */
import { sql } from 'kysely';
import type { Storage } from '../../src/storage/database.ts';
import type { Database } from '../../src/storage/schema.ts';

/** Makes every UPDATE of `table` (of `column`, when named) fail with "injected fault"; resolves the undo. */
export async function failUpdates(storage: Pick<Storage, 'db' | 'dialect'>, table: keyof Database & string, column?: string): Promise<() => Promise<void>> {
  const of = column ? ` of ${column}` : '';
  if (storage.dialect === 'sqlite') {
    await sql.raw(`create trigger injected_fault before update${of} on ${table} begin select raise(abort, 'injected fault'); end`).execute(storage.db);
    return async () => void (await sql.raw('drop trigger injected_fault').execute(storage.db));
  }
  await sql.raw(`create function injected_fault() returns trigger language plpgsql as $$ begin raise exception 'injected fault'; end $$`).execute(storage.db);
  await sql.raw(`create trigger injected_fault before update${of} on ${table} for each row execute function injected_fault()`).execute(storage.db);
  return async () => {
    await sql.raw(`drop trigger injected_fault on ${table}`).execute(storage.db);
    await sql.raw('drop function injected_fault()').execute(storage.db);
  };
}
