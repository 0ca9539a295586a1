import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { sql, type Kysely } from 'kysely';
import { isPostgres } from '../audit/dialect.ts';
import { withinSpan, type Clock } from '../clock.ts';
import type { Database } from './schema.ts';

/**
 * Opportunistic pruning of a table of expiring rows (the jti replay cache, reference tokens): at
 * most once per interval, started by the store's own traffic and run off the request's path. A
 * failure is forgotten: the next interval tries again.
 */
export class IntervalPruner {
  readonly #everyMs: number;
  readonly #prune: (now: number) => Promise<unknown>;
  #last: number;
  #running: Promise<unknown> | undefined;

  constructor(clock: Clock, everyMs: number, prune: (now: number) => Promise<unknown>) {
    this.#everyMs = everyMs;
    this.#prune = prune;
    this.#last = clock.now();
  }

  /** Starts a prune when the interval has passed and none is running. */
  maybe(now: number): void {
    if (this.#running || withinSpan(now, this.#last, this.#everyMs)) return;
    this.#last = now;
    this.#running = this.#prune(now)
      .catch(() => undefined)
      .finally(() => (this.#running = undefined));
  }

  /** Resolves when a prune in progress has finished (tests and shutdown). */
  async settled(): Promise<void> {
    await this.#running;
  }
}

/**
 * Rows one pruning statement deletes at most on SQLite. A minute's backlog of a busy token
 * endpoint is about 150,000 expired replay rows: deleted by one statement, they held SQLite, and
 * so the server's event loop (node:sqlite is synchronous), for 250-800 ms on the development VM;
 * 256 at a time take 2-5 ms each (docs/performance.md).
 */
export const pruneChunkRows = 256;

/** A table of expiring rows: its primary key, and the indexed column a row expires by. */
export interface Expiring<T extends keyof Database> {
  table: T;
  key: keyof Database[T] & string;
  expiresBy: keyof Database[T] & string;
}

/**
 * Deletes the rows of `table` whose `expiresBy` is below `before` (at or below it, `inclusive`).
 * On SQLite at most `pruneChunkRows` per statement (`rowsPerStatement` where each row has many
 * indexes to update), yielding to the event loop between statements, so a backlog of any size
 * never holds the event loop or the write lock for longer than one chunk; each statement is its
 * own transaction, so a prune cut short leaves only expired rows behind. The chunks cost more per
 * row (measured about 9 µs against 2: each chunk's commit writes the pages of its rows' random keys
 * again), which is the price of no stall. On PostgreSQL one statement: it runs on the database
 * server while the event loop goes on, and no writer waits for the expired rows it locks. Returns
 * the number of rows deleted.
 */
export async function deleteExpired<T extends keyof Database>(
  db: Kysely<Database>,
  expiring: Expiring<T>,
  before: number,
  options: { inclusive?: boolean; rowsPerStatement?: number } = {},
): Promise<number> {
  const table = sql.table(expiring.table);
  const key = sql.ref(expiring.key);
  const expired = sql`${sql.ref(expiring.expiresBy)} ${sql.raw(options.inclusive ? '<=' : '<')} ${before}`;
  if (isPostgres(db)) {
    const { numAffectedRows } = await sql`delete from ${table} where ${expired}`.execute(db);
    return Number(numAffectedRows ?? 0);
  }
  const limit = options.rowsPerStatement ?? pruneChunkRows;
  const chunk = sql`delete from ${table} where ${key} in (select ${key} from ${table} where ${expired} limit ${sql.lit(limit)})`;
  let deleted = 0;
  for (;;) {
    const { numAffectedRows } = await chunk.execute(db);
    const rows = Number(numAffectedRows ?? 0);
    deleted += rows;
    if (rows < limit) return deleted;
    await yieldToEventLoop();
  }
}
