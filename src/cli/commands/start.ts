import cluster from 'node:cluster';
import { availableParallelism } from 'node:os';
import { ConfigError, type Config, type Mode } from '../../config.ts';
import type { Logger } from 'pino';
import { startPrimary } from '../../cluster/primary.ts';
import { leaveCluster, startWorker } from '../../cluster/worker.ts';
import { startServer } from '../../server.ts';
import { exit, type Output } from '../output.ts';
import { UsageError, wholeNumber, type WholeNumberOption } from '../numbers.ts';
import type { Rule } from '../usage.ts';

export const startHelp = `Usage: clearance start [--workers N]

Runs the server until SIGTERM or SIGINT, then drains (docs/operations.md "Graceful shutdown"):
/readyz answers 503 at once; new connections are still accepted for CLEARANCE_DRAIN_DELAY_MS
(default 5000 in production, 0 in development) so load balancers notice; then the node stops
accepting, finishes in-flight requests, writes the audit log's last events, seals and exits 0.
If that takes longer than CLEARANCE_SHUTDOWN_TIMEOUT_MS (default 30000), or a second SIGTERM or
SIGINT arrives, it exits at once with 1 and a logged warning.

  --workers N   processes that serve requests, 1 to 256 (default: 1 in development mode; in
                production mode the number of cores, os.availableParallelism()). With more than
                one, a primary process migrates the database and creates the keys, then forks N
                workers that share the port; it seals the audit log, holds the node's failure
                throttles and restarts a worker that dies (at once if it had run 10 s, else after
                1, 2, 4 ... 30 s). On SIGTERM it stops the workers, each finishing its in-flight
                requests, then seals and exits. With 1, one process does all of it.
                PostgreSQL: each worker has its own pool of CLEARANCE_DB_POOL_SIZE connections.
                With REDIS_URL, every worker counts its rate limits and failure throttles in
                Redis (shared by every node); the primary's throttles are then the fallback
                while Redis does not answer.`;

/** The most workers `--workers` accepts. */
export const maxWorkers = 256;

export const workersOption: WholeNumberOption = { flag: '--workers', min: 1, max: maxWorkers };

/** What `start` takes (src/cli/usage.ts). */
export const startUsage = { options: ['workers'], args: [], numbers: [workersOption] } as const satisfies Rule;

/** `--workers` as given, or its default for the mode: 1 in development, every core in production. Throws UsageError. */
export function workerCount(raw: string | undefined, mode: Mode): number {
  return wholeNumber(workersOption, raw) ?? (mode === 'production' ? availableParallelism() : 1);
}

/** `clearance start`: one process, the primary of N workers, or (in a forked process) a worker. */
export async function startCommand(config: Config | undefined, workersFlag: string | undefined, output: Output): Promise<number> {
  if (cluster.isWorker) {
    // A worker is stopped by its primary, which drains and bounds the shutdown for the node.
    const code = await serve(output, 'worker', async () => {
      const server = await startWorker();
      return { log: server.ctx.log, config: server.ctx.config, drain: () => server.ctx.readiness.drain(), close: server.close };
    });
    leaveCluster();
    return code;
  }
  if (!config) return exit.usage;
  let workers: number;
  try {
    workers = workerCount(workersFlag, config.mode);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    output.err(error.message);
    return exit.usage;
  }
  if (workers === 1) {
    return serve(output, 'node', async () => {
      const server = await startServer(config);
      return { log: server.ctx.log, config, drain: () => server.ctx.readiness.drain(), close: server.close };
    });
  }
  return serve(output, 'node', async () => {
    const primary = await startPrimary(config, workers);
    const log = primary.ctx.log;
    log.info({ issuer: config.issuer, mode: config.mode, storage: primary.ctx.storage.location, address: primary.url, workers }, 'clearance is listening');
    return { log, config, drain: primary.drain, close: primary.close };
  });
}

interface Running {
  log: Logger;
  config: Pick<Config, 'drainDelayMs' | 'shutdownTimeoutMs'>;
  /** Marks the node draining (`/readyz` 503) while it still serves. */
  drain(): void;
  /** Stops accepting, finishes in-flight requests, writes and seals the audit log, closes the database. */
  close(): Promise<void>;
}

/**
 * Starts what `begin` starts and runs it until SIGTERM or SIGINT; then drains and closes it and
 * returns the exit code. A `node` (one process, or the primary of workers) drains for the delay,
 * then closes within the bound; a second signal or the bound ends the process at once. A `worker`
 * closes at once when its primary stops it: the primary already drained and bounds the whole.
 */
async function serve(output: Output, role: 'node' | 'worker', begin: () => Promise<Running>): Promise<number> {
  // The signals are taken before anything starts: one that arrives while the node starts — an
  // orchestrator stopping it, or a caller that saw "clearance is listening" a moment before this
  // process went on — stops it once it has started, rather than Node's default ending it mid-way.
  // A second signal while it starts (a start that hangs on an unreachable database) ends it at once.
  let early: string | undefined;
  let onSignal: (signal: string) => void = (signal) => {
    if (early !== undefined) process.exit(exit.failed);
    early = signal;
    output.err(`${signal} while starting: stopping once started; send it again to stop now`);
  };
  const onTerm = () => onSignal('SIGTERM');
  const onInt = () => onSignal('SIGINT');
  process.on('SIGTERM', onTerm);
  process.on('SIGINT', onInt);
  let running: Running;
  try {
    running = await begin();
  } catch (error) {
    process.off('SIGTERM', onTerm);
    process.off('SIGINT', onInt);
    if (error instanceof ConfigError) {
      output.err(`configuration error: ${error.message}`);
      return exit.usage;
    }
    output.err(`cannot start: ${(error as Error).message}`);
    return exit.failed;
  }
  const { log, config } = running;
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) {
        if (role === 'worker') return;
        // An operator (or an orchestrator past its grace period) insists: nothing more is waited for.
        log.warn({ signal }, 'second signal while shutting down: exiting now; requests still in flight are dropped, committed events are sealed at the next start');
        process.exit(exit.failed);
      }
      stopping = true;
      running.drain();
      const delay = role === 'worker' ? 0 : config.drainDelayMs;
      log.info({ signal, drainDelayMs: delay }, 'draining: /readyz answers 503, still accepting until the drain delay has passed');
      const bound =
        role === 'worker'
          ? undefined
          : setTimeout(() => {
              log.warn({ shutdownTimeoutMs: config.shutdownTimeoutMs }, 'shutdown took longer than CLEARANCE_SHUTDOWN_TIMEOUT_MS: exiting now');
              process.exit(exit.failed);
            }, delay + config.shutdownTimeoutMs);
      bound?.unref();
      setTimeout(() => {
        log.info('shutting down: no new connections, finishing in-flight requests');
        running.close().then(
          () => {
            clearTimeout(bound);
            log.info('stopped');
            resolve(exit.ok);
          },
          (error: unknown) => {
            clearTimeout(bound);
            log.error({ err: error }, 'error while stopping');
            resolve(exit.failed);
          },
        );
      }, delay);
    };
    onSignal = stop;
    if (early !== undefined) stop(early);
  });
}
