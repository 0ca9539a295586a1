/**
 * Whether this node takes new work: `/readyz` answers 503 `draining` from the first SIGTERM on, so
 * a load balancer stops sending requests before the node stops accepting them (docs/operations.md
 * "Graceful shutdown"). One per process: a worker is told by its primary.
 */
export class Readiness {
  #draining = false;

  /** Marks the node draining; idempotent. */
  drain(): void {
    this.#draining = true;
  }

  get draining(): boolean {
    return this.#draining;
  }
}
