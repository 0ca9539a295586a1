import type { Kysely, Transaction } from 'kysely';
import type { Clock } from '../clock.ts';
import type { Database } from './schema.ts';

export interface GenerationTables {
  /** A counter per cached data set; bumped in the transaction that changes the data. */
  generations: { name: string; value: number };
}

/**
 * Records that `name`'s data changed, inside the writer's transaction, so every process and
 * node that caches it (server, CLI, other nodes) notices on its next check.
 */
export async function bumpGeneration(trx: Transaction<Database> | Kysely<Database>, name: string): Promise<void> {
  await trx
    .insertInto('generations')
    .values({ name, value: 1 })
    .onConflict((oc) => oc.column('name').doUpdateSet((eb) => ({ value: eb('generations.value', '+', 1) })))
    .execute();
}

/**
 * A cached value reloaded when its generation changes. The generation is read at most once per
 * `checkEveryMs`, so a change made by another process is seen within that interval, and a change
 * made through this process (`invalidate`) at once.
 */
export class GenerationCache<T> {
  #value: T | undefined;
  #generation = -1;
  #checkedAt = -Infinity;
  #loading: Promise<T> | undefined;
  readonly #db: Kysely<Database>;
  readonly #name: string;
  readonly #load: () => Promise<T>;
  readonly #clock: Clock;
  readonly #checkEveryMs: number;

  constructor(db: Kysely<Database>, name: string, load: () => Promise<T>, clock: Clock, checkEveryMs = 1000) {
    this.#db = db;
    this.#name = name;
    this.#load = load;
    this.#clock = clock;
    this.#checkEveryMs = checkEveryMs;
  }

  async get(): Promise<T> {
    if (this.#value !== undefined && this.#clock.now() - this.#checkedAt < this.#checkEveryMs) {
      return this.#value;
    }
    this.#loading ??= this.#refresh().finally(() => (this.#loading = undefined));
    return this.#loading;
  }

  /**
   * The value when it is loaded and was checked within `checkEveryMs`: what `get` would answer,
   * without a promise; undefined when `get` must be awaited (it then checks the generation).
   */
  peek(): T | undefined {
    return this.#value !== undefined && this.#clock.now() - this.#checkedAt < this.#checkEveryMs ? this.#value : undefined;
  }

  /** Forces a reload on the next `get`. */
  invalidate(): void {
    this.#checkedAt = -Infinity;
    this.#generation = -1;
  }

  async #refresh(): Promise<T> {
    const row = await this.#db
      .selectFrom('generations')
      .select('value')
      .where('name', '=', this.#name)
      .executeTakeFirst();
    const generation = Number(row?.value ?? 0);
    this.#checkedAt = this.#clock.now();
    if (this.#value === undefined || generation !== this.#generation) {
      this.#value = await this.#load();
      this.#generation = generation;
    }
    return this.#value;
  }
}
