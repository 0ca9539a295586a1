import type { Kysely, Transaction } from 'kysely';
import type { Clock } from '../clock.ts';
import type { Database } from '../storage/schema.ts';
import { GenerationCache, bumpGeneration } from '../storage/generations.ts';
import type { ReplayCache } from '../tokens/replay-cache.ts';
import { grantAudience } from './chaining.ts';
import type { Partner } from './definition.ts';
import { PartnerKeys, type PartnerKeysOptions } from './keys.ts';
import { cutOffAt } from '../storage/cut-off.ts';

export type UpsertOutcome = 'created' | 'updated' | 'unchanged';

interface Loaded {
  byId: Map<string, Partner>;
  byIssuer: Map<string, Partner>;
  /** Partners suspended by a drift (src/federation/drift), by id: since when, and why. */
  suspended: Map<string, PartnerSuspension>;
  /** Partners with `chaining`, by the names of their authorization server (issuer, grant audience). */
  grantTargets: Map<string, Partner>;
  /** Per issuer that apply's prune ever disabled (src/lifecycle/prune.ts): still disabled, and the cut-off. */
  cutoffs: Map<string, IssuerCutoff>;
}

/** What prune left of a partner issuer's standing, for token liveness. */
export interface IssuerCutoff {
  /** The partner is disabled now: every token that came from it is dead. */
  disabled: boolean;
  /** Tokens that came from it issued at or before this instant (epoch ms) are dead. */
  tokensValidAfter: number | null;
}

export interface PartnerSuspension {
  since: number;
  reason: string;
}

export interface PartnerStoreOptions extends PartnerKeysOptions {
  /** Where single-use assertion jtis are recorded (the shared jti replay cache). */
  replay: ReplayCache;
}

/**
 * The partner trust registry: profiles by id and by issuer, cached in memory and reloaded when any
 * process changes them (generation `partners`); with the partners' key sets (`keys`) and the
 * replay cache that single-use assertions are recorded in (`replay`).
 */
export class PartnerStore {
  readonly keys: PartnerKeys;
  readonly replay: ReplayCache;
  readonly #clock: Clock;
  readonly #db: Kysely<Database>;
  readonly #cache: GenerationCache<Loaded>;

  constructor(db: Kysely<Database>, clock: Clock, options: PartnerStoreOptions) {
    this.#db = db;
    this.#clock = clock;
    this.keys = new PartnerKeys(clock, options);
    this.replay = options.replay;
    this.#cache = new GenerationCache(db, 'partners', () => this.#loadAll(), clock);
  }

  async get(id: string): Promise<Partner | undefined> {
    return (await this.#cache.get()).byId.get(id);
  }

  /** The partner whose issuer identifier is exactly `issuer` (no normalisation: RFC 8414 §2, OIDC Core §3.1.3.7 (2)). */
  async byIssuer(issuer: string): Promise<Partner | undefined> {
    return (await this.#cache.get()).byIssuer.get(issuer);
  }

  /**
   * The partner with `chaining` whose authorization server `name` names (its issuer or grant
   * audience): a target JWT authorization grants are issued for, never access tokens.
   */
  async grantTarget(name: string): Promise<Partner | undefined> {
    return (await this.#cache.get()).grantTargets.get(name);
  }

  /**
   * The partner's suspension by a drift, if any: read from the profiles already loaded (one
   * cache, one generation), so the token path asks no more of the database than before.
   */
  async suspension(id: string): Promise<PartnerSuspension | undefined> {
    return (await this.#cache.get()).suspended.get(id);
  }

  /** A partner issuer's standing after prune, if prune ever disabled it: tokens that came from it live by it (src/tokens/liveness.ts). */
  async issuerCutoff(issuer: string): Promise<IssuerCutoff | undefined> {
    return (await this.#cache.get()).cutoffs.get(issuer);
  }

  async list(): Promise<Partner[]> {
    return [...(await this.#cache.get()).byId.values()];
  }

  /** Creates or updates, inside the caller's transaction; 'unchanged' when the stored one is identical. */
  async upsert(trx: Transaction<Database>, partner: Partner): Promise<UpsertOutcome> {
    const definition = JSON.stringify(partner);
    const existing = await trx.selectFrom('partners').select(['definition', 'disabled_at']).where('id', '=', partner.id).executeTakeFirst();
    // A partner disabled by prune and declared again is back in service.
    if (existing?.definition === definition && existing.disabled_at === null) return 'unchanged';
    const now = this.#clock.now();
    if (existing) {
      await trx
        .updateTable('partners')
        .set({ issuer: partner.issuer, definition, disabled_at: null, updated_at: now })
        .where('id', '=', partner.id)
        .execute();
    } else {
      await trx.insertInto('partners').values({ id: partner.id, issuer: partner.issuer, definition, created_at: now, updated_at: now }).execute();
    }
    await bumpGeneration(trx, 'partners');
    return existing ? 'updated' : 'created';
  }

  /**
   * Disables a partner inside the caller's transaction (apply's prune): its profile stays, with its
   * history, but its issuer is no longer trusted, so its tokens are refused as an unknown issuer's.
   * False when there is no such partner or it is already disabled.
   */
  async disable(trx: Transaction<Database>, id: string, now: number): Promise<boolean> {
    const updated = await trx.updateTable('partners').set({ disabled_at: now, tokens_valid_after: cutOffAt(now), updated_at: now }).where('id', '=', id).where('disabled_at', 'is', null).executeTakeFirst();
    if (Number(updated.numUpdatedRows) === 0) return false;
    await bumpGeneration(trx, 'partners');
    return true;
  }

  invalidate(): void {
    this.#cache.invalidate();
  }

  async #loadAll(): Promise<Loaded> {
    // The drift status joins the profiles' one query; a suspension or re-approval bumps `partners`.
    const rows = await this.#db
      .selectFrom('partners')
      .leftJoin('partner_baselines', 'partner_baselines.partner_id', 'partners.id')
      .select(['partners.id', 'partners.definition', 'partners.issuer', 'partners.disabled_at', 'partners.tokens_valid_after', 'partner_baselines.status', 'partner_baselines.suspended_at', 'partner_baselines.suspended_reason'])
      .orderBy('partners.id')
      .execute();
    // A partner disabled by prune is not trusted at all: as if it were not registered.
    const inService = rows.filter((row) => row.disabled_at === null);
    const cutoffs = new Map<string, IssuerCutoff>();
    for (const row of rows) {
      if (row.tokens_valid_after === null) continue;
      cutoffs.set(row.issuer, { disabled: row.disabled_at !== null, tokensValidAfter: Number(row.tokens_valid_after) });
    }
    const partners = inService.map((row) => JSON.parse(row.definition) as Partner);
    const suspended = new Map<string, PartnerSuspension>();
    for (const row of inService) {
      if (row.status === 'suspended') suspended.set(row.id, { since: Number(row.suspended_at ?? 0), reason: row.suspended_reason ?? 'drift' });
    }
    const grantTargets = new Map<string, Partner>();
    for (const p of partners) if (p.chaining) for (const name of [p.issuer, grantAudience(p)]) grantTargets.set(name, p);
    return { byId: new Map(partners.map((p) => [p.id, p])), byIssuer: new Map(partners.map((p) => [p.issuer, p])), suspended, cutoffs, grantTargets };
  }
}
