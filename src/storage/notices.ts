import { randomBytes } from 'node:crypto';
import type { Kysely } from 'kysely';
import pg from 'pg';
import type { Database } from './schema.ts';

/**
 * Change notices across nodes (docs/operations.md "Several nodes"): on PostgreSQL, every change of
 * a `generations` row is announced at commit by a trigger (migration 0044) with
 * `pg_notify('clearance_generations', '<schema>:<name>')`, and each server process listens on one
 * connection of its own. A notice marks the caches of that name stale, so the next read on this
 * node checks the generation and reloads: a change made on one node is in force on the others as
 * soon as the notice arrives (milliseconds), instead of at their next poll.
 *
 * The generation counters stay the truth and polling the fallback: while the listener is not
 * connected — never started (SQLite, the CLI), reconnecting after a lost connection, or silent
 * (its own ping did not come back) — caches poll every second as before; while it listens they
 * poll only as a safety net (`listeningCheckMs`). After every (re)connection each cache is marked
 * stale once, because notices sent while nobody listened are lost (PostgreSQL does not queue them).
 */
export interface ChangeNotices {
  /** True while notices arrive (connected, LISTEN in force, and the last ping came back). */
  readonly listening: boolean;
  /** Calls `stale` when `name` changes, and after each (re)connection; returns the unsubscribe. */
  subscribe(name: string, stale: () => void): () => void;
}

export const noticeChannel = 'clearance_generations';
/** How often a cache checks its generation while notices arrive: a safety net, not the path. */
export const listeningCheckMs = 30_000;
/** The listener pings itself through the notice path this often, and gives up on a silent connection after `pingTimeoutMs`. */
const pingEveryMs = 5_000;
const pingTimeoutMs = 2_000;
const reconnectMinMs = 100;
const reconnectMaxMs = 5_000;

const noticesOf = new WeakMap<Kysely<Database>, ChangeNotices>();

/** The notices that reach caches reading through `db`, if its storage listens. */
export function noticesFor(db: Kysely<Database>): ChangeNotices | undefined {
  return noticesOf.get(db);
}

export function attachNotices(db: Kysely<Database>, notices: ChangeNotices): void {
  noticesOf.set(db, notices);
}

export interface ListenerOptions {
  url: string;
  pgSchema?: string | undefined;
  applicationName: string;
  /** Told when the listening connection is lost or cannot be opened (logged by the caller). */
  onConnectionError?: ((error: Error) => void) | undefined;
  /** Told when notices start to arrive (true) and when they stop (false: caches poll every second). */
  onListening?: ((listening: boolean) => void) | undefined;
}

/** One LISTEN connection per process, reconnected with backoff for as long as the process runs. */
export class PostgresChangeListener implements ChangeNotices {
  readonly #options: ListenerOptions;
  readonly #subscribers = new Map<string, Set<() => void>>();
  #client: pg.Client | undefined;
  #schema: string | undefined;
  #listening = false;
  #closed = false;
  #backoffMs = reconnectMinMs;
  #reconnect: NodeJS.Timeout | undefined;
  #pinger: NodeJS.Timeout | undefined;
  #pingDeadline: NodeJS.Timeout | undefined;
  #pingToken: string | undefined;
  /** Resolves once the first connection listens or has failed (start-up does not wait for a database that is down). */
  readonly ready: Promise<void>;

  constructor(options: ListenerOptions) {
    this.#options = options;
    this.ready = this.#connect();
  }

  get listening(): boolean {
    return this.#listening;
  }

  subscribe(name: string, stale: () => void): () => void {
    let set = this.#subscribers.get(name);
    if (!set) this.#subscribers.set(name, (set = new Set()));
    set.add(stale);
    return () => set.delete(stale);
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#reconnect);
    this.#stopPinging();
    this.#setListening(false);
    await this.#client?.end().catch(() => undefined);
  }

  async #connect(): Promise<void> {
    if (this.#closed) return;
    const client = new pg.Client({
      connectionString: this.#options.url,
      application_name: this.#options.applicationName,
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
      ...(this.#options.pgSchema ? { options: `-c search_path=${this.#options.pgSchema}` } : {}),
    });
    this.#client = client;
    // Without an 'error' listener a reset connection would be an uncaught exception.
    client.on('error', (error) => this.#lost(client, error));
    client.on('end', () => this.#lost(client, new Error('the listening connection ended')));
    client.on('notification', (message) => this.#notice(message.channel, message.payload));
    try {
      await client.connect();
      const { rows } = await client.query<{ schema: string }>('select current_schema() as schema');
      this.#schema = rows[0]!.schema;
      await client.query(`listen ${noticeChannel}`);
    } catch (error) {
      this.#lost(client, error as Error);
      return;
    }
    if (this.#closed || this.#client !== client) return;
    this.#backoffMs = reconnectMinMs;
    this.#setListening(true);
    // Notices sent while this process did not listen are lost: every cache checks its generation.
    this.#staleAll();
    this.#startPinging(client);
  }

  #notice(channel: string, payload: string | undefined): void {
    if (channel !== noticeChannel || !payload || this.#schema === undefined) return;
    const separator = payload.lastIndexOf(':');
    // Other schemas of the same database (tests; several installations) share the channel.
    if (payload.slice(0, separator) !== this.#schema) return;
    const name = payload.slice(separator + 1);
    if (name === this.#pingToken) {
      clearTimeout(this.#pingDeadline);
      this.#pingDeadline = undefined;
      return;
    }
    for (const stale of this.#subscribers.get(name) ?? []) stale();
  }

  #lost(client: pg.Client, error: Error): void {
    if (this.#client !== client) return;
    this.#client = undefined;
    this.#stopPinging();
    this.#setListening(false);
    client.removeAllListeners('notification');
    client.end().catch(() => undefined);
    if (this.#closed) return;
    this.#options.onConnectionError?.(error);
    this.#reconnect = setTimeout(() => void this.#connect(), this.#backoffMs);
    this.#reconnect.unref();
    this.#backoffMs = Math.min(this.#backoffMs * 2, reconnectMaxMs);
  }

  /**
   * A connection can stay open and still carry nothing (a proxy that dropped it silently): the
   * listener notifies itself every few seconds and, when the ping does not come back in time,
   * stops counting as listening (caches poll every second) and connects again.
   */
  #startPinging(client: pg.Client): void {
    this.#pinger = setInterval(() => {
      if (this.#pingDeadline) return;
      this.#pingToken = `#ping-${randomBytes(6).toString('hex')}`;
      this.#pingDeadline = setTimeout(() => this.#lost(client, new Error('the listening connection did not return its ping')), pingTimeoutMs);
      this.#pingDeadline.unref();
      client.query('select pg_notify($1, current_schema() || $2)', [noticeChannel, `:${this.#pingToken}`]).catch((error: Error) => this.#lost(client, error));
    }, pingEveryMs);
    this.#pinger.unref();
  }

  #stopPinging(): void {
    clearInterval(this.#pinger);
    clearTimeout(this.#pingDeadline);
    this.#pinger = undefined;
    this.#pingDeadline = undefined;
  }

  #setListening(listening: boolean): void {
    if (this.#listening === listening) return;
    this.#listening = listening;
    this.#options.onListening?.(listening);
  }

  #staleAll(): void {
    for (const set of this.#subscribers.values()) for (const stale of set) stale();
  }
}
