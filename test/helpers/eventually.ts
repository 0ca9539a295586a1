import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Resolves once `check` holds, polling every `everyMs`, with the milliseconds it took; fails after
 * `withinMs` of real time (a bound, not a measurement). For what another node, thread or
 * connection does in its own time.
 */
export async function eventually(check: () => boolean | Promise<boolean>, what: string, options: { withinMs?: number; everyMs?: number } = {}): Promise<number> {
  const { withinMs = 10_000, everyMs = 10 } = options;
  const started = performance.now();
  while (!(await check())) {
    if (performance.now() - started > withinMs) assert.fail(`${what}: not within ${withinMs} ms`);
    await sleep(everyMs);
  }
  return performance.now() - started;
}
