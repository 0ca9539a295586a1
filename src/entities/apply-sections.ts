import type { Transaction } from 'kysely';
import type { Context } from '../context.ts';
import type { Database } from '../storage/schema.ts';
import type { Validator } from '../validation.ts';
import { readInstrumentClass, readLegalEntity, readRegion, readVenue, type InstrumentClass, type LegalEntity, type ReferenceKind, type Region, type Venue } from './definition.ts';
import type { UpsertOutcome } from './directory.ts';
import { checkEntityReferences, type At } from './plan.ts';

/** The apply sections of the entity model, in the order they are written. */
export const entitySections = ['regions', 'venues', 'instrument_classes', 'legal_entities'] as const;

export interface EntityPlan {
  regions: Region[];
  venues: Venue[];
  instrumentClasses: InstrumentClass[];
  legalEntities: LegalEntity[];
}

type List = <T>(key: string, read: (path: string, item: unknown) => T | undefined) => At<T>;
type Duplicates = (v: Validator, section: string, ids: [string, number][], field: string) => void;

/** Reads and cross-checks the entity sections of an apply document (planApply's helper). */
export async function planEntities(ctx: Pick<Context, 'entities'>, v: Validator, list: List, duplicates: Duplicates): Promise<EntityPlan> {
  const regions = list('regions', (p, x) => readRegion(v, p, x));
  const venues = list('venues', (p, x) => readVenue(v, p, x));
  const instrumentClasses = list('instrument_classes', (p, x) => readInstrumentClass(v, p, x));
  const legalEntities = list('legal_entities', (p, x) => readLegalEntity(v, p, x));
  duplicates(v, 'regions', regions.map((e) => [e.item.id, e.at]), 'id');
  duplicates(v, 'venues', venues.map((e) => [e.item.id, e.at]), 'id');
  duplicates(v, 'instrument_classes', instrumentClasses.map((e) => [e.item.id, e.at]), 'id');
  duplicates(v, 'legal_entities', legalEntities.map((e) => [e.item.lei, e.at]), 'lei');
  checkEntityReferences(v, { legalEntities, regions, venues, instrumentClasses }, await ctx.entities.snapshot());
  return {
    regions: regions.map((e) => e.item),
    venues: venues.map((e) => e.item),
    instrumentClasses: instrumentClasses.map((e) => e.item),
    legalEntities: legalEntities.map((e) => e.item),
  };
}

export type EntityChange = { kind: 'region' | 'venue' | 'instrument_class' | 'legal_entity'; id: string; outcome: UpsertOutcome };

/** Writes the entity sections inside the apply transaction. */
export async function executeEntities(ctx: Pick<Context, 'entities'>, trx: Transaction<Database>, plan: EntityPlan): Promise<EntityChange[]> {
  const changes: EntityChange[] = [];
  const references: [ReferenceKind, (Region | Venue | InstrumentClass)[]][] = [
    ['region', plan.regions],
    ['venue', plan.venues],
    ['instrument_class', plan.instrumentClasses],
  ];
  for (const [kind, items] of references) {
    for (const item of items) changes.push({ kind, id: item.id, outcome: await ctx.entities.upsertReference(trx, kind, item) });
  }
  for (const { kyc: _declared, ...entity } of plan.legalEntities) {
    // The KYC declaration is the KYC record's (src/risk/kyc/apply.ts), never part of the definition.
    changes.push({ kind: 'legal_entity', id: entity.lei, outcome: await ctx.entities.upsertLegalEntity(trx, entity) });
  }
  return changes;
}
