/**
 * Collects items submitted in the same event-loop turn (or while earlier batches are being
 * processed) and hands them to `process` together, at most `maxBatch` at a time. The group commit
 * and the audit recorder both build on it: a burst of requests then costs one transaction instead
 * of one each (DESIGN §9).
 *
 * By default one batch is processed at a time, and items arriving meanwhile wait for the next. With
 * `concurrency` above 1 (PostgreSQL, where each batch is a transaction on a connection of its own
 * and mostly waits for round trips and its commit), up to that many batches are in flight; items
 * arriving while all of them are still join the next batch to start.
 */
export class MicroBatcher<T> {
  readonly #process: (batch: T[]) => Promise<void>;
  readonly #maxBatch: number;
  readonly #concurrency: number;
  #queue: T[] = [];
  #scheduled = false;
  readonly #inFlight = new Set<Promise<void>>();

  /** `process` must settle every item of its batch itself; a rejection is not retried. */
  constructor(process: (batch: T[]) => Promise<void>, maxBatch: number, options: { concurrency?: number } = {}) {
    this.#process = process;
    this.#maxBatch = maxBatch;
    this.#concurrency = Math.max(1, Math.floor(options.concurrency ?? 1));
  }

  add(item: T): void {
    this.#queue.push(item);
    this.#schedule();
  }

  /** Resolves when everything added so far has been processed. */
  async flush(): Promise<void> {
    while (this.#inFlight.size > 0 || this.#queue.length > 0) {
      if (this.#inFlight.size === 0) this.#start();
      await Promise.race(this.#inFlight);
    }
  }

  #schedule(): void {
    if (this.#scheduled || this.#inFlight.size >= this.#concurrency) return;
    this.#scheduled = true;
    // The rest of this turn's submissions join the batch before it starts.
    setImmediate(() => {
      this.#scheduled = false;
      this.#start();
    });
  }

  /** Starts batches while there are items and a free slot. */
  #start(): void {
    while (this.#queue.length > 0 && this.#inFlight.size < this.#concurrency) {
      const running: Promise<void> = this.#process(this.#queue.splice(0, this.#maxBatch))
        .catch(() => undefined)
        .finally(() => {
          this.#inFlight.delete(running);
          // What arrived meanwhile starts at once, as the next batch.
          this.#start();
        });
      this.#inFlight.add(running);
    }
  }
}
