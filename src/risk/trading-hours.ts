import type { RiskSettings } from './settings.ts';

/**
 * Whether a local time falls within the trading hours of the settings (`off_hours`,
 * `admin_off_hours`): on one of their ISO weekdays (1 = Monday … 7 = Sunday), from `start`
 * (inclusive) to `end` (exclusive), in minutes after local midnight. A `start` after `end` is a
 * session across midnight (e.g. 22:00–06:00): the weekday is the local day of the moment.
 */
export function withinTradingHours(hours: RiskSettings['tradingHours'], local: { minutes: number; weekday: number }): boolean {
  if (!hours.weekdays.includes(local.weekday)) return false;
  if (hours.start <= hours.end) return local.minutes >= hours.start && local.minutes < hours.end;
  return local.minutes >= hours.start || local.minutes < hours.end;
}

/** Minutes after midnight and ISO weekday of an instant in UTC. */
export function utcClock(nowMs: number): { minutes: number; weekday: number } {
  const date = new Date(nowMs);
  return { minutes: date.getUTCHours() * 60 + date.getUTCMinutes(), weekday: date.getUTCDay() === 0 ? 7 : date.getUTCDay() };
}

/** "HH:MM" of minutes after midnight, for a signal's reason. */
export function clockText(minutes: number): string {
  return `${String(Math.floor(minutes / 60)).padStart(2, '0')}:${String(minutes % 60).padStart(2, '0')}`;
}
