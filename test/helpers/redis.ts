/**
 * Redis for tests (docs/risk.md "Rate limits"): the machine's shared Redis, used only under a key
 * prefix unique to each test and emptied afterwards (never flushed: other runs use it too), and a
 * Redis of the test's own on a free port when the test must stop it.
 *
 *   const store = await testSharedStore(t);                  // connected; its keys deleted after the test
 *   const own = await startOwnRedis(t);                      // own redis-server; killed after the test
 *   await own.stop(); await own.start();                     // an outage, and the recovery
 *
 * TEST_REDIS_URL chooses the shared Redis (default redis://127.0.0.1:6379). `redisSkip` is the
 * reason to skip a Redis suite (it does not answer), else false.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import type { TestContext } from 'node:test';
import { Redis } from 'iovalkey';
import type { Logger } from 'pino';
import { createLogger } from '../../src/log.ts';
import { SharedStore } from '../../src/risk/limits/redis.ts';
import { freePort } from './server.ts';

export const testRedisUrl = process.env.TEST_REDIS_URL || 'redis://127.0.0.1:6379';

async function answers(url: string): Promise<boolean> {
  const client = new Redis(url, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, connectTimeout: 1000, retryStrategy: () => null });
  client.on('error', () => undefined);
  try {
    await client.connect();
    return (await client.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    client.disconnect();
  }
}

/** Why Redis suites are skipped here, or false when the shared Redis answers. */
export const redisSkip: string | false = (await answers(testRedisUrl)) ? false : `no Redis answers at ${testRedisUrl.replace(/\/\/[^@]*@/, '//')} (set TEST_REDIS_URL)`;

/** A key prefix no other test or run uses. */
export function uniquePrefix(): string {
  return `clearance-test:${randomBytes(6).toString('hex')}:`;
}

/** Deletes every key under `prefix` (SCAN, never FLUSH: the Redis is shared). */
export async function deleteKeys(url: string, prefix: string): Promise<void> {
  const client = new Redis(url, { maxRetriesPerRequest: 0, retryStrategy: () => null });
  client.on('error', () => undefined);
  try {
    let cursor = '0';
    do {
      const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      if (keys.length > 0) await client.del(...keys);
      cursor = next;
    } while (cursor !== '0');
  } catch {
    // Gone already (an own Redis the test stopped): nothing to delete.
  } finally {
    client.disconnect();
  }
}

/** A connected SharedStore on the shared Redis, under a prefix of its own, cleaned up after the test. */
export async function testSharedStore(t: Pick<TestContext, 'after'>, options: { log?: Logger; url?: string; timeoutMs?: number } = {}): Promise<SharedStore> {
  const url = options.url ?? testRedisUrl;
  const prefix = uniquePrefix();
  const store = new SharedStore({ url, prefix, timeoutMs: options.timeoutMs ?? 1000, log: options.log ?? createLogger('silent') });
  await store.connect();
  t.after(async () => {
    await store.close();
    await deleteKeys(url, prefix);
  });
  return store;
}

export const redisServerPath = '/usr/bin/redis-server';
/** Why a test needing its own redis-server is skipped, or false. */
export const ownRedisSkip: string | false = existsSync(redisServerPath) ? false : `${redisServerPath} is missing: the outage test needs a redis-server of its own to stop`;

export interface OwnRedis {
  port: number;
  url: string;
  /** Starts it (again, on the same port). */
  start(): Promise<void>;
  /** Kills it (SIGKILL: an outage, not a shutdown). */
  stop(): Promise<void>;
  /** Stops it answering without closing its connections (SIGSTOP), and lets it go on (SIGCONT). */
  pause(): void;
  resume(): void;
}

/** A redis-server of the test's own on a free port, keeping nothing on disk; killed after the test. */
export async function startOwnRedis(t: Pick<TestContext, 'after'>): Promise<OwnRedis> {
  const port = await freePort();
  let child: ChildProcess | undefined;
  const own: OwnRedis = {
    port,
    url: `redis://127.0.0.1:${port}`,
    async start() {
      child = spawn(redisServerPath, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--loglevel', 'warning'], { stdio: 'ignore' });
      const deadline = Date.now() + 10_000;
      while (!(await answers(own.url))) {
        if (child.exitCode !== null || Date.now() > deadline) throw new Error(`redis-server on port ${port} did not start (exit code ${child.exitCode})`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },
    async stop() {
      if (!child || child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, 'exit');
      child.kill('SIGKILL');
      await exited;
    },
    pause: () => void child?.kill('SIGSTOP'),
    resume: () => void child?.kill('SIGCONT'),
  };
  await own.start();
  t.after(async () => {
    own.resume();
    await own.stop();
  });
  return own;
}
