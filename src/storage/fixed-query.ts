import { CompiledQuery, PostgresAdapter, type Kysely } from 'kysely';

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
    return db.getExecutor().adapter instanceof PostgresAdapter ? this.#postgres : this.#sqlite;
  }

  /** Its rows for these values, in placeholder order. */
  async rows<DB>(db: Kysely<DB>, parameters: readonly unknown[]): Promise<Row[]> {
    return (await db.executeQuery<Row>(CompiledQuery.raw(this.textFor(db), [...parameters]))).rows;
  }

  /** Its first row for these values, or undefined. */
  async first<DB>(db: Kysely<DB>, parameters: readonly unknown[]): Promise<Row | undefined> {
    return (await this.rows(db, parameters))[0];
  }
}
