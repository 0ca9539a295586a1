import assert from 'node:assert/strict';
import { sql, type Kysely, type Transaction } from 'kysely';
import type { Database } from '../../src/storage/schema.ts';

/**
 * PostgreSQL lock races, made deterministic: a test holds a lock in a transaction of its own, starts
 * the transactions it races one after the other, and waits until each waits on the holder or on one
 * started before it (`nextWaiter`). Only the holder's chain is counted, so tests running at the same
 * time on the same server (other files, other helpers' runs) do not count.
 */

/** The server process of `trx`'s connection. */
export async function backendPid(trx: Transaction<Database>): Promise<number> {
  return (await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(trx)).rows[0]!.pid;
}

/** The pid of a backend, not one of `known`, that waits on one of `known`; fails after ~5 s. */
export async function nextWaiter(db: Kysely<Database>, known: readonly number[]): Promise<number> {
  for (let i = 0; i <= 500; i++) {
    const { rows } = await sql<{ pid: number }>`select pid from pg_stat_activity where pg_blocking_pids(pid) && ${known}::int[] and not (pid = any(${known}::int[]))`.execute(db);
    if (rows.length > 0) return rows[0]!.pid;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  assert.fail(`nothing waited on ${known.join(', ')}`);
}
