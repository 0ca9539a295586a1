import type { Clock } from '../clock.ts';

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
    if (this.#running || now - this.#last < this.#everyMs) return;
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
