import { join, type Validator } from '../validation.ts';
import { readInstant } from './instant.ts';

/** Days of the week as a recurring time window names them, in week order (ISO 8601: Monday first). */
export const weekdays = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'] as const;
export type Weekday = (typeof weekdays)[number];

/**
 * Trading hours on some days of the week, in a timezone's wall-clock time: `hours.from` (inclusive)
 * to `hours.to` (exclusive), `HH:MM`. When `to` is earlier than `from` the window runs overnight and
 * belongs to the day it starts on (`fri 22:00–06:00` covers Saturday 05:59 but not Sunday 05:59).
 * `00:00`–`24:00` is the whole day.
 */
export interface RecurringWindow {
  /** An IANA timezone (`Europe/London`), as Intl resolves it. */
  timezone: string;
  days: Weekday[];
  hours: { from: string; to: string };
}

/** One stretch of absolute time, `from` (inclusive) to `to` (exclusive), ISO 8601 instants in UTC. */
export interface AbsoluteWindow {
  from: string;
  to: string;
}

export type TimeWindow = RecurringWindow | AbsoluteWindow;

const hourPattern = /^([01]\d|2[0-3]):[0-5]\d$|^24:00$/;

/** Validates a `time_window`: recurring (`timezone`, `days`, `hours`) or absolute (`from`, `to`). */
export function readTimeWindow(v: Validator, path: string, value: unknown): TimeWindow | undefined {
  const o = v.object(path, value);
  if (!o) return undefined;
  const before = v.problems.length;
  if (o.timezone !== undefined || o.days !== undefined || o.hours !== undefined) {
    v.knownKeys(path, o, ['timezone', 'days', 'hours']);
    const timezone = readTimezone(v, join(path, 'timezone'), o.timezone);
    const days = v.array(join(path, 'days'), o.days, (p, d) => v.string(p, d, { oneOf: weekdays }) as Weekday | undefined, { nonEmpty: true, unique: true });
    const hours = v.object(join(path, 'hours'), o.hours);
    let from: string | undefined;
    let to: string | undefined;
    if (hours) {
      v.knownKeys(join(path, 'hours'), hours, ['from', 'to']);
      const hhmm = { pattern: hourPattern, patternMessage: 'must be a time HH:MM (00:00 to 24:00)' };
      from = v.string(join(path, 'hours.from'), hours.from, hhmm);
      to = v.string(join(path, 'hours.to'), hours.to, hhmm);
      if (from === '24:00') from = v.fail(join(path, 'hours.from'), 'must be earlier than 24:00');
      if (from !== undefined && to !== undefined && from === to) v.fail(join(path, 'hours.to'), 'must differ from hours.from (00:00 to 24:00 is the whole day)');
    }
    if (v.problems.length !== before || !timezone || !days || from === undefined || to === undefined) return undefined;
    return { timezone, days: weekdays.filter((d) => days.includes(d)), hours: { from, to } };
  }
  v.knownKeys(path, o, ['from', 'to']);
  const from = readInstant(v, join(path, 'from'), o.from);
  const to = readInstant(v, join(path, 'to'), o.to);
  if (from !== undefined && to !== undefined && to <= from) v.fail(join(path, 'to'), 'must be later than from');
  if (v.problems.length !== before || from === undefined || to === undefined) return undefined;
  return { from: new Date(from).toISOString(), to: new Date(to).toISOString() };
}

function readTimezone(v: Validator, path: string, value: unknown): string | undefined {
  const name = v.string(path, value, { maxLength: 64 });
  if (name === undefined) return undefined;
  try {
    return formatter(name).resolvedOptions().timeZone;
  } catch {
    return v.fail(path, 'must be an IANA timezone such as Europe/London');
  }
}

/** True when `at` (epoch ms) falls inside the window. */
export function isWithinWindow(window: TimeWindow, at: number): boolean {
  if (!('timezone' in window)) return Date.parse(window.from) <= at && at < Date.parse(window.to);
  const { day, minutes } = wallClock(window.timezone, at);
  const from = toMinutes(window.hours.from);
  const to = toMinutes(window.hours.to);
  if (from < to) return window.days.includes(day) && from <= minutes && minutes < to;
  // Overnight: the evening of a listed day, or the morning after one.
  const previous = weekdays[(weekdays.indexOf(day) + 6) % 7]!;
  return (window.days.includes(day) && minutes >= from) || (window.days.includes(previous) && minutes < to);
}

/** A recurring window in words, for refusal reasons: `mon-fri 08:00-17:30 Europe/London`. */
export function describeWindow(window: TimeWindow): string {
  if (!('timezone' in window)) return `${window.from} to ${window.to}`;
  return `${window.days.join(',')} ${window.hours.from}-${window.hours.to} ${window.timezone}`;
}

function toMinutes(hhmm: string): number {
  return Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3, 5));
}

const formatters = new Map<string, Intl.DateTimeFormat>();

/** One formatter per timezone (constructing one costs far more than using it). Throws RangeError for an unknown zone. */
function formatter(timezone: string): Intl.DateTimeFormat {
  let f = formatters.get(timezone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', { timeZone: timezone, weekday: 'short', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
    if (formatters.size < 1000) formatters.set(timezone, f);
  }
  return f;
}

/** The weekday and minutes since local midnight of `at` in `timezone`. */
function wallClock(timezone: string, at: number): { day: Weekday; minutes: number } {
  let day: Weekday = 'mon';
  let hour = 0;
  let minute = 0;
  for (const part of formatter(timezone).formatToParts(at)) {
    if (part.type === 'weekday') day = part.value.toLowerCase().slice(0, 3) as Weekday;
    else if (part.type === 'hour') hour = Number(part.value);
    else if (part.type === 'minute') minute = Number(part.value);
  }
  return { day, minutes: hour * 60 + minute };
}
