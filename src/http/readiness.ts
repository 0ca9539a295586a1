/**
 * Whether this node takes new work: `/readyz` answers 503 `draining` from the first SIGTERM on, so
 * a load balancer stops sending requests before the node stops accepting them (docs/operations.md
 * "Graceful shutdown"). One per process: a worker is told by its primary.
 */
export class Readiness {
  #drainingSince: number | undefined;

  /** Marks the node draining; idempotent (the first call's time stands). */
  drain(now = Date.now()): void {
    this.#drainingSince ??= now;
  }

  get draining(): boolean {
    return this.#drainingSince !== undefined;
  }

  /** When draining began, epoch ms. */
  get drainingSince(): number | undefined {
    return this.#drainingSince;
  }
}
