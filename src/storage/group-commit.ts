import type { Kysely, Transaction } from 'kysely';
import type { Database } from './schema.ts';

type Operation<T> = (trx: Transaction<Database>) => Promise<T>;

interface Queued {
  operation: Operation<unknown>;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

/**
 * Group commit for the small writes a burst of requests produces (assertion jti inserts, audit
 * events): operations submitted in the same event-loop turn, or while the previous batch commits,
 * run in one transaction, so a burst pays for one commit (one fsync) instead of one each
 * (DESIGN §9). Each caller gets its own operation's result once the transaction has committed,
 * so "resolved" always means "durable".
 *
 * Operations must express expected outcomes in their result (e.g. ON CONFLICT DO NOTHING), not by
 * throwing. If one throws anyway, the shared transaction is rolled back and every operation of
 * the batch is retried alone, so one bad operation fails only its own caller.
 */
export class GroupCommit {
  readonly #db: Kysely<Database>;
  readonly #maxBatch: number;
  #queue: Queued[] = [];
  #scheduled = false;
  #running: Promise<void> | undefined;

  constructor(db: Kysely<Database>, options: { maxBatch?: number } = {}) {
    this.#db = db;
    this.#maxBatch = options.maxBatch ?? 1000;
  }

  /** Runs `operation` in the next shared transaction; resolves with its result after commit. */
  run<T>(operation: Operation<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#queue.push({ operation, resolve: resolve as (value: unknown) => void, reject });
      this.#schedule();
    });
  }

  /** Resolves when everything submitted so far has committed or failed. */
  async flush(): Promise<void> {
    while (this.#running || this.#queue.length > 0) {
      if (!this.#running) this.#start();
      await this.#running;
    }
  }

  #schedule(): void {
    if (this.#scheduled || this.#running) return;
    this.#scheduled = true;
    // The rest of this turn's requests join the batch before it starts.
    setImmediate(() => {
      this.#scheduled = false;
      if (!this.#running) this.#start();
    });
  }

  #start(): void {
    this.#running = this.#drain().finally(() => {
      this.#running = undefined;
      if (this.#queue.length > 0) this.#schedule();
    });
  }

  async #drain(): Promise<void> {
    while (this.#queue.length > 0) {
      const batch = this.#queue.splice(0, this.#maxBatch);
      let results: unknown[];
      try {
        results = await this.#db.transaction().execute(async (trx) => {
          const out: unknown[] = [];
          for (const item of batch) out.push(await item.operation(trx));
          return out;
        });
      } catch {
        await this.#runAlone(batch);
        continue;
      }
      batch.forEach((item, i) => item.resolve(results[i]));
    }
  }

  async #runAlone(batch: Queued[]): Promise<void> {
    for (const item of batch) {
      try {
        item.resolve(await this.#db.transaction().execute(item.operation));
      } catch (error) {
        item.reject(error);
      }
    }
  }
}
