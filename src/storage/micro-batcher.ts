/**
 * Collects items submitted in the same event-loop turn (or while the previous batch is being
 * processed) and hands them to `process` together, at most `maxBatch` at a time, one batch after
 * another. The group commit and the audit recorder both build on it: a burst of requests then
 * costs one transaction instead of one each (DESIGN §9).
 */
export class MicroBatcher<T> {
  readonly #process: (batch: T[]) => Promise<void>;
  readonly #maxBatch: number;
  #queue: T[] = [];
  #scheduled = false;
  #running: Promise<void> | undefined;

  /** `process` must settle every item of its batch itself; a rejection is not retried. */
  constructor(process: (batch: T[]) => Promise<void>, maxBatch: number) {
    this.#process = process;
    this.#maxBatch = maxBatch;
  }

  add(item: T): void {
    this.#queue.push(item);
    this.#schedule();
  }

  /** Resolves when everything added so far has been processed. */
  async flush(): Promise<void> {
    while (this.#running || this.#queue.length > 0) {
      if (!this.#running) this.#start();
      await this.#running;
    }
  }

  #schedule(): void {
    if (this.#scheduled || this.#running) return;
    this.#scheduled = true;
    // The rest of this turn's submissions join the batch before it starts.
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
      await this.#process(this.#queue.splice(0, this.#maxBatch)).catch(() => undefined);
    }
  }
}
