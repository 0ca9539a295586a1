import type { Validator } from '../validation.ts';
import type { InstrumentClass, LegalEntity, Region, Venue } from './definition.ts';
import type { EntitySnapshot } from './directory.ts';

/** Entries of a section with their index in the document, for exact problem paths. */
export type At<T> = { item: T; at: number }[];

/**
 * The checks across entries of `legal_entities`, `regions`, `venues` and `instrument_classes`,
 * and against what is stored: a desk or account id belongs to one legal entity only; every region
 * and product class named is declared (in this document or before).
 */
export function checkEntityReferences(
  v: Validator,
  document: { legalEntities: At<LegalEntity>; regions: At<Region>; venues: At<Venue>; instrumentClasses: At<InstrumentClass> },
  stored: EntitySnapshot,
): void {
  const regions = new Set([...stored.regions.keys(), ...document.regions.map((e) => e.item.id)]);
  const classes = instrumentClassesAfter(stored, document.instrumentClasses.map((e) => e.item.id));
  const replaced = new Set(document.legalEntities.map((e) => e.item.lei));
  // The first declared classes replace the built-in defaults, which stored desks may name.
  if (!stored.instrumentClassesDeclared && document.instrumentClasses.length > 0) {
    for (const [id, { desk, lei }] of stored.desks) {
      if (replaced.has(lei)) continue;
      for (const c of desk.product_classes) {
        if (!classes.has(c)) v.fail('instrument_classes', `declared instrument classes replace the built-in ones, but desk ${id} of legal entity ${lei} names "${c}": declare it too`);
      }
    }
  }
  const region = (path: string, id: string) => {
    if (!regions.has(id)) v.fail(path, `"${id}" is not a declared region (add it under regions)`);
  };

  // Ids owned by other legal entities: stored ones not replaced by this document, then the document's.
  const deskOwner = new Map<string, string>();
  const accountOwner = new Map<string, string>();
  for (const [id, { lei }] of stored.desks) if (!replaced.has(lei)) deskOwner.set(id, `legal entity ${lei}`);
  for (const [id, { lei }] of stored.accounts) if (!replaced.has(lei)) accountOwner.set(id, `legal entity ${lei}`);

  for (const { item: entity, at } of document.legalEntities) {
    const path = `legal_entities[${at}]`;
    region(`${path}.home_region`, entity.home_region);
    entity.data_regions?.forEach((r, i) => region(`${path}.data_regions[${i}]`, r));
    entity.desks.forEach((desk, i) => {
      const owner = deskOwner.get(desk.id);
      if (owner) v.fail(`${path}.desks[${i}].id`, `"${desk.id}" is already a desk of ${owner}`);
      else deskOwner.set(desk.id, path);
      desk.product_classes.forEach((c, j) => {
        if (!classes.has(c)) v.fail(`${path}.desks[${i}].product_classes[${j}]`, `"${c}" is not a declared instrument class (add it under instrument_classes)`);
      });
    });
    entity.accounts.forEach((account, i) => {
      const owner = accountOwner.get(account.id);
      if (owner) v.fail(`${path}.accounts[${i}].id`, `"${account.id}" is already an account of ${owner}`);
      else accountOwner.set(account.id, path);
      region(`${path}.accounts[${i}].region`, account.region);
    });
  }
  for (const { item: venue, at } of document.venues) {
    if (venue.region !== undefined) region(`venues[${at}].region`, venue.region);
  }
}

/**
 * The instrument classes once a document declaring `declared` is applied: the stored declared
 * ones and the document's; the document's alone while the stored ones are the built-in defaults
 * (declared classes replace the defaults entirely).
 */
export function instrumentClassesAfter(stored: EntitySnapshot, declared: readonly string[]): Set<string> {
  if (!stored.instrumentClassesDeclared && declared.length > 0) return new Set(declared);
  return new Set([...stored.instrumentClasses.keys(), ...declared]);
}
