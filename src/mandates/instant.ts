import type { Validator } from '../validation.ts';

// RFC 3339 §5.6 date-time with a mandatory offset: an instant, never a local time.
const instantPattern = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,3})?)?(Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)$/i;

/**
 * Reads an RFC 3339 timestamp with an offset (`2026-05-01T08:00:00Z`, `2026-05-01T09:00+01:00`)
 * as epoch milliseconds. Checks the calendar (no 30 February), which Date.parse does not.
 */
export function readInstant(v: Validator, path: string, value: unknown): number | undefined {
  const message = 'must be a date and time with an offset, such as 2026-05-01T08:00:00Z';
  if (typeof value !== 'string') return v.fail(path, message);
  const m = instantPattern.exec(value);
  if (!m) return v.fail(path, message);
  const [year, month, day, hour, minute, second] = [m[1], m[2], m[3], m[4], m[5], m[6] ?? '0'].map(Number) as [number, number, number, number, number, number];
  const daysInMonth = new Date(Date.UTC(year, month, 0)).getUTCDate();
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth || hour > 23 || minute > 59 || second > 59) return v.fail(path, 'is not a valid date and time');
  const ms = Date.parse(value);
  if (!Number.isFinite(ms) || year < 2000 || year > 9999) return v.fail(path, 'must be a date and time from the year 2000 on');
  return ms;
}

/** Epoch ms as an ISO 8601 UTC timestamp (what views and audit events show). */
export function isoTime(ms: number): string {
  return new Date(ms).toISOString();
}
