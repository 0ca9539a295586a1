import { Redis } from 'iovalkey';
import type { Logger } from 'pino';

/**
 * The Redis (or Valkey) connection every node shares its rate limits and failure throttles through
 * (docs/risk.md "Rate limits"). Its rules:
 *
 * - **fail fast**: no offline queue, no retry of a command, and a command timeout of
 *   `CLEARANCE_REDIS_TIMEOUT_MS` (250 ms): a Redis that is down or slow never holds a request
 *   longer than that;
 * - **degrade, never open**: a failed command makes the node use its own stores (`run`'s
 *   fallback: memory, or a worker's relay to its primary) — limits then hold per node, never not
 *   at all, and never a 5xx. One warning when that starts, one when Redis answers again;
 * - **recover by itself**: while degraded no request waits for Redis; the client reconnects
 *   in the background (every 2 s at most), and a PING each second finds a Redis that answers again
 *   on a connection that never dropped (it had only stopped answering);
 * - **connect only to serve**: a CLI command opens a context but never calls `connect`, so it never
 *   opens a socket; its throttles go to the fallback silently.
 *
 * One connection per process: commands are pipelined on it (Redis answers in order), so
 * concurrent requests share it without a pool.
 */
export class SharedStore {
  readonly prefix: string;
  readonly client: Redis;
  readonly #log: Logger;
  #down = false;
  #closing = false;
  #probe: NodeJS.Timeout | undefined;

  constructor(options: { url: string; prefix: string; timeoutMs: number; log: Logger }) {
    this.prefix = options.prefix;
    this.#log = options.log;
    this.client = new Redis(options.url, {
      lazyConnect: true,
      // Never queue a command while disconnected, never resend one: fail, and let the caller fall back.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: options.timeoutMs,
      connectTimeout: Math.max(2000, 4 * options.timeoutMs),
      // Reconnect for ever, at most every 2 s.
      retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 5), 2000),
      connectionName: 'clearance',
    });
    // Without a listener an 'error' event would end the process; connection errors are a fallback.
    this.client.on('error', (error: Error) => this.failed(error));
    this.client.on('close', () => {
      if (!this.#closing) this.failed(new Error('connection closed'));
    });
    this.client.on('ready', () => this.answered());
  }

  /** Whether commands go to Redis now (connected, and not degraded). */
  get usable(): boolean {
    return !this.#down && this.client.status === 'ready';
  }

  /** Whether the node is using its own stores because Redis did not answer. */
  get degraded(): boolean {
    return this.#down;
  }

  /** Connects, waiting at most the connect timeout; a Redis that is not there leaves the node degraded (warned) until it is. */
  async connect(): Promise<void> {
    if (this.client.status !== 'wait') return;
    try {
      await this.client.connect();
      this.#log.info('Redis connected: rate limits and failure throttles are shared across nodes');
    } catch (error) {
      this.failed(error as Error);
    }
  }

  /** `operation` on Redis when it is usable; otherwise, or when it fails, `fallback` (the node's own store). */
  async run<T>(operation: () => Promise<T>, fallback: () => T | Promise<T>): Promise<T> {
    if (!this.usable) return fallback();
    try {
      return await operation();
    } catch (error) {
      this.failed(error as Error);
      return fallback();
    }
  }

  /** Records a failure: the first of an outage is warned about, and the probe starts. */
  failed(error: Error): void {
    if (this.#closing || this.#down) return;
    this.#down = true;
    // The message only: the URL (which may carry a password) is never logged.
    this.#log.warn({ cause: error.message }, 'Redis is not answering: rate limits and failure throttles hold per node until it answers again');
    this.#probe = setInterval(() => {
      if (this.client.status !== 'ready') return; // reconnecting: 'ready' will say when it is back
      this.client.ping().then(
        () => this.answered(),
        () => undefined,
      );
    }, 1000);
    this.#probe.unref();
  }

  answered(): void {
    if (!this.#down || this.#closing) return;
    this.#down = false;
    clearInterval(this.#probe);
    this.#probe = undefined;
    this.#log.warn('Redis answers again: rate limits and failure throttles are shared across nodes again');
  }

  /** Closes the connection at once (the server has finished its requests by then). */
  async close(): Promise<void> {
    this.#closing = true;
    clearInterval(this.#probe);
    this.client.disconnect();
  }
}

/** A Lua script run by EVALSHA (EVAL the first time on a connection, and after a Redis restart). */
export type Script = (numberOfKeys: number, ...keysAndArguments: (string | number)[]) => Promise<unknown>;

/** Registers `lua` on the connection under `name` (iovalkey's defineCommand) and returns its runner. */
export function defineScript(store: SharedStore, name: string, lua: string): Script {
  const client = store.client as unknown as Record<string, Script | undefined> & Redis;
  if (!client[name]) store.client.defineCommand(name, { lua });
  const run = client[name]!;
  return (...args) => run.apply(store.client, args);
}

/**
 * Sliding windows of failure times in sorted sets (score and member: the time, then a unique id),
 * as the in-memory `SlidingWindows` of src/clients/authentication/throttle.ts keeps them: at most
 * `max` per key, those older than the window dropped, the key expiring a window after its newest.
 */
export const slidingWindowLua = `
local function live(key, now, window)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  return redis.call('ZCARD', key)
end
-- Milliseconds until the key may fail again; 0 when it may now.
local function retry_after(key, now, max, window)
  local n = live(key, now, window)
  if n < max then return 0 end
  local oldest = redis.call('ZRANGE', key, n - max, n - max, 'WITHSCORES')
  return tonumber(oldest[2]) + window - now
end
-- Milliseconds until the key has no failure in the window; 0 when it has none now.
local function until_empty(key, now, window)
  live(key, now, window)
  local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if #newest == 0 then return 0 end
  return tonumber(newest[2]) + window - now
end
local function record(key, now, max, window, member)
  redis.call('ZADD', key, now, member)
  local n = redis.call('ZCARD', key)
  if n > max then redis.call('ZREMRANGEBYRANK', key, 0, n - max - 1) end
  redis.call('PEXPIRE', key, window)
end
`;
