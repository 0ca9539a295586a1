import { clockText, utcClock, withinTradingHours } from '../trading-hours.ts';
import type { RiskSignal } from '../engine.ts';

/** `admin_off_hours` (intrusion signal): an admin API or CLI write outside the trading hours of the settings, in UTC. */
export const adminOffHours: RiskSignal = {
  name: 'admin_off_hours',
  moments: ['admin'],
  evaluate(deps, _facts, settings) {
    const local = utcClock(deps.clock.now());
    return withinTradingHours(settings.tradingHours, local) ? undefined : { detail: `${clockText(local.minutes)} UTC on ISO weekday ${local.weekday}` };
  },
};
