import type { Logger } from 'pino';
import { withinSpan, type Clock } from '../../clock.ts';
import { throttleKeyForAddress } from '../../clients/authentication/throttle.ts';
import type { BucketCheck, BucketRefusal, BucketStore } from './buckets.ts';
import { processNamesKey, pseudonym } from './names.ts';
import type { LimitKind, Quota, RateLimitSettings, RateLimitSource } from './settings.ts';
import { rateLimitRejections } from './metrics.ts';
import { BoundedMap } from '../../jose/bounded-map.ts';

/** A refused request: which limit, its quota, and how long to wait. */
export interface LimitRefusal {
  kind: LimitKind;
  quota: Quota;
  /** Whole seconds until the bucket has a token again (at least 1). */
  retryAfterSeconds: number;
}

/** A decision: undefined when allowed. Synchronous when it can be (the in-memory store, limits cached). */
export type LimitDecision = LimitRefusal | undefined | Promise<LimitRefusal | undefined>;

/**
 * The rate limiter (docs/risk.md "Rate limits"): the limits apply stored, the buckets in a store
 * (Redis, or this node's memory), and where each kind is checked:
 * - `request`: the source address (an IPv4 address, an IPv6 /64: `throttleKeyForAddress`) and the
 *   endpoint route, for the whole deployment — in one check, before any work (src/http/app.ts);
 * - `client`: after client authentication, at every endpoint that authenticates clients
 *   (src/clients/authentication/endpoint-authentication.ts);
 * - `person`: the account a sign-in names, before its password is verified (src/endpoints/interaction).
 *
 * What a check costs: with the limits cached and the memory store, no promise, and a few
 * short-lived objects (the check's keys); with Redis, one round trip (one script for all the
 * buckets of the check). A limit that is off costs nothing.
 */
export class RateLimiter {
  readonly #source: RateLimitSource;
  readonly #store: BucketStore;
  readonly #clock: Clock;
  readonly #log: Logger | undefined;
  /** The last refusal logged per bucket, so a caller hammering a limit is logged once per window. */
  readonly #logged = new BoundedMap<string, number>(10_000);

  readonly #namesKey: Buffer;

  /** `namesKey`: how people are named in the store (./names.ts); nodes sharing a store share it. */
  constructor(source: RateLimitSource, store: BucketStore, clock: Clock, log?: Logger, namesKey: Buffer = processNamesKey()) {
    this.#namesKey = namesKey;
    this.#source = source;
    this.#store = store;
    this.#clock = clock;
    this.#log = log;
  }

  /** The source address's and the endpoint route's limits (`route`: its path below the issuer). */
  request(address: string, route: string): LimitDecision {
    const settings = this.#source.peek();
    if (!settings) return this.#source.get().then((loaded) => this.#request(loaded, address, route));
    return this.#request(settings, address, route);
  }

  /** The client's limit, once it has authenticated. */
  client(clientId: string): LimitDecision {
    return this.#one('client', clientId);
  }

  /** The person's limit: the account a sign-in names (normalized username; unknown ones alike). */
  person(username: string): LimitDecision {
    // Keyed-hashed: the store (Redis) holds no one's name, nor a digest a list of names reverses.
    return this.#one('person', pseudonym(this.#namesKey, username));
  }

  /** After apply changed the limits in this process. */
  invalidate(): void {
    this.#source.invalidate();
  }

  #request(settings: RateLimitSettings, address: string, route: string): LimitDecision {
    const addressQuota = settings.limits.address;
    const routeQuota = settings.routes.has(route) ? settings.routes.get(route) : settings.limits.endpoint;
    if (addressQuota && routeQuota) {
      return this.#take(addressAndEndpoint, [bucket('address', throttleKeyForAddress(address), addressQuota), bucket('endpoint', route, routeQuota)]);
    }
    if (addressQuota) return this.#take(kindsOf.address, [bucket('address', throttleKeyForAddress(address), addressQuota)]);
    if (routeQuota) return this.#take(kindsOf.endpoint, [bucket('endpoint', route, routeQuota)]);
    return undefined;
  }

  #one(kind: LimitKind, value: string): LimitDecision {
    const settings = this.#source.peek();
    if (!settings) return this.#source.get().then((loaded) => this.#oneWith(loaded, kind, value));
    return this.#oneWith(settings, kind, value);
  }

  #oneWith(settings: RateLimitSettings, kind: LimitKind, value: string): LimitDecision {
    const quota = settings.limits[kind];
    return quota ? this.#take(kindsOf[kind], [bucket(kind, value, quota)]) : undefined;
  }

  #take(kinds: readonly LimitKind[], checks: readonly BucketCheck[]): LimitDecision {
    const taken = this.#store.take(checks, this.#clock.now());
    if (taken === undefined) return undefined;
    if (taken instanceof Promise) return taken.then((refusal) => (refusal ? this.#refused(kinds, checks, refusal) : undefined));
    return this.#refused(kinds, checks, taken);
  }

  #refused(kinds: readonly LimitKind[], checks: readonly BucketCheck[], refusal: BucketRefusal): LimitRefusal {
    const kind = kinds[refusal.index]!;
    const check = checks[refusal.index]!;
    rateLimitRejections.labels(kind).inc();
    this.#logOnce(kind, check);
    return { kind, quota: { quota: check.quota, windowSeconds: check.windowMs / 1000 }, retryAfterSeconds: Math.max(1, Math.ceil(refusal.waitMs / 1000)) };
  }

  #logOnce(kind: LimitKind, check: BucketCheck): void {
    if (!this.#log) return;
    const now = this.#clock.now();
    const last = this.#logged.get(check.key);
    if (last !== undefined && withinSpan(now, last, check.windowMs)) return;
    this.#logged.delete(check.key);
    this.#logged.set(check.key, now);
    // A person's bucket is named by a digest; the others by the address, route or client_id.
    this.#log.info({ limit: kind, ...(kind === 'person' ? {} : { key: check.key.slice(kind.length + 1) }), quota: check.quota, window: check.windowMs / 1000 }, 'rate limit reached');
  }
}

const addressAndEndpoint: readonly LimitKind[] = ['address', 'endpoint'];
const kindsOf: Record<LimitKind, readonly LimitKind[]> = { address: ['address'], endpoint: ['endpoint'], client: ['client'], person: ['person'] };

function bucket(kind: LimitKind, value: string, quota: Quota): BucketCheck {
  return { key: `${kind}:${value}`, quota: quota.quota, windowMs: quota.windowSeconds * 1000 };
}

