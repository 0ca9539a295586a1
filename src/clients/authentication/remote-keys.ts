import { Counter } from 'prom-client';
import type { Clock } from '../../clock.ts';
import { pinnedRequest, type FetchRules, type PinnedResponse } from '../../federation/fetch.ts';
import { RemoteSets, type HeldSet } from '../../federation/remote-sets.ts';
import { metricsRegistry } from '../../metrics.ts';
import type { Client } from '../store.ts';
import { importKeySet, registeredKeys, type RegisteredKey } from './client-keys.ts';

/** How one GET is sent: `pinnedRequest` (the partners' SSRF-safe request) by default, a fake in tests. */
export type KeySetRequest = (url: string, init: { method: string; headers: Record<string, string> }, rules: FetchRules) => Promise<PinnedResponse>;

export interface ClientKeySetsOptions {
  /** http to a loopback host, and private addresses (CLEARANCE_CLIENT_JWKS_ALLOW_PRIVATE_NETWORK). */
  allowPrivateNetwork: boolean;
  /** Whole fetch, DNS included; default 3000 ms (a token request waits for it). */
  timeoutMs?: number;
  /** Largest key set; default 64 KiB. */
  maxBytes?: number;
  /** Bounds on how long a fetched set is used, whatever its Cache-Control says; default 60 s and 24 h. */
  minCacheMs?: number;
  maxCacheMs?: number;
  /** How long a set without caching headers is used; default 10 minutes. */
  defaultCacheMs?: number;
  /** Fewest ms between two fetches of one client's jwks_uri (refresh on an unknown kid, retry after a failure); default 60 s. */
  minRefreshMs?: number;
  request?: KeySetRequest;
  resolve?: FetchRules['resolve'];
}

/** A client's set as held: its freshness is the HTTP response's (bounded); the validators revalidate it. */
interface Entry extends HeldSet<RegisteredKey[]> {
  etag?: string;
  lastModified?: string;
}

const fetches = new Counter({
  name: 'clearance_client_jwks_fetches_total',
  help: "Fetches of clients' jwks_uri by outcome: fetched (200), not_modified (304), failed.",
  labelNames: ['outcome'],
  registers: [metricsRegistry],
});

/** The most client key sets one node keeps: dynamic registrations and moved jwks_uris must not grow it forever. */
const maxEntries = 10_000;

/**
 * Clients' key sets published at their `jwks_uri` (RFC 7591 §2), for private_key_jwt, self-signed
 * mTLS and request objects. Fetched with the partners' SSRF rules (src/federation/fetch.ts: https,
 * every address of the host checked and the connection pinned to it, no redirects, a time and a
 * size limit), kept as long as the response's HTTP caching headers say (RFC 9111 §4.2: max-age, else
 * Expires − Date; no-cache and no-store mean the shortest time), bounded both ways, and revalidated
 * with If-None-Match / If-Modified-Since (a 304 keeps the imported keys). A `kid` not in the set
 * fetches it again at once (the client rotated its key), but a client's jwks_uri is fetched at most
 * once per `minRefreshMs`, so assertions with invented kids cannot make Clearance hammer it, nor
 * a failing one slow every request. Keys are imported once per fetched set.
 */
export class ClientKeySets {
  readonly #clock: Clock;
  readonly #options: Required<Omit<ClientKeySetsOptions, 'resolve'>> & Pick<ClientKeySetsOptions, 'resolve'>;
  readonly #sets: RemoteSets<RegisteredKey[], Entry>;

  constructor(clock: Clock, options: ClientKeySetsOptions) {
    this.#clock = clock;
    this.#options = {
      timeoutMs: 3000,
      maxBytes: 64 * 1024,
      minCacheMs: 60_000,
      maxCacheMs: 24 * 3600_000,
      defaultCacheMs: 10 * 60_000,
      minRefreshMs: 60_000,
      request: pinnedRequest,
      ...options,
    };
    this.#sets = new RemoteSets(clock, { minRefreshMs: this.#options.minRefreshMs, maxEntries });
  }

  /**
   * The keys of a client registered with `jwks_uri`. With `refresh` (a kid was not found, or no key
   * verified), the set is fetched again unless it was fetched less than `minRefreshMs` ago.
   * Resolves `{ error }` (a sentence for the log) when no usable set is at hand.
   */
  async get(client: Client, options: { refresh?: boolean } = {}): Promise<{ keys: RegisteredKey[]; fetched: boolean } | { error: string }> {
    const uri = client.metadata.jwks_uri;
    if (!uri) return { keys: registeredKeys(client), fetched: false };
    const id = client.metadata.client_id;
    // Keyed by the URI too: a registration that moves its jwks_uri starts afresh.
    const cacheKey = `${id}\n${uri}`;
    const { entry, fresh, fetched, mayFetch } = await this.#sets.get(cacheKey, options.refresh ?? false, (target) => this.#load(uri, target));
    if (fresh) return { keys: fresh, fetched };
    const why = entry.error ?? 'it was not fetched yet';
    const wait = mayFetch || fetched ? '' : ` (next attempt in at most ${Math.ceil(this.#options.minRefreshMs / 1000)} s)`;
    return { error: `the keys of client ${id} at its jwks_uri are not available: ${why}${wait}` };
  }

  /** Forgets every fetched set (tests; a registration change is picked up by its new URI or by expiry). */
  clear(): void {
    this.#sets.clear();
  }

  async #load(uri: string, entry: Entry): Promise<void> {
    const o = this.#options;
    const headers: Record<string, string> = { accept: 'application/jwk-set+json, application/json' };
    // RFC 9110 §13.1: revalidate what we hold rather than download it again.
    if (entry.value && entry.etag) headers['if-none-match'] = entry.etag;
    else if (entry.value && entry.lastModified) headers['if-modified-since'] = entry.lastModified;
    try {
      const response = await o.request(uri, { method: 'GET', headers }, {
        allowPrivateNetwork: o.allowPrivateNetwork,
        timeoutMs: o.timeoutMs,
        maxBytes: o.maxBytes,
        ...(o.resolve ? { resolve: o.resolve } : {}),
      });
      const now = this.#clock.now();
      if (response.status === 304 && entry.value) {
        entry.freshUntil = now + this.#lifetime(response.headers);
        entry.error = undefined;
        fetches.labels('not_modified').inc();
        return;
      }
      if (response.status >= 300 && response.status < 400) throw new Error(`${uri} answered ${response.status}, a redirect; redirects are not followed`);
      if (response.status !== 200) throw new Error(`${uri} answered HTTP ${response.status}`);
      let document: unknown;
      try {
        document = JSON.parse(response.body.toString('utf8'));
      } catch {
        throw new Error(`${uri} did not return JSON`);
      }
      const read = importKeySet(document);
      if ('error' in read) throw new Error(`${uri} ${read.error}`);
      entry.value = read.keys;
      entry.freshUntil = now + this.#lifetime(response.headers);
      entry.etag = response.headers.etag;
      entry.lastModified = response.headers['last-modified'];
      entry.error = undefined;
      fetches.labels('fetched').inc();
    } catch (error) {
      // Fail closed: a set that can be neither fetched nor revalidated is not used past its freshness.
      entry.error = (error as Error).message;
      fetches.labels('failed').inc();
    }
  }

  /** RFC 9111 §4.2.1: the freshness lifetime the response gives, bounded to [minCacheMs, maxCacheMs]. */
  #lifetime(headers: Record<string, string>): number {
    const o = this.#options;
    const directives = (headers['cache-control'] ?? '').toLowerCase().split(',').map((d) => d.trim());
    let lifetime: number | undefined;
    if (directives.some((d) => d === 'no-store' || d === 'no-cache')) {
      lifetime = 0;
    } else {
      const maxAge = directives.find((d) => d.startsWith('max-age='));
      if (maxAge && /^max-age=\d+$/.test(maxAge)) {
        const age = /^\d+$/.test(headers.age ?? '') ? Number(headers.age) : 0;
        lifetime = (Number(maxAge.slice(8)) - age) * 1000;
      } else if (headers.expires) {
        const expires = Date.parse(headers.expires);
        const date = headers.date ? Date.parse(headers.date) : NaN;
        lifetime = Number.isNaN(expires) ? 0 : expires - (Number.isNaN(date) ? this.#clock.now() : date);
      }
    }
    return Math.min(o.maxCacheMs, Math.max(o.minCacheMs, lifetime ?? o.defaultCacheMs));
  }
}
