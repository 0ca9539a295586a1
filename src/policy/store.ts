import { createHash } from 'node:crypto';
import type { Kysely, Transaction } from 'kysely';
import type { Clock } from '../clock.ts';
import { GenerationCache, bumpGeneration } from '../storage/generations.ts';
import type { Database } from '../storage/schema.ts';
import { compilePolicySet, formatPolicyProblem, type CompiledPolicySet } from './engine.ts';

/** A stored policy set version, as `clearance policy list` and the admin API show it. */
export interface PolicyVersion {
  version: string;
  digest: string;
  change_ref: string;
  author: string;
  approver: string | null;
  active: boolean;
  created_at: number;
  created_by: string;
  activated_at: number | null;
  activated_by: string | null;
}

/** A validated `policies[]` entry (see definition.ts). */
export interface PolicyEntry {
  version: string;
  text: string;
  change_ref: string;
  author: string;
  approver?: string;
  /** `true` activates this version (with an approver other than the author); apply never deactivates. */
  active?: boolean;
}

/** What decisions evaluate against: the active set, or why there is none (then every decision denies). */
export type ActivePolicy = { set: CompiledPolicySet } | { set: null; version: string | null; error: string };

/** The source name of a stored set's text, in problems. */
export const storedSourceName = (version: string) => `policy set ${version}`;

export class PolicyActivationError extends Error {
  override name = 'PolicyActivationError';
}

/** Four eyes: names compared trimmed and case-insensitively. */
export function samePerson(a: string, b: string): boolean {
  return a.trim().toLowerCase() === b.trim().toLowerCase();
}

export function digestText(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/**
 * Versioned policy sets. A version is immutable once stored; at most one is active (a unique
 * index). The active set is cached compiled, keyed by version, and reloaded through the
 * `policies` generation: an activation in this process is served from the next decision on
 * (`invalidate`), one made by another process (the CLI, another node) from the first decision
 * after its change notice arrives (PostgreSQL, src/storage/notices.ts), else within `checkEveryMs`
 * (default 1 s). A set that no longer compiles denies every decision rather than serve another.
 */
export class PolicyStore {
  readonly #db: Kysely<Database>;
  readonly #clock: Clock;
  readonly #cache: GenerationCache<ActivePolicy>;

  constructor(db: Kysely<Database>, clock: Clock, options: { checkEveryMs?: number } = {}) {
    this.#db = db;
    this.#clock = clock;
    this.#cache = new GenerationCache(db, 'policies', () => this.#loadActive(), clock, options.checkEveryMs ?? 1000);
  }

  /** The active policy set, compiled. */
  active(): Promise<ActivePolicy> {
    return this.#cache.get();
  }

  async list(): Promise<PolicyVersion[]> {
    const rows = await this.#db.selectFrom('policy_sets').selectAll().orderBy('created_at').orderBy('version').execute();
    return rows.map(toVersion);
  }

  async get(version: string): Promise<(PolicyVersion & { text: string }) | undefined> {
    const row = await this.#db.selectFrom('policy_sets').selectAll().where('version', '=', version).executeTakeFirst();
    return row && { ...toVersion(row), text: row.text };
  }

  /**
   * Stores a new version inside the caller's transaction ('unchanged' when the same version with the
   * same text, change reference and author is stored), and activates it when the entry says so.
   * The caller has checked immutability and four eyes (definition.ts); both are checked again here.
   */
  async upsert(trx: Transaction<Database>, entry: PolicyEntry, actor: string): Promise<{ outcome: 'created' | 'updated' | 'unchanged'; activated: boolean; previous: string | null }> {
    const existing = await trx.selectFrom('policy_sets').selectAll().where('version', '=', entry.version).executeTakeFirst();
    const now = this.#clock.now();
    let outcome: 'created' | 'updated' | 'unchanged' = 'unchanged';
    if (existing) {
      if (existing.text !== entry.text || existing.change_ref !== entry.change_ref || existing.author !== entry.author) {
        throw new PolicyActivationError(`policy set version ${entry.version} is already stored with other content; a version never changes`);
      }
    } else {
      await trx
        .insertInto('policy_sets')
        .values({
          version: entry.version,
          text: entry.text,
          digest: digestText(entry.text),
          change_ref: entry.change_ref,
          author: entry.author,
          approver: null,
          active: 0,
          created_at: now,
          created_by: actor,
          activated_at: null,
          activated_by: null,
        })
        .execute();
      await bumpGeneration(trx, 'policies');
      outcome = 'created';
    }
    if (entry.active && !(existing && existing.active === 1)) {
      const { previous } = await this.activate(trx, entry.version, entry.approver ?? '', actor);
      return { outcome: outcome === 'created' ? 'created' : 'updated', activated: true, previous };
    }
    return { outcome, activated: false, previous: null };
  }

  /**
   * Makes `version` the active set inside the caller's transaction. Refused when the version does
   * not exist, when the approver is missing or is the author (four eyes), or when its text no
   * longer compiles against the schema.
   */
  async activate(trx: Transaction<Database>, version: string, approver: string, actor: string): Promise<{ previous: string | null; author: string; changeRef: string }> {
    const row = await trx.selectFrom('policy_sets').selectAll().where('version', '=', version).executeTakeFirst();
    if (!row) throw new PolicyActivationError(`no policy set version ${version}`);
    if (approver.trim() === '') throw new PolicyActivationError('an approver is required to activate a policy set');
    if (samePerson(approver, row.author)) {
      throw new PolicyActivationError(`the approver must not be the author (${row.author}): a policy set is activated by a second person`);
    }
    const compiled = compilePolicySet(version, [{ name: storedSourceName(version), text: row.text }]);
    if (!compiled.set) throw new PolicyActivationError(`policy set ${version} does not validate: ${compiled.problems.map(formatPolicyProblem).join('; ')}`);
    const current = await trx.selectFrom('policy_sets').select('version').where('active', '=', 1).executeTakeFirst();
    if (current?.version === version) return { previous: version, author: row.author, changeRef: row.change_ref };
    await trx.updateTable('policy_sets').set({ active: 0 }).where('active', '=', 1).execute();
    await trx
      .updateTable('policy_sets')
      .set({ active: 1, approver: approver.trim(), activated_at: this.#clock.now(), activated_by: actor })
      .where('version', '=', version)
      .execute();
    await bumpGeneration(trx, 'policies');
    return { previous: current?.version ?? null, author: row.author, changeRef: row.change_ref };
  }

  /** Forces a reload on the next read (after this process changed the data). */
  invalidate(): void {
    this.#cache.invalidate();
  }

  async #loadActive(): Promise<ActivePolicy> {
    const row = await this.#db.selectFrom('policy_sets').select(['version', 'text']).where('active', '=', 1).executeTakeFirst();
    if (!row) return { set: null, version: null, error: 'no policy set is active' };
    const compiled = compilePolicySet(row.version, [{ name: storedSourceName(row.version), text: row.text }]);
    if (!compiled.set) {
      return { set: null, version: row.version, error: `the active policy set ${row.version} does not validate against this server's schema` };
    }
    return { set: compiled.set };
  }
}

function toVersion(row: Database['policy_sets']): PolicyVersion {
  return {
    version: row.version,
    digest: row.digest,
    change_ref: row.change_ref,
    author: row.author,
    approver: row.approver,
    active: row.active === 1,
    created_at: Number(row.created_at),
    created_by: row.created_by,
    activated_at: row.activated_at === null ? null : Number(row.activated_at),
    activated_by: row.activated_by,
  };
}
