import type { Kysely, Transaction } from 'kysely';
import type { Clock } from '../clock.ts';
import { GenerationCache, bumpGeneration } from '../storage/generations.ts';
import type { Database } from '../storage/schema.ts';
import type { Account, Desk, InstrumentClass, LegalEntity, ReferenceKind, Region, Venue } from './definition.ts';

export type UpsertOutcome = 'created' | 'updated' | 'unchanged';

/** Everything the entity model holds, indexed for lookups; one immutable snapshot per generation. */
export interface EntitySnapshot {
  legalEntities: ReadonlyMap<string, LegalEntity>;
  /** Desks by id (unique across legal entities), with the LEI they belong to. */
  desks: ReadonlyMap<string, { desk: Desk; lei: string }>;
  /** Accounts by id (unique across legal entities), with the LEI they belong to. */
  accounts: ReadonlyMap<string, { account: Account; lei: string }>;
  regions: ReadonlyMap<string, Region>;
  venues: ReadonlyMap<string, Venue>;
  /**
   * The instrument classes: the one vocabulary of `authorization_details` (RFC 9396), mandate
   * constraints, desks and policies. The operator's declared ones; until it declares any, the
   * built-in `defaultInstrumentClasses`.
   */
  instrumentClasses: ReadonlyMap<string, InstrumentClass>;
  /** False while `instrumentClasses` holds the built-in defaults (nothing declared yet). */
  instrumentClassesDeclared: boolean;
}

/**
 * The instrument classes of a fresh install, so that orders, mandates and policies work before
 * the operator declares the firm's own. The first `instrument_classes` applied replace them
 * entirely (none of these is kept unless declared again).
 */
export const defaultInstrumentClasses: readonly InstrumentClass[] = [
  { id: 'equity', name: 'Equities', complex: false },
  { id: 'bond', name: 'Bonds', complex: false },
  { id: 'fx', name: 'Foreign exchange', complex: false },
  { id: 'future', name: 'Futures', complex: true },
  { id: 'option', name: 'Options', complex: true },
  { id: 'swap', name: 'Swaps', complex: true },
  { id: 'etf', name: 'Exchange-traded funds', complex: false },
  { id: 'crypto', name: 'Crypto-assets', complex: false },
  { id: 'crypto_derivative', name: 'Crypto-asset derivatives', complex: true },
];

/**
 * The entity model's store: legal entities (each with its desks and accounts, as one definition)
 * and the reference lists. Cached in memory and reloaded when any process changes it (the
 * `entities` generation), like clients and resource servers.
 */
export class EntityDirectory {
  readonly #db: Kysely<Database>;
  readonly #clock: Clock;
  readonly #cache: GenerationCache<EntitySnapshot>;

  constructor(db: Kysely<Database>, clock: Clock) {
    this.#db = db;
    this.#clock = clock;
    this.#cache = new GenerationCache(db, 'entities', () => this.#load(), clock);
  }

  /** The current snapshot (at most a second old when another process changed it). */
  snapshot(): Promise<EntitySnapshot> {
    return this.#cache.get();
  }

  /** Creates or replaces a legal entity (with its desks and accounts) inside the caller's transaction. */
  async upsertLegalEntity(trx: Transaction<Database>, entity: LegalEntity): Promise<UpsertOutcome> {
    const definition = JSON.stringify(entity);
    const existing = await trx.selectFrom('legal_entities').select('definition').where('lei', '=', entity.lei).executeTakeFirst();
    if (existing?.definition === definition) return 'unchanged';
    const now = this.#clock.now();
    if (existing) {
      await trx.updateTable('legal_entities').set({ definition, updated_at: now }).where('lei', '=', entity.lei).execute();
    } else {
      await trx.insertInto('legal_entities').values({ lei: entity.lei, definition, created_at: now, updated_at: now }).execute();
    }
    await bumpGeneration(trx, 'entities');
    return existing ? 'updated' : 'created';
  }

  /** Creates or replaces one entry of a reference list inside the caller's transaction. */
  async upsertReference(trx: Transaction<Database>, kind: ReferenceKind, item: Region | Venue | InstrumentClass): Promise<UpsertOutcome> {
    const definition = JSON.stringify(item);
    const existing = await trx
      .selectFrom('entity_references')
      .select('definition')
      .where('kind', '=', kind)
      .where('id', '=', item.id)
      .executeTakeFirst();
    if (existing?.definition === definition) return 'unchanged';
    const now = this.#clock.now();
    if (existing) {
      await trx.updateTable('entity_references').set({ definition, updated_at: now }).where('kind', '=', kind).where('id', '=', item.id).execute();
    } else {
      await trx.insertInto('entity_references').values({ kind, id: item.id, definition, created_at: now, updated_at: now }).execute();
    }
    await bumpGeneration(trx, 'entities');
    return existing ? 'updated' : 'created';
  }

  /** Forces a reload on the next read (after this process changed the data). */
  invalidate(): void {
    this.#cache.invalidate();
  }

  async #load(): Promise<EntitySnapshot> {
    const entities = await this.#db.selectFrom('legal_entities').select('definition').orderBy('lei').execute();
    const references = await this.#db.selectFrom('entity_references').select(['kind', 'definition']).orderBy('kind').orderBy('id').execute();
    return buildSnapshot(
      entities.map((row) => JSON.parse(row.definition) as LegalEntity),
      references.map((row) => ({ kind: row.kind, item: JSON.parse(row.definition) as Region | Venue | InstrumentClass })),
    );
  }
}

/** Indexes legal entities and reference entries; also used to check a plan against what is stored. */
export function buildSnapshot(entities: LegalEntity[], references: { kind: ReferenceKind; item: Region | Venue | InstrumentClass }[]): EntitySnapshot {
  const legalEntities = new Map<string, LegalEntity>();
  const desks = new Map<string, { desk: Desk; lei: string }>();
  const accounts = new Map<string, { account: Account; lei: string }>();
  for (const entity of entities) {
    legalEntities.set(entity.lei, entity);
    for (const desk of entity.desks) desks.set(desk.id, { desk, lei: entity.lei });
    for (const account of entity.accounts) accounts.set(account.id, { account, lei: entity.lei });
  }
  const regions = new Map<string, Region>();
  const venues = new Map<string, Venue>();
  const instrumentClasses = new Map<string, InstrumentClass>();
  for (const { kind, item } of references) {
    if (kind === 'region') regions.set(item.id, item);
    else if (kind === 'venue') venues.set(item.id, item as Venue);
    else instrumentClasses.set(item.id, item as InstrumentClass);
  }
  const instrumentClassesDeclared = instrumentClasses.size > 0;
  if (!instrumentClassesDeclared) for (const item of defaultInstrumentClasses) instrumentClasses.set(item.id, item);
  return { legalEntities, desks, accounts, regions, venues, instrumentClasses, instrumentClassesDeclared };
}
