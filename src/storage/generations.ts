import type { Kysely, Transaction } from 'kysely';
import { withinSpan, type Clock } from '../clock.ts';
import { hotCounter, type HotCount } from '../metrics.ts';
import { listeningCheckMs, noticesFor, type ChangeNotices } from './notices.ts';
import type { Database } from './schema.ts';

export interface GenerationTables {
  /** A counter per cached data set; bumped in the transaction that changes the data. */
  generations: { name: string; value: number };
}

/**
 * Records that `name`'s data changed, inside the writer's transaction, so every process and
 * node that caches it (server, CLI, other nodes) notices: on PostgreSQL through the change notice
 * the bump sends at commit (./notices.ts), else on its next check.
 */
export async function bumpGeneration(trx: Transaction<Database> | Kysely<Database>, name: string): Promise<void> {
  await trx
    .insertInto('generations')
    .values({ name, value: 1 })
    .onConflict((oc) => oc.column('name').doUpdateSet((eb) => ({ value: eb('generations.value', '+', 1) })))
    .execute();
}

/**
 * Reads of the caches below, by cache and outcome (docs/operations.md "Metrics"). A cache read is
 * the hottest path there is (several per request): it adds 1 to a plain number, and the counter
 * reads the numbers when scraped.
 */
const cacheReads = hotCounter({
  name: 'clearance_cache_reads_total',
  help: 'Reads of the generation caches: hit (served from memory), checked (generation read, unchanged), reloaded (generation changed or marked stale: data read again).',
  labelNames: ['cache', 'outcome'],
});

/**
 * A cached value reloaded when its generation changes. The generation is read at most once per
 * `checkEveryMs`, so a change made by another process is seen within that interval, and a change
 * made through this process (`invalidate`) at once. Where the storage listens for change notices
 * (PostgreSQL, ./notices.ts), a notice for this name marks the value stale, so the next read
 * checks the generation at once, and while notices arrive the interval is only a safety net
 * (`listeningCheckMs`); when they stop, it is `checkEveryMs` again.
 */
export class GenerationCache<T> {
  #value: T | undefined;
  #generation = -1;
  #checkedAt = -Infinity;
  /** Counts the notices: a refresh that began before one must not mark the value checked. */
  #staleness = 0;
  #loading: Promise<T> | undefined;
  readonly #db: Kysely<Database>;
  readonly #name: string;
  readonly #load: () => Promise<T>;
  readonly #clock: Clock;
  readonly #checkEveryMs: number;
  readonly #notices: ChangeNotices | undefined;
  readonly #reads: { hit: HotCount; checked: HotCount; reloaded: HotCount };

  constructor(db: Kysely<Database>, name: string, load: () => Promise<T>, clock: Clock, checkEveryMs = 1000) {
    this.#db = db;
    this.#name = name;
    this.#load = load;
    this.#clock = clock;
    this.#checkEveryMs = checkEveryMs;
    this.#notices = noticesFor(db);
    this.#notices?.subscribe(name, () => this.#markStale());
    // Caches of one name (one per context: tests open many) share their counts.
    this.#reads = { hit: cacheReads({ cache: name, outcome: 'hit' }), checked: cacheReads({ cache: name, outcome: 'checked' }), reloaded: cacheReads({ cache: name, outcome: 'reloaded' }) };
  }

  async get(): Promise<T> {
    if (this.#fresh()) {
      this.#reads.hit.n++;
      return this.#value!;
    }
    this.#loading ??= this.#refresh().finally(() => (this.#loading = undefined));
    return this.#loading;
  }

  /**
   * The value when it is loaded and was checked within `checkEveryMs`: what `get` would answer,
   * without a promise; undefined when `get` must be awaited (it then checks the generation).
   */
  peek(): T | undefined {
    return this.#fresh() ? this.#value : undefined;
  }

  /** True once a value has been loaded (it may be due for a check of its generation). */
  loaded(): boolean {
    return this.#value !== undefined;
  }

  /** Forces a reload on the next `get`. */
  invalidate(): void {
    this.#markStale();
    this.#generation = -1;
  }

  #fresh(): boolean {
    if (this.#value === undefined) return false;
    const interval = this.#notices?.listening ? Math.max(this.#checkEveryMs, listeningCheckMs) : this.#checkEveryMs;
    // A clock stepped back ends the interval (clock.ts): the next read checks the generation.
    return withinSpan(this.#clock.now(), this.#checkedAt, interval);
  }

  /** The next read checks the generation (a notice, a reconnection, a change in this process). */
  #markStale(): void {
    this.#staleness++;
    this.#checkedAt = -Infinity;
  }

  /**
   * Reads the generation and reloads when it changed. A notice that arrives meanwhile may be for a
   * commit this read did not see, and a caller waiting on this refresh came after that notice: it
   * checks again (at most a few times: notices come with changes, which are rare).
   */
  async #refresh(): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const staleness = this.#staleness;
      const row = await this.#db
        .selectFrom('generations')
        .select('value')
        .where('name', '=', this.#name)
        .executeTakeFirst();
      const generation = Number(row?.value ?? 0);
      if (this.#value === undefined || generation !== this.#generation) {
        this.#value = await this.#load();
        this.#generation = generation;
        this.#reads.reloaded.n++;
      } else {
        this.#reads.checked.n++;
      }
      if (staleness === this.#staleness) {
        this.#checkedAt = this.#clock.now();
        return this.#value;
      }
      if (attempt === 2) return this.#value;
    }
  }
}
