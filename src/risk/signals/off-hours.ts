import { sql, type Expression } from 'kysely';
import type { Context } from '../../context.ts';
import { countReadAheadFailure } from '../read-ahead-metrics.ts';
import type { Flight } from '../../storage/flight.ts';
import { findUser } from '../../identity/users.ts';
import { deskClock } from '../../policy/desk-time.ts';
import { clockText, utcClock, withinTradingHours } from '../trading-hours.ts';
import type { RiskSignal } from '../engine.ts';
import { BoundedMap } from '../../jose/bounded-map.ts';
import { withinSpan } from '../../clock.ts';

/**
 * `off_hours` at a token issuance or an AuthZEN evaluation about a person: the local time at their
 * desk (src/policy/desk-time.ts: the first of their desks with a time zone; UTC when none of their
 * desks has one) is outside the trading hours of the settings. A person on no desk has no trading
 * hours: nothing fires. Clients and agents trade around the clock: never assessed.
 */
export const offHours: RiskSignal = {
  name: 'off_hours',
  moments: ['issuance', 'evaluation'],
  async evaluate(ctx, facts, settings) {
    if (facts.principal.type !== 'User') return undefined;
    const desks = await desksOf(ctx, facts.principal.id);
    if (desks.length === 0) return undefined;
    const now = ctx.clock.now();
    const zoned = deskClock(await ctx.entities.snapshot(), desks, {}, now);
    const clock = zoned ?? utcClock(now);
    if (withinTradingHours(settings.tradingHours, clock)) return undefined;
    return { detail: `${clockText(clock.minutes)} on ISO weekday ${clock.weekday} ${zoned ? `at desk ${zoned.desk}` : '(UTC: no desk time zone)'}` };
  },
};

/** How long a person's desks are trusted on this node before they are read again. */
const desksTtlMs = 5 * 60_000;
const desksCaches = new WeakMap<object, Map<string, { desks: string[]; readAt: number }>>();
/** People whose desks a node keeps at most (the least recently read are forgotten first). */
const desksKept = 50_000;

/**
 * A person's desks, cached per node for a few minutes: the hot path (a refresh, an evaluation)
 * reads no user row for this signal. A desk change reaches the signal within `desksTtlMs`.
 */
async function desksOf(ctx: Context, userId: string): Promise<string[]> {
  const cache = desksCacheOf(ctx);
  const now = ctx.clock.now();
  const cached = cache.get(userId);
  if (cached && withinSpan(now, cached.readAt, desksTtlMs)) return cached.desks;
  const desks = (await findUser(ctx, userId))?.desks ?? [];
  keepDesks(cache, userId, desks, now);
  return desks;
}

/**
 * Reads ahead, as one statement in `flight`, the desks of the person `personId` names (a one-row
 * subquery: the flight also reads what names them, a code by its hash), when this signal will ask
 * for them: the issuance's assessment then finds them in memory instead of reading the person.
 */
export function readDesksAhead(ctx: Pick<Context, 'storage' | 'clock'>, flight: Flight, personId: Expression<string | null>): void {
  const read = flight.run(sql<{ person_id: string | null; desks: string | null }>`select p.person_id, u.desks from (select ${personId} as person_id) p join users u on u.id = p.person_id`.compile(ctx.storage.db));
  const readAt = ctx.clock.now();
  read
    .then(({ rows }) => {
      const row = rows[0];
      if (row?.person_id == null || row.desks === null) return;
      keepDesks(desksCacheOf(ctx), row.person_id, JSON.parse(row.desks) as string[], readAt);
    })
    .catch((error: unknown) => countReadAheadFailure('desks', error)); // the read that would have been made is made then
}

/** Whether the signal runs at issuance under these settings: only then is a read ahead worth a statement. */
export function offHoursAtIssuance(settings: { enabled: boolean; weights: Record<string, number> }): boolean {
  return settings.enabled && (settings.weights[offHours.name] ?? 0) > 0;
}

function desksCacheOf(ctx: Pick<Context, 'storage'>): Map<string, { desks: string[]; readAt: number }> {
  let cache = desksCaches.get(ctx.storage);
  if (!cache) desksCaches.set(ctx.storage, (cache = new BoundedMap(desksKept)));
  return cache;
}

function keepDesks(cache: Map<string, { desks: string[]; readAt: number }>, userId: string, desks: string[], readAt: number): void {
  cache.delete(userId);
  cache.set(userId, { desks, readAt });
}
