import cluster, { type Worker } from 'node:cluster';
import { fileURLToPath } from 'node:url';
import type { Config } from '../config.ts';
import type { Context } from '../context.ts';
import { startAuditService, type AuditService } from '../audit/lifecycle.ts';
import { startSignalService } from '../signals/service.ts';
import { KeySchedule } from '../lifecycle/key-schedule.ts';
import { resolveMasterKey } from '../keys/master-key.ts';
import { openContext } from '../server.ts';
import { isLifeMessage, lifeTag, sendableConfig, type LifeMessage } from './messages.ts';
import { serveClusterMetrics } from './metrics.ts';
import { serveThrottles } from './throttles.ts';

/** A worker that lived at least this long before it died is restarted at once. */
export const stableAfterMs = 10_000;

/** Delay before restarting a worker after `quickDeaths` deaths in a row, each before `stableAfterMs`. */
export function restartDelayMs(quickDeaths: number): number {
  return quickDeaths === 0 ? 0 : Math.min(30_000, 1000 * 2 ** (quickDeaths - 1));
}

/** One place among the N workers: the worker in it now, and how often it died young. */
interface Slot {
  index: number;
  worker: Worker | undefined;
  startedAt: number;
  quickDeaths: number;
  restart: NodeJS.Timeout | undefined;
}

export interface Primary {
  ctx: Context;
  /** The address the workers listen on. */
  url: string;
  /** Stops the workers (each finishes its in-flight requests), then seals the audit log and closes the database. */
  close(): Promise<void>;
  /** Marks the node draining: every worker's `/readyz` answers 503 from now on; they keep serving until `close`. */
  drain(): void;
}

/**
 * The primary process of `clearance start --workers N` (docs/operations.md, "Workers"). Before any
 * worker exists it does what must happen once per node: migrate the database, create the signing
 * key and the audit key on a fresh store, seed the built-in resource servers. Then it forks N
 * workers that serve HTTP on the shared port (the cluster hands each new connection to the next
 * worker), runs what must run in one process only — the audit sealer (on PostgreSQL, the node's
 * candidate for the sealer lock), the node's failure throttles (throttles.ts) and the signal
 * service's periodic pass (src/signals/service.ts) — and restarts a
 * worker that dies: at once if it had run `stableAfterMs`, else after 1, 2, 4 … 30 s.
 */
export async function startPrimary(config: Config, workers: number): Promise<Primary> {
  // Migrations, the signing key and the built-in resource servers, once, before any worker.
  const ctx = await openContext(config);
  const log = ctx.log;
  let audit: AuditService;
  try {
    audit = await startAuditService(ctx, resolveMasterKey(config).key);
  } catch (error) {
    await ctx.storage.close();
    throw error;
  }
  const throttles = serveThrottles(cluster, ctx.clock);
  // A worker's /metrics asks here for every worker's metrics, aggregated (./metrics.ts).
  const stopMetrics = serveClusterMetrics(cluster);
  // The node's periodic work (break-glass expiry, risk windows, alert delivery), once per node as
  // on a single-process node: the workers serve HTTP only.
  const signals = startSignalService(ctx);
  // Signing keys on a schedule, once per node like the sealer (src/lifecycle/key-schedule.ts).
  const keySchedule = new KeySchedule(ctx, { masterKey: resolveMasterKey(config).key, log });
  keySchedule.start();

  cluster.setupPrimary({
    exec: fileURLToPath(new URL('../../bin/clearance.js', import.meta.url)),
    args: ['start'],
    // The workers' output is the node's: one stream of JSON lines.
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });

  const slots: Slot[] = Array.from({ length: workers }, (_, index) => ({ index, worker: undefined, startedAt: 0, quickDeaths: 0, restart: undefined }));
  let stopping = false;
  let listening: (url: string) => void = () => {};
  const firstListening = new Promise<string>((resolve) => (listening = resolve));
  let giveUp: (error: Error) => void = () => {};
  const failed = new Promise<Error>((resolve) => (giveUp = resolve));
  let url: string | undefined;
  const started = new Set<number>(); // slots whose worker has listened at least once

  const fork = (slot: Slot) => {
    slot.restart = undefined;
    if (stopping) return;
    const worker = cluster.fork();
    slot.worker = worker;
    slot.startedAt = Date.now();
    // A message to a worker that has just died fails with an 'error' event: it must not end the primary.
    worker.on('error', (error) => log.warn({ worker: worker.id, err: error }, 'could not reach a worker'));
    worker.on('message', (message: unknown) => {
      if (!isLifeMessage(message)) return;
      if (message.op === 'hello') {
        throttles.welcome(worker);
        worker.send({ tag: lifeTag, op: 'config', config: sendableConfig(config) } satisfies LifeMessage);
      } else if (message.op === 'listening') {
        url ??= message.address;
        started.add(slot.index);
        if (started.size === workers) listening(url);
      }
    });
    worker.on('exit', (code, signal) => {
      if (slot.worker === worker) slot.worker = undefined;
      if (stopping) return;
      if (!started.has(slot.index)) {
        // A first worker that cannot start (a port in use, a bad certificate): so would the others.
        giveUp(new Error(`worker ${worker.id} exited before listening (code ${code}, signal ${signal})`));
        return;
      }
      const lived = Date.now() - slot.startedAt;
      slot.quickDeaths = lived >= stableAfterMs ? 0 : slot.quickDeaths + 1;
      const delay = restartDelayMs(slot.quickDeaths);
      log.error({ worker: worker.id, pid: worker.process.pid, code, signal, livedMs: lived, restartInMs: delay }, 'worker exited; starting another');
      slot.restart = setTimeout(() => fork(slot), delay);
    });
  };
  for (const slot of slots) fork(slot);

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      stopping = true;
      const exits: Promise<unknown>[] = [];
      for (const slot of slots) {
        clearTimeout(slot.restart);
        const worker = slot.worker;
        if (!worker || worker.isDead()) continue;
        exits.push(new Promise((resolve) => worker.once('exit', resolve)));
        // The worker's own shutdown: stop accepting, finish in-flight requests, write its audit queue.
        worker.process.kill('SIGTERM');
      }
      await Promise.all(exits);
      throttles.stop();
      stopMetrics();
      await signals.stop();
      await keySchedule.stop();
      // Last: the final sealing round covers every event the workers committed.
      try {
        await audit.stop();
      } finally {
        await ctx.storage.close();
      }
    })());

  const outcome = await Promise.race([firstListening, failed.then((error) => error)]);
  if (outcome instanceof Error) {
    await close();
    throw outcome;
  }
  /** Tells every worker the node is draining (`/readyz` 503), before `close` stops them. */
  const drain = () => {
    ctx.readiness.drain();
    for (const slot of slots) {
      const worker = slot.worker;
      if (worker && !worker.isDead() && worker.isConnected()) worker.send({ tag: lifeTag, op: 'drain' } satisfies LifeMessage);
    }
  };
  return { ctx, url: outcome, close, drain };
}
