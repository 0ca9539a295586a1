import { sql, type Expression, type Kysely, type Transaction } from 'kysely';
import { countReadAheadFailure } from '../read-ahead-metrics.ts';
import type { Clock } from '../../clock.ts';
import type { Flight } from '../../storage/flight.ts';
import { GenerationCache } from '../../storage/generations.ts';
import type { Database } from '../../storage/schema.ts';
import { asOf, effectiveStatus, type KycPrincipal, type KycRecord, type KycStatus } from './record.ts';
import { BoundedMap } from '../../jose/bounded-map.ts';

/** The generation every KYC change bumps (./changes.ts): each node's cache reloads on it. */
export const kycGeneration = 'kyc';

/** Synchronous KYC statuses for building a decision's entities (src/policy/request.ts). */
export interface KycLookup {
  /** A person's effective status; undefined when they have no record. */
  user(id: string): KycStatus | undefined;
  /** A legal entity's effective status; undefined when it has no record. */
  legalEntity(lei: string): KycStatus | undefined;
}

/**
 * KYC records as decisions read them, cached on each node so a steady principal costs no round
 * trip: every legal entity's record (few) loaded at once, people's records read one by one and
 * kept (bounded, least recently used first), absences too. Every KYC change bumps the `kyc`
 * generation (./changes.ts), which each node checks at most once a second: a change made on
 * another node is seen within a second, one made through this node at once (`invalidate`).
 * Every read applies the review date (`effectiveStatus`), so a cached `verified` turns
 * `expired` the moment its review is due.
 */
export class KycStore {
  readonly #db: Kysely<Database>;
  readonly #clock: Clock;
  readonly #entities: GenerationCache<ReadonlyMap<string, KycRecord>>;
  readonly #people: BoundedMap<string, KycRecord | null>;
  /** Counted up by each reload: a person read before a reload is not cached after it. */
  #epoch = 0;

  constructor(db: Kysely<Database>, clock: Clock, options: { maxCached?: number; checkEveryMs?: number } = {}) {
    this.#db = db;
    this.#clock = clock;
    this.#people = new BoundedMap(options.maxCached ?? 100_000);
    this.#entities = new GenerationCache(db, kycGeneration, () => this.#reload(), clock, options.checkEveryMs);
  }

  /** The principal's record as of now (status effective); undefined when it has none. */
  async get(principal: KycPrincipal): Promise<KycRecord | undefined> {
    const now = this.#clock.now();
    if (principal.type === 'LegalEntity') {
      const record = (await this.#entities.get()).get(principal.id);
      return record && asOf(record, now);
    }
    const record = await this.#person(principal.id);
    return record && asOf(record, now);
  }

  /** The statuses of these people and of every legal entity, as of now. */
  async lookup(userIds: readonly string[]): Promise<KycLookup> {
    const entities = await this.#entities.get();
    const people = new Map<string, KycRecord | undefined>();
    await Promise.all(userIds.map(async (id) => people.set(id, await this.#person(id))));
    const now = this.#clock.now();
    const status = (record: KycRecord | undefined) => (record ? effectiveStatus(record, now) : undefined);
    return { user: (id) => status(people.get(id)), legalEntity: (lei) => status(entities.get(lei)) };
  }

  /**
   * Reads ahead, as one statement in `flight`, the KYC record of the person `personId` names (a
   * one-row subquery: the flight also reads what names them, a code by its hash), and keeps it as
   * `get` would have: the decision that follows finds it in memory instead of making a round trip
   * of its own. A reload (a KYC change) since the flight was made drops what it read. On a node
   * whose cache has not loaded yet nothing is read ahead: that first load would drop it.
   */
  readAhead(flight: Flight, personId: Expression<string | null>): void {
    if (!this.#entities.loaded()) return;
    const epoch = this.#epoch;
    const read = flight.run(
      sql<Database['kyc_records'] & { person_id: string | null }>`select p.person_id, k.* from (select ${personId} as person_id) p left join kyc_records k on k.principal_type = 'User' and k.principal_id = p.person_id`.compile(this.#db),
    );
    read
      .then(({ rows }) => {
        const row = rows[0];
        if (row?.person_id == null || epoch !== this.#epoch) return;
        this.#people.delete(row.person_id);
        this.#people.set(row.person_id, row.principal_id !== null ? recordFromRow(row) : null);
      })
      .catch((error: unknown) => countReadAheadFailure('kyc', error)); // the read that would have been made is made then
  }

  /** Forces a reload on the next read (after a change made through this node). */
  invalidate(): void {
    this.#entities.invalidate();
  }

  async #person(id: string): Promise<KycRecord | undefined> {
    await this.#entities.get();
    const epoch = this.#epoch;
    const cached = this.#people.get(id);
    if (cached !== undefined) {
      this.#people.delete(id);
      this.#people.set(id, cached);
      return cached ?? undefined;
    }
    if (id.length > 64) return undefined;
    const row = await this.#db.selectFrom('kyc_records').selectAll().where('principal_type', '=', 'User').where('principal_id', '=', id).executeTakeFirst();
    const record = row ? recordFromRow(row) : undefined;
    if (epoch === this.#epoch) {
      this.#people.set(id, record ?? null);
    }
    return record;
  }

  async #reload(): Promise<ReadonlyMap<string, KycRecord>> {
    this.#epoch++;
    this.#people.clear();
    const rows = await this.#db.selectFrom('kyc_records').selectAll().where('principal_type', '=', 'LegalEntity').execute();
    return new Map(rows.map((row) => [row.principal_id, recordFromRow(row)]));
  }
}

/** The stored record of a principal, read in the caller's transaction (writers read what they update). */
export async function readKycRecord(db: Kysely<Database> | Transaction<Database>, principal: KycPrincipal): Promise<KycRecord | undefined> {
  const row = await db.selectFrom('kyc_records').selectAll().where('principal_type', '=', principal.type).where('principal_id', '=', principal.id).executeTakeFirst();
  return row && recordFromRow(row);
}

export function recordFromRow(row: Database['kyc_records']): KycRecord {
  return {
    principal: { type: row.principal_type as KycPrincipal['type'], id: row.principal_id },
    status: row.status as KycStatus,
    ...(row.previous_status !== null ? { previousStatus: row.previous_status as KycStatus } : {}),
    ...(row.level !== null ? { level: row.level } : {}),
    ...(row.provider !== null ? { provider: row.provider } : {}),
    ...(row.review_due !== null ? { reviewDue: Number(row.review_due) } : {}),
    ...(row.evidence_ref !== null ? { evidenceRef: row.evidence_ref } : {}),
    ...(row.declared !== null ? { declared: row.declared } : {}),
    version: Number(row.version),
    updatedAt: Number(row.updated_at),
    updatedBy: row.updated_by,
    ...(row.frozen_by != null ? { frozenBy: row.frozen_by } : {}),
  };
}
