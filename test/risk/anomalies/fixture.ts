/**
 * Nodes for the anomaly tests: one test context (a full Context on a fresh database, ManualClock)
 * and, on request, more contexts opened on the same database with the same clock — separate nodes
 * as far as the activity counter and the caches are concerned (each its own counter node id and
 * its own in-memory state), as two servers on one PostgreSQL would be.
 */
import type { TestContext } from 'node:test';
import type { ManualClock } from '../../../src/clock.ts';
import type { Context } from '../../../src/context.ts';
import { createLogger } from '../../../src/log.ts';
import { windowStartOf, type ActivePrincipal } from '../../../src/risk/anomalies/activity.ts';
import { closeAfterMs, evaluateClosedWindows, type EvaluatedWindow } from '../../../src/risk/anomalies/evaluate.ts';
import { openContext } from '../../../src/server.ts';
import { testContext, type TestDialect, type TestServerContext } from '../../helpers/storage.ts';

export const windowMs = 300_000;
export const ordersApi = 'https://orders.example.com/api';

export interface Nodes extends TestServerContext {
  /** Every node, the test context's first. */
  nodes: Context[];
}

/** `count` nodes on one database; the clock set just after a window's start. */
export async function anomalyNodes(t: Pick<TestContext, 'after'>, dialect: TestDialect, count = 1): Promise<Nodes> {
  const tc = await testContext({ dialect });
  const nodes: Context[] = [tc.ctx];
  for (let i = 1; i < count; i++) nodes.push(await openContext(tc.config, { clock: tc.clock, log: createLogger('silent'), storage: tc.database.connect() }));
  t.after(async () => {
    for (const node of nodes.slice(1)) {
      await node.risk.activity.close();
      await (node.audit as { close?: () => Promise<void> }).close?.();
    }
    await tc.cleanup();
  });
  tc.clock.set(windowStartOf(Date.UTC(2026, 5, 1, 0, 0, 0), windowMs) + 1000);
  return { ...tc, nodes };
}

/** Counts `n` tokens of a client (for itself) on `node`, for `audiences` in turn. */
export function tokens(node: Context, client: string, n: number, audiences: string[] = [ordersApi]): void {
  for (let i = 0; i < n; i++) node.risk.activity.countToken({ type: 'Client', id: client }, client, audiences[i % audiences.length]!);
}

export function logins(node: Context, user: string, n: number): void {
  for (let i = 0; i < n; i++) node.risk.activity.count({ type: 'User', id: user }, 'login');
}

/**
 * Ends the current window: every node flushes, the clock moves past its close (the next window,
 * `closeAfterMs` in), and `evaluator` runs the evaluation pass; the windows it evaluated.
 */
export async function closeWindow(f: Pick<Nodes, 'ctx' | 'clock' | 'nodes'>, evaluator: Context = f.ctx): Promise<EvaluatedWindow[]> {
  for (const node of f.nodes) await node.risk.activity.flush();
  f.clock.set(windowStartOf(f.clock.now(), windowMs) + windowMs + closeAfterMs);
  return evaluateClosedWindows(evaluator);
}

export const client = (id: string): ActivePrincipal => ({ type: 'Client', id });
export const user = (id: string): ActivePrincipal => ({ type: 'User', id });
