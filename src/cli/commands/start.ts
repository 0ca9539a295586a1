import cluster from 'node:cluster';
import { availableParallelism } from 'node:os';
import { ConfigError, type Config, type Mode } from '../../config.ts';
import type { Logger } from 'pino';
import { startPrimary } from '../../cluster/primary.ts';
import { leaveCluster, startWorker } from '../../cluster/worker.ts';
import { startServer } from '../../server.ts';
import { exit, type Output } from '../output.ts';

export const startHelp = `Usage: clearance start [--workers N]

Runs the server until SIGTERM or SIGINT, then stops accepting, finishes in-flight requests and
closes the database.

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

/** `--workers` as given, or its default for the mode: 1 in development, every core in production. */
export function workerCount(raw: string | undefined, mode: Mode): number {
  if (raw === undefined) return mode === 'production' ? availableParallelism() : 1;
  const value = /^[0-9]+$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isInteger(value) || value < 1 || value > maxWorkers) {
    throw new ConfigError(`--workers must be an integer from 1 to ${maxWorkers}, not "${raw}"`);
  }
  return value;
}

/** `clearance start`: one process, the primary of N workers, or (in a forked process) a worker. */
export async function startCommand(config: Config | undefined, workersFlag: string | undefined, output: Output): Promise<number> {
  if (cluster.isWorker) {
    const code = await serve(output, async () => {
      const server = await startWorker();
      return { log: server.ctx.log, close: server.close };
    });
    leaveCluster();
    return code;
  }
  if (!config) return exit.usage;
  let workers: number;
  try {
    workers = workerCount(workersFlag, config.mode);
  } catch (error) {
    output.err(`configuration error: ${(error as Error).message}`);
    return exit.usage;
  }
  if (workers === 1) {
    return serve(output, async () => {
      const server = await startServer(config);
      return { log: server.ctx.log, close: server.close };
    });
  }
  return serve(output, async () => {
    const primary = await startPrimary(config, workers);
    const log = primary.ctx.log;
    log.info({ issuer: config.issuer, mode: config.mode, storage: primary.ctx.storage.location, address: primary.url, workers }, 'clearance is listening');
    return { log, close: primary.close };
  });
}

/** Starts what `begin` starts and runs it until SIGTERM or SIGINT; then closes it and returns the exit code. */
async function serve(output: Output, begin: () => Promise<{ log: Logger; close: () => Promise<void> }>): Promise<number> {
  let running;
  try {
    running = await begin();
  } catch (error) {
    if (error instanceof ConfigError) {
      output.err(`configuration error: ${error.message}`);
      return exit.usage;
    }
    output.err(`cannot start: ${(error as Error).message}`);
    return exit.failed;
  }
  const { log, close } = running;
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, 'shutting down: no new connections, finishing in-flight requests');
      close().then(
        () => {
          log.info('stopped');
          resolve(exit.ok);
        },
        (error: unknown) => {
          log.error({ err: error }, 'error while stopping');
          resolve(exit.failed);
        },
      );
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}
