import type { Expression } from 'kysely';
import type { Context } from '../context.ts';
import type { Flight } from '../storage/flight.ts';
import { offHoursAtIssuance, readDesksAhead } from './signals/off-hours.ts';

/** Adds to a flight the reads ahead for the person `personId` (a one-row subquery) names. */
export type PersonReadAhead = (flight: Flight, personId: Expression<string | null>) => void;

/**
 * What the decision of a person's token issuance reads about them, each in a round trip of its
 * own otherwise: their KYC record (the decision's entities, src/policy/request.ts) and, when the
 * `off_hours` signal runs, their desks (src/risk/signals/off-hours.ts). A grant that reads what
 * names the person (a code) reads these with it, in the same flight: the issuance then finds them
 * in the caches those reads fill (docs/authorization.md "Database round trips").
 */
export async function issuanceReadAhead(ctx: Pick<Context, 'risk' | 'storage' | 'clock'>): Promise<PersonReadAhead> {
  const desks = offHoursAtIssuance(await ctx.risk.settings.get());
  return (flight, personId) => {
    ctx.risk.kyc.readAhead(flight, personId);
    if (desks) readDesksAhead(ctx, flight, personId);
  };
}
