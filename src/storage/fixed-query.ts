import { CompiledQuery, type Kysely } from 'kysely';
import { isPostgres } from '../audit/dialect.ts';

/**
 * Runs a read at once on a SQLite connection, or answers undefined when it cannot (a transaction
 * is open on it): registered by storage for its Kysely handle (database.ts).
 */
export type ReadNow = (text: string, parameters: readonly unknown[]) => unknown[] | undefined;

const readers = new WeakMap<object, ReadNow>();

/** Lets fixed queries on `db` (a SQLite handle, not a transaction's) run without Kysely's executor. */
export function registerReadNow(db: object, read: ReadNow): void {
  readers.set(db, read);
}

/**
 * A read the hot path repeats with other values each time, written once as SQL text: Kysely
 * builds and compiles a query on every call, which in a busy server cost about as much as
 * SQLite running it (a mandate version, a risk sighting: 9-10 µs of building each in the AuthZEN
 * server, docs/performance.md). The text uses `?` placeholders, as SQLite reads them;
 * PostgreSQL's `$1, $2, …` are made from them once. No `?` may appear in the text but as a
 * placeholder.
 *
 * Not prepared on PostgreSQL (./prepared.ts): a prepared `select *` fails ("cached plan must not
 * change result type") once a migration of another node adds a column, until the connection is
 * replaced.
 */
export class FixedQuery<Row> {
  readonly #sqlite: string;
  readonly #postgres: string;

  constructor(text: string) {
    this.#sqlite = text;
    let n = 0;
    this.#postgres = text.replace(/\?/g, () => `$${++n}`);
  }

  /** The text as `db`'s dialect reads it. */
  textFor<DB>(db: Kysely<DB>): string {
    return isPostgres(db) ? this.#postgres : this.#sqlite;
  }

  /**
   * Its rows for these values, in placeholder order. On SQLite outside a transaction the
   * statement runs at once: node:sqlite is synchronous, and Kysely's executor around it is the
   * connection's queue and a chain of promises. A token exchange (its revocation check, 4 µs of
   * SQLite) measured 15-30 µs less of the server's CPU so (docs/performance.md).
   */
  async rows<DB>(db: Kysely<DB>, parameters: readonly unknown[]): Promise<Row[]> {
    const now = readers.get(db)?.(this.#sqlite, parameters);
    if (now) return now as Row[];
    return (await db.executeQuery<Row>(CompiledQuery.raw(this.textFor(db), [...parameters]))).rows;
  }

  /** Its first row for these values, or undefined. */
  async first<DB>(db: Kysely<DB>, parameters: readonly unknown[]): Promise<Row | undefined> {
    return (await this.rows(db, parameters))[0];
  }
}
