import type { Kysely, Transaction } from 'kysely';
import type { Clock } from '../../clock.ts';
import { bumpGeneration, GenerationCache } from '../../storage/generations.ts';
import type { Database } from '../../storage/schema.ts';
import { join, type Validator } from '../../validation.ts';

/**
 * The rate limits (docs/risk.md "Rate limits", docs/apply.md `rate_limits`): a token bucket per
 * caller of each kind, holding `quota` requests and refilled by `quota` every `window` seconds.
 *
 *   rate_limits:
 *     address:  { quota: 600000, window: 60 }     # per source address (IPv4, IPv6 /64), before any work
 *     endpoint: { quota: 1000000, window: 60,     # per endpoint route, for the whole deployment
 *                 routes: { /token: { quota: 200000, window: 60 }, /admin/clients: off } }
 *     client:   { quota: 600000, window: 60 }     # per client, after client authentication
 *     person:   { quota: 30, window: 60 }         # per account named at sign-in
 *
 * `off` switches a limit off. Each limit a document names is stored (one row each, so every node
 * limits alike); one it does not name keeps its value; `endpoint.routes`, when named, is the whole
 * list of route overrides. The defaults are generous on purpose: no test, benchmark or ordinary
 * deployment meets them; an operator tightens them to what their traffic needs.
 */

/** The table (migration 0030_rate_limits): one row per limit apply stored. */
export interface RateLimitTables {
  rate_limits: {
    /** `address` | `endpoint` | `client` | `person` | `route:<path>`. */
    name: string;
    /** JSON: `{"quota": n, "window": seconds}` or `"off"`. */
    value: string;
    updated_at: number;
  };
}

/** The kinds of limit, in the order a request meets them. */
export const limitKinds = ['address', 'endpoint', 'client', 'person'] as const;
export type LimitKind = (typeof limitKinds)[number];

export interface Quota {
  /** Requests the bucket holds: a burst this size is allowed, and this many per window after it. */
  quota: number;
  windowSeconds: number;
}

export interface RateLimitSettings {
  /** Each kind's quota; undefined: that limit is off. */
  limits: Readonly<Record<LimitKind, Quota | undefined>>;
  /** The endpoint limit per route (its path below the issuer, e.g. `/token`), where it differs; undefined: off for that route. */
  routes: ReadonlyMap<string, Quota | undefined>;
}

export const defaultRateLimits: RateLimitSettings = Object.freeze({
  limits: Object.freeze({
    address: { quota: 600_000, windowSeconds: 60 },
    endpoint: { quota: 1_000_000, windowSeconds: 60 },
    client: { quota: 600_000, windowSeconds: 60 },
    person: { quota: 30, windowSeconds: 60 },
  }),
  routes: new Map(),
});

/** What apply's section names: a quota or `off` per kind, and the route overrides when named. */
export interface RateLimitSection {
  limits: Partial<Record<LimitKind, Quota | 'off'>>;
  routes?: Map<string, Quota | 'off'>;
}

const maxRoutes = 100;
const quotaRange = { min: 1, max: 1_000_000_000 };
const windowRange = { min: 1, max: 86_400 };

/** Validates apply's `rate_limits` section, recording every problem under `path`. */
export function readRateLimitSection(v: Validator, path: string, value: unknown): RateLimitSection | undefined {
  const o = v.object(path, value);
  if (!o) return undefined;
  const before = v.problems.length;
  v.knownKeys(path, o, limitKinds);
  const section: RateLimitSection = { limits: {} };
  for (const kind of limitKinds) {
    if (o[kind] === undefined) continue;
    const quota = readQuota(v, join(path, kind), o[kind], kind === 'endpoint' ? ['routes'] : []);
    if (quota !== undefined) section.limits[kind] = quota;
    const routes = kind === 'endpoint' && typeof o[kind] === 'object' && o[kind] !== null ? (o[kind] as Record<string, unknown>).routes : undefined;
    if (routes === undefined) continue;
    const at = join(join(path, kind), 'routes');
    const entries = v.object(at, routes);
    if (!entries) continue;
    if (Object.keys(entries).length > maxRoutes) v.fail(at, `must name at most ${maxRoutes} routes`);
    section.routes = new Map();
    for (const [route, limit] of Object.entries(entries)) {
      if (!/^\/[\x21-\x7e]{0,199}$/.test(route)) {
        v.fail(join(at, route), 'is not a route path (starts with /, as the endpoint is registered below the issuer, e.g. /token or /interaction/:id/login)');
        continue;
      }
      const quota = readQuota(v, join(at, route), limit, []);
      if (quota !== undefined) section.routes.set(route, quota);
    }
  }
  return v.problems.length === before ? section : undefined;
}

/** `off`, or `{ quota, window }` (plus `extra` keys, read by the caller). */
function readQuota(v: Validator, path: string, value: unknown, extra: readonly string[]): Quota | 'off' | undefined {
  if (value === 'off' || value === false) return 'off';
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return v.fail(path, 'must be { quota, window } or off');
  const o = v.object(path, value);
  if (!o) return undefined;
  v.knownKeys(path, o, ['quota', 'window', ...extra]);
  if (extra.includes('routes') && o.quota === undefined && o.window === undefined) return undefined; // only routes named
  const quota = v.integer(join(path, 'quota'), o.quota, quotaRange);
  const windowSeconds = v.integer(join(path, 'window'), o.window, windowRange);
  return quota === undefined || windowSeconds === undefined ? undefined : { quota, windowSeconds };
}

type Change = { kind: 'rate_limit'; id: string; outcome: 'created' | 'updated' | 'unchanged' | 'removed' };

const generation = 'rate_limits';
const routePrefix = 'route:';

/** Stores what the section names, inside the apply transaction; one change per limit. */
export async function upsertRateLimits(trx: Transaction<Database>, now: number, section: RateLimitSection): Promise<Change[]> {
  const stored = new Map((await trx.selectFrom('rate_limits').select(['name', 'value']).execute()).map((r) => [r.name, r.value]));
  const wanted = new Map<string, string>();
  for (const [kind, limit] of Object.entries(section.limits)) wanted.set(kind, JSON.stringify(limit === 'off' ? 'off' : { quota: limit.quota, window: limit.windowSeconds }));
  for (const [route, limit] of section.routes ?? []) wanted.set(routePrefix + route, JSON.stringify(limit === 'off' ? 'off' : { quota: limit.quota, window: limit.windowSeconds }));
  const changes: Change[] = [];
  for (const [name, value] of wanted) {
    const existing = stored.get(name);
    if (existing === value) {
      changes.push({ kind: 'rate_limit', id: name, outcome: 'unchanged' });
      continue;
    }
    if (existing === undefined) await trx.insertInto('rate_limits').values({ name, value, updated_at: now }).execute();
    else await trx.updateTable('rate_limits').set({ value, updated_at: now }).where('name', '=', name).execute();
    changes.push({ kind: 'rate_limit', id: name, outcome: existing === undefined ? 'created' : 'updated' });
  }
  // A document that names the routes names all of them.
  if (section.routes) {
    for (const name of stored.keys()) {
      if (!name.startsWith(routePrefix) || wanted.has(name)) continue;
      await trx.deleteFrom('rate_limits').where('name', '=', name).execute();
      changes.push({ kind: 'rate_limit', id: name, outcome: 'removed' });
    }
  }
  if (changes.some((c) => c.outcome !== 'unchanged')) await bumpGeneration(trx, generation);
  return changes;
}

/** The limits in force: the defaults, with what apply stored over them. A stored value of the wrong shape is ignored. */
export async function loadRateLimits(db: Kysely<Database>): Promise<RateLimitSettings> {
  const rows = await db.selectFrom('rate_limits').select(['name', 'value']).execute();
  const limits: Record<LimitKind, Quota | undefined> = { ...defaultRateLimits.limits };
  const routes = new Map<string, Quota | undefined>();
  for (const row of rows) {
    const value = storedQuota(row.value);
    if (value === null) continue;
    if (row.name.startsWith(routePrefix)) routes.set(row.name.slice(routePrefix.length), value);
    else if ((limitKinds as readonly string[]).includes(row.name)) limits[row.name as LimitKind] = value;
  }
  return { limits, routes };
}

/** A stored value: a quota, undefined for `off`, null when unreadable. */
function storedQuota(text: string): Quota | undefined | null {
  const value = JSON.parse(text) as unknown;
  if (value === 'off') return undefined;
  const { quota, window } = (value ?? {}) as { quota?: unknown; window?: unknown };
  return Number.isInteger(quota) && Number.isInteger(window) && (quota as number) > 0 && (window as number) > 0 ? { quota: quota as number, windowSeconds: window as number } : null;
}

/** Where the limiter reads the limits: synchronously when fresh (no promise on the hot path). */
export interface RateLimitSource {
  /** The limits when known and fresh; undefined when `get` must be awaited. */
  peek(): RateLimitSettings | undefined;
  get(): Promise<RateLimitSettings>;
  /** After this process wrote them (apply): reload on the next read. */
  invalidate(): void;
}

/** The stored limits, cached per process and reloaded within a second of a change by any node (generation `rate_limits`). */
export function storedRateLimits(db: Kysely<Database>, clock: Clock): RateLimitSource {
  const cache = new GenerationCache(db, generation, () => loadRateLimits(db), clock);
  return { peek: () => cache.peek(), get: () => cache.get(), invalidate: () => cache.invalidate() };
}

/** Fixed limits (the defaults unless given), for a context without a database and for unit tests. */
export function fixedRateLimits(settings: RateLimitSettings = defaultRateLimits): RateLimitSource {
  return { peek: () => settings, get: async () => settings, invalidate: () => {} };
}
