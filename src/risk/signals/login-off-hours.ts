import { deskClock } from '../../policy/desk-time.ts';
import { loginAccountOf } from '../login-account.ts';
import { clockText, utcClock, withinTradingHours } from '../trading-hours.ts';
import type { RiskSignal } from '../engine.ts';

/**
 * `off_hours` at a sign-in: a person signs in outside the trading hours of the settings, read in their desk's
 * time zone — the first of their desks that has one (src/policy/desk-time.ts, as policies read
 * `context.local_time`); UTC for a person without a desk time zone.
 */
export const loginOffHours: RiskSignal = {
  name: 'off_hours',
  moments: ['login'],
  async evaluate(deps, facts, settings) {
    const account = await loginAccountOf(deps, facts);
    const now = deps.clock.now();
    const desk = account && account.desks.length > 0 ? deskClock(await deps.entities.snapshot(), account.desks, {}, now) : undefined;
    const local = desk ?? utcClock(now);
    if (withinTradingHours(settings.tradingHours, local)) return undefined;
    return { detail: `${clockText(local.minutes)} on ISO weekday ${local.weekday} ${desk ? `at desk ${desk.desk}` : 'UTC'}` };
  },
};
