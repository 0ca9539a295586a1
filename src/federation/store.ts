import type { Kysely, Transaction } from 'kysely';
import type { Clock } from '../clock.ts';
import type { Database } from '../storage/schema.ts';
import { GenerationCache, bumpGeneration } from '../storage/generations.ts';
import type { ReplayCache } from '../tokens/replay-cache.ts';
import type { Partner } from './definition.ts';
import { PartnerKeys, type PartnerKeysOptions } from './keys.ts';

export type UpsertOutcome = 'created' | 'updated' | 'unchanged';

interface Loaded {
  byId: Map<string, Partner>;
  byIssuer: Map<string, Partner>;
  /** Partners suspended by a drift (src/federation/drift), by id: since when, and why. */
  suspended: Map<string, PartnerSuspension>;
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
   * The partner's suspension by a drift, if any: read from the profiles already loaded (one
   * cache, one generation), so the token path asks no more of the database than before.
   */
  async suspension(id: string): Promise<PartnerSuspension | undefined> {
    return (await this.#cache.get()).suspended.get(id);
  }

  async list(): Promise<Partner[]> {
    return [...(await this.#cache.get()).byId.values()];
  }

  /** Creates or updates, inside the caller's transaction; 'unchanged' when the stored one is identical. */
  async upsert(trx: Transaction<Database>, partner: Partner): Promise<UpsertOutcome> {
    const definition = JSON.stringify(partner);
    const existing = await trx.selectFrom('partners').select('definition').where('id', '=', partner.id).executeTakeFirst();
    if (existing?.definition === definition) return 'unchanged';
    const now = this.#clock.now();
    if (existing) {
      await trx
        .updateTable('partners')
        .set({ issuer: partner.issuer, definition, updated_at: now })
        .where('id', '=', partner.id)
        .execute();
    } else {
      await trx.insertInto('partners').values({ id: partner.id, issuer: partner.issuer, definition, created_at: now, updated_at: now }).execute();
    }
    await bumpGeneration(trx, 'partners');
    return existing ? 'updated' : 'created';
  }

  invalidate(): void {
    this.#cache.invalidate();
  }

  async #loadAll(): Promise<Loaded> {
    // The drift status joins the profiles' one query; a suspension or re-approval bumps `partners`.
    const rows = await this.#db
      .selectFrom('partners')
      .leftJoin('partner_baselines', 'partner_baselines.partner_id', 'partners.id')
      .select(['partners.id', 'partners.definition', 'partner_baselines.status', 'partner_baselines.suspended_at', 'partner_baselines.suspended_reason'])
      .orderBy('partners.id')
      .execute();
    const partners = rows.map((row) => JSON.parse(row.definition) as Partner);
    const suspended = new Map<string, PartnerSuspension>();
    for (const row of rows) {
      if (row.status === 'suspended') suspended.set(row.id, { since: Number(row.suspended_at ?? 0), reason: row.suspended_reason ?? 'drift' });
    }
    return { byId: new Map(partners.map((p) => [p.id, p])), byIssuer: new Map(partners.map((p) => [p.issuer, p])), suspended };
  }
}
