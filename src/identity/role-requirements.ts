import type { Transaction } from 'kysely';
import type { Context } from '../context.ts';
import { GenerationCache, bumpGeneration } from '../storage/generations.ts';
import type { Database } from '../storage/schema.ts';
import { join, type Validator } from '../validation.ts';
import { acr, acrRank, isKnownAcr, strongestAcr, type Acr } from './acr.ts';
import { rolePattern } from './users.ts';

/**
 * Role minimums: the least authentication level (src/identity/acr.ts) each role asks of the people
 * who hold it — `trader` at least `urn:clearance:acr:mfa`, `approver` `urn:clearance:acr:phrh` —
 * set by apply's `authentication.role_minimums` (docs/apply.md). A person's minimum is the
 * strongest of their roles' minimums; a role without one asks nothing more than signing in.
 *
 * Who reads it:
 * - the authorization endpoint: a session below the person's minimum is stepped up (the login step)
 *   before a code is issued (src/authorization/requirements.ts);
 * - the token endpoint: a code or refresh token whose acr is below the person's current minimum
 *   gets no tokens (RFC 9470 `insufficient_user_authentication`, src/grants/person-tokens.ts);
 * - the people side: a person whose minimum is phishing-resistant cannot remove their last
 *   phishing-resistant factor (`requiresPhishingResistant`).
 *
 * The minimums are cached per database (every node reloads them when any process changes them:
 * generation `role_minimums`), so reading them costs nothing on the request path.
 */

/** The table (migration 0019_step_up). */
export interface RoleRequirementTables {
  role_minimums: {
    /** A role name as people hold it (users.roles). */
    role: string;
    /** A level of the ladder. */
    acr: string;
    updated_at: number;
  };
}

/** Role → its minimum level. */
export type RoleMinimums = ReadonlyMap<string, Acr>;

/** The strongest minimum among `roles` (undefined: none of them asks one). */
export function minimumAcrFor(minimums: RoleMinimums, roles: readonly string[]): Acr | undefined {
  return strongestAcr(roles.map((role) => minimums.get(role)));
}

/** Whether `roles` ask a phishing-resistant level (`urn:clearance:acr:phr` or above). */
export function requiresPhishingResistant(minimums: RoleMinimums, roles: readonly string[]): boolean {
  return acrRank(minimumAcrFor(minimums, roles)) >= acrRank(acr.phishingResistant);
}

type Deps = Pick<Context, 'storage' | 'clock'>;

const caches = new WeakMap<object, GenerationCache<RoleMinimums>>();

function cacheOf(ctx: Deps): GenerationCache<RoleMinimums> {
  let cache = caches.get(ctx.storage);
  if (!cache) {
    const db = ctx.storage.db;
    cache = new GenerationCache(
      db,
      'role_minimums',
      async () => {
        const rows = await db.selectFrom('role_minimums').select(['role', 'acr']).execute();
        // A stored value off the ladder (written by hand) asks the strongest level: fail closed.
        return new Map(rows.map((r) => [r.role, isKnownAcr(r.acr) ? r.acr : acr.phishingResistantHardware]));
      },
      ctx.clock,
    );
    caches.set(ctx.storage, cache);
  }
  return cache;
}

/** Every role's minimum (cached; reloaded within a second of a change by any process). */
export function roleMinimums(ctx: Deps): Promise<RoleMinimums> {
  return cacheOf(ctx).get();
}

/** The minimum level of a person holding `roles` (undefined: none asked). */
export async function roleMinimumFor(ctx: Deps, roles: readonly string[]): Promise<Acr | undefined> {
  if (roles.length === 0) return undefined;
  return minimumAcrFor(await roleMinimums(ctx), roles);
}

/** Forces a reload on this process's next read (after apply wrote them). */
export function invalidateRoleMinimums(ctx: Deps): void {
  caches.get(ctx.storage)?.invalidate();
}

/** Most roles one document may set a minimum for. */
const maxRoles = 256;

/**
 * Reads apply's `authentication` section: `{ role_minimums: { <role>: <acr>, ... } }`. Each value
 * is a level of the ladder (the legacy `urn:clearance:acr:1fa` is not accepted: name `…:pwd`).
 */
export function readAuthenticationSection(v: Validator, path: string, value: unknown): Map<string, Acr> | undefined {
  const o = v.object(path, value);
  if (!o) return undefined;
  const before = v.problems.length;
  v.knownKeys(path, o, ['role_minimums']);
  const minimums = new Map<string, Acr>();
  if (o.role_minimums !== undefined) {
    const at = join(path, 'role_minimums');
    const entries = v.object(at, o.role_minimums);
    if (entries && Object.keys(entries).length > maxRoles) v.fail(at, `must name at most ${maxRoles} roles`);
    for (const [role, level] of Object.entries(entries ?? {})) {
      const rolePath = join(at, role);
      if (!rolePattern.test(role)) {
        v.fail(rolePath, 'is not a role name (lowercase a-z0-9_- starting with a letter, as users[].roles)');
        continue;
      }
      const text = v.string(rolePath, level);
      if (text === undefined) continue;
      if (!isKnownAcr(text)) {
        v.fail(rolePath, `must be a level of the ladder: urn:clearance:acr:pwd, urn:clearance:acr:mfa, urn:clearance:acr:phr or urn:clearance:acr:phrh`);
        continue;
      }
      minimums.set(role, text);
    }
  }
  return v.problems.length === before ? minimums : undefined;
}

/**
 * Stores role minimums inside the apply transaction: each named role's is created or replaced
 * (roles the document does not name keep theirs: apply is additive). Returns one change per role.
 */
export async function upsertRoleMinimums(
  trx: Transaction<Database>,
  now: number,
  minimums: ReadonlyMap<string, Acr>,
): Promise<{ kind: 'role_minimum'; id: string; outcome: 'created' | 'updated' | 'unchanged' }[]> {
  const changes: { kind: 'role_minimum'; id: string; outcome: 'created' | 'updated' | 'unchanged' }[] = [];
  if (minimums.size === 0) return changes;
  const stored = new Map((await trx.selectFrom('role_minimums').select(['role', 'acr']).execute()).map((r) => [r.role, r.acr]));
  for (const [role, level] of [...minimums].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const existing = stored.get(role);
    if (existing === level) {
      changes.push({ kind: 'role_minimum', id: role, outcome: 'unchanged' });
      continue;
    }
    if (existing === undefined) await trx.insertInto('role_minimums').values({ role, acr: level, updated_at: now }).execute();
    else await trx.updateTable('role_minimums').set({ acr: level, updated_at: now }).where('role', '=', role).execute();
    changes.push({ kind: 'role_minimum', id: role, outcome: existing === undefined ? 'created' : 'updated' });
  }
  if (changes.some((c) => c.outcome !== 'unchanged')) await bumpGeneration(trx, 'role_minimums');
  return changes;
}
