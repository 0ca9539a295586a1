import type { EntitySnapshot } from '../entities/directory.ts';
import type { LegalEntity } from '../entities/definition.ts';
import type { ResourceServer } from '../resource-servers/definition.ts';

/** The regions a legal entity permits its data in: its home region and its declared data_regions. */
export function permittedRegions(entity: Pick<LegalEntity, 'home_region' | 'data_regions'>): string[] {
  return [...new Set([entity.home_region, ...(entity.data_regions ?? [])])].sort();
}

export type Residency = { ok: true } | { ok: false; reason: string };

/**
 * Data residency (DESIGN §3): a token about a subject may go to a resource server that declares a
 * region only when every legal entity the subject belongs to (a person's desks' firms, a client's
 * owner, a partner subject's mapped LEI) permits that region. Fails closed: a regional resource
 * server gets no token for a subject with no known legal entity. A resource server without a
 * region is not restricted here (policies may still restrict it).
 */
export function checkResidency(snapshot: EntitySnapshot, subjectLeis: readonly string[], subject: string, server: ResourceServer): Residency {
  if (server.region === undefined) return { ok: true };
  const known = subjectLeis.map((lei) => snapshot.legalEntities.get(lei)).filter((e) => e !== undefined);
  if (known.length === 0) {
    return { ok: false, reason: `data residency: ${server.identifier} processes data in region ${server.region}, and no legal entity is known for ${subject} to permit it` };
  }
  for (const entity of known) {
    if (!permittedRegions(entity).includes(server.region)) {
      return { ok: false, reason: `data residency: legal entity ${entity.lei} does not permit its data in region ${server.region} (${server.identifier})` };
    }
  }
  return { ok: true };
}
