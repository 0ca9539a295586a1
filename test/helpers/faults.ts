/**
 * Database faults on demand, for tests of what a transaction writes when one of its statements
 * fails: a trigger that refuses every UPDATE of a table (of one column, when named), on SQLite and
 * PostgreSQL alike.
 *
 *   const undo = await failUpdates(ctx.storage, 'users', 'failed_logins');
 *   await assert.rejects(work(), /injected fault/);
 *   await undo();
 *
 * And, on PostgreSQL, transactions interleaved in a chosen order: `holdUpdates` stops the UPDATEs of
 * a table that meet a condition (their row already locked) until the test lets them go.
 */
import { randomInt } from 'node:crypto';
import { sql } from 'kysely';
import type { Storage } from '../../src/storage/database.ts';
import type { Database } from '../../src/storage/schema.ts';
import { eventually } from './eventually.ts';

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

/** UPDATEs held by `holdUpdates`. */
export interface HeldUpdates {
  /** Resolves with the process id of the first backend whose UPDATE is held. */
  held(): Promise<number>;
  /** Resolves once another backend waits for a lock that backend `pid` holds. */
  blocking(pid: number): Promise<void>;
  /** Lets the held UPDATEs go on (and every later one through). */
  release(): Promise<void>;
  /** Releases, and removes the trigger. */
  undo(): Promise<void>;
}

/**
 * PostgreSQL only: every UPDATE of `table` whose rows meet `when` (a trigger condition over `old`
 * and `new`) waits — the row it updates locked, as a BEFORE trigger runs after the row lock — until
 * `release()`. The wait is an advisory lock the helper holds on a connection of its own.
 */
export async function holdUpdates(storage: Pick<Storage, 'db' | 'dialect'>, table: keyof Database & string, when: string): Promise<HeldUpdates> {
  if (storage.dialect !== 'postgres') throw new Error('holdUpdates needs PostgreSQL');
  const db = storage.db;
  const key = randomInt(1, 2 ** 31 - 1);
  await sql.raw(`create function held_update() returns trigger language plpgsql as $$ begin perform pg_advisory_xact_lock(${key}); return new; end $$`).execute(db);
  await sql.raw(`create trigger held_update before update on ${table} for each row when (${when}) execute function held_update()`).execute(db);
  let letGo!: () => void;
  const released = new Promise<void>((resolve) => (letGo = resolve));
  let locked!: () => void;
  const holding = new Promise<void>((resolve) => (locked = resolve));
  const holder = db.connection().execute(async (connection) => {
    await sql`select pg_advisory_lock(${key})`.execute(connection);
    locked();
    await released;
    await sql`select pg_advisory_unlock(${key})`.execute(connection);
  });
  await holding;
  const release = async () => {
    letGo();
    await holder;
  };
  return {
    held: async () => {
      let pid: number | undefined;
      await eventually(async () => {
        const { rows } = await sql<{ pid: number }>`select pid from pg_locks where locktype = 'advisory' and not granted and classid = 0 and objid = ${key}`.execute(db);
        pid = rows[0]?.pid;
        return pid !== undefined;
      }, 'holdUpdates: an update held');
      return pid!;
    },
    blocking: async (pid) => {
      await eventually(async () => {
        const { rows } = await sql<{ pid: number }>`select pid from pg_stat_activity where ${pid}::int = any(pg_blocking_pids(pid))`.execute(db);
        return rows.length > 0;
      }, `holdUpdates: a backend waiting for ${pid}`);
    },
    release,
    undo: async () => {
      await release();
      await sql.raw(`drop trigger held_update on ${table}`).execute(db);
      await sql.raw('drop function held_update()').execute(db);
    },
  };
}
