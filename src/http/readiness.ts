/**
 * Whether this node takes new work: `/readyz` answers 503 `draining` from the first SIGTERM on, so
 * a load balancer stops sending requests before the node stops accepting them (docs/operations.md
 * "Graceful shutdown"), and 503 with the reason while a condition added with `require` holds (a
 * node that no longer holds the master key the database seals with, docs/keys.md). One per
 * process: a worker is told by its primary.
 */
export class Readiness {
  #draining = false;
  readonly #conditions: (() => string | undefined)[] = [];

  /** Marks the node draining; idempotent. */
  drain(): void {
    this.#draining = true;
  }

  get draining(): boolean {
    return this.#draining;
  }

  /** Adds a condition of readiness: `problem` answers why the node is not ready now, or undefined while it is. */
  require(problem: () => string | undefined): void {
    this.#conditions.push(problem);
  }

  /** Why the node is not ready, draining and the database aside; undefined when nothing stands in the way. */
  problem(): string | undefined {
    for (const condition of this.#conditions) {
      const problem = condition();
      if (problem) return problem;
    }
    return undefined;
  }
}
