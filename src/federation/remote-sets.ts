import type { Clock } from '../clock.ts';
import { BoundedMap } from '../jose/bounded-map.ts';

/** One remotely fetched set (a partner's or a client's jwks_uri) as a RemoteSets holds it. */
export interface HeldSet<T> {
  value?: T;
  /** Until when `value` may be used without fetching again (epoch ms). */
  freshUntil: number;
  /** When the last fetch started, successful or not: fetches are rate-limited by it. */
  attemptAt: number;
  /** Why the last fetch failed, for the refusal's log line. */
  error?: string;
  inflight?: Promise<void>;
}

/** What a lookup found: the set when it is fresh, and whether this lookup fetched, or could. */
export interface HeldLookup<T, E extends HeldSet<T>> {
  entry: E;
  fresh: T | undefined;
  /** This lookup waited for a fetch (its own or a concurrent caller's). */
  fetched: boolean;
  /** A fetch was allowed by the rate limit when the lookup began. */
  mayFetch: boolean;
}

/**
 * Remote sets fetched on demand, the mechanism the partners' and the clients' `jwks_uri` share:
 * a set is fetched when it is stale or the caller asks for a refresh (a kid it does not hold), but
 * at most once per `minRefreshMs` per key — so tokens with invented kids cannot make Clearance
 * hammer a host, nor a failing host slow every request — and callers at the same moment share one
 * fetch. `load` fills the entry: its value and freshness, or its error (a failed fetch keeps the
 * previous value only until its freshness ends: fail closed).
 */
export class RemoteSets<T, E extends HeldSet<T> = HeldSet<T>> {
  readonly #clock: Clock;
  readonly #minRefreshMs: number;
  /** Bounded: a new key past `maxEntries` makes the oldest entry go (it is fetched again when next asked for). */
  readonly #entries: BoundedMap<string, E>;

  constructor(clock: Clock, options: { minRefreshMs: number; maxEntries?: number }) {
    this.#clock = clock;
    this.#minRefreshMs = options.minRefreshMs;
    this.#entries = new BoundedMap(Math.max(1, options.maxEntries ?? Number.POSITIVE_INFINITY));
  }

  /** The set held under `key` (fetched first with `load` when stale, or with `refresh`, within the rate limit). */
  async get(key: string, refresh: boolean, load: (entry: E) => Promise<void>): Promise<HeldLookup<T, E>> {
    let entry = this.#entries.get(key);
    if (!entry) {
      entry = { freshUntil: Number.NEGATIVE_INFINITY, attemptAt: Number.NEGATIVE_INFINITY } as E;
      this.#entries.set(key, entry);
    }
    const now = this.#clock.now();
    const stale = entry.value === undefined || now >= entry.freshUntil;
    const mayFetch = now - entry.attemptAt >= this.#minRefreshMs;
    let fetched = false;
    if ((stale || refresh) && (mayFetch || entry.inflight)) {
      if (!entry.inflight) {
        const target = entry;
        target.attemptAt = now;
        target.inflight = load(target).finally(() => (target.inflight = undefined));
      }
      await entry.inflight;
      fetched = true;
    }
    const fresh = entry.value !== undefined && this.#clock.now() < entry.freshUntil ? entry.value : undefined;
    return { entry, fresh, fetched, mayFetch };
  }

  /** Drops every held set. */
  clear(): void {
    this.#entries.clear();
  }
}
