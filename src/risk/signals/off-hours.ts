import type { Context } from '../../context.ts';
import { findUser } from '../../identity/users.ts';
import { deskClock } from '../../policy/desk-time.ts';
import { clockText, utcClock, withinTradingHours } from '../trading-hours.ts';
import type { RiskSignal } from '../engine.ts';

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

/**
 * A person's desks, cached per node for a few minutes: the hot path (a refresh, an evaluation)
 * reads no user row for this signal. A desk change reaches the signal within `desksTtlMs`.
 */
async function desksOf(ctx: Context, userId: string): Promise<string[]> {
  let cache = desksCaches.get(ctx.storage);
  if (!cache) desksCaches.set(ctx.storage, (cache = new Map()));
  const now = ctx.clock.now();
  const cached = cache.get(userId);
  if (cached && now - cached.readAt < desksTtlMs) return cached.desks;
  const desks = (await findUser(ctx, userId))?.desks ?? [];
  cache.delete(userId);
  cache.set(userId, { desks, readAt: now });
  if (cache.size > 50_000) cache.delete(cache.keys().next().value!);
  return desks;
}
