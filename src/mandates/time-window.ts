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
  return inHours(window, wallClock(window.timezone, at));
}

/** Whether a wall-clock reading of the window's zone is within its hours on its days. */
function inHours(window: RecurringWindow, { day, minutes }: { day: Weekday; minutes: number }): boolean {
  const from = toMinutes(window.hours.from);
  const to = toMinutes(window.hours.to);
  if (from < to) return window.days.includes(day) && from <= minutes && minutes < to;
  // Overnight: the evening of a listed day, or the morning after one.
  const previous = weekdays[(weekdays.indexOf(day) + 6) % 7]!;
  return (window.days.includes(day) && minutes >= from) || (window.days.includes(previous) && minutes < to);
}

/**
 * When the stretch of the window that contains `at` (epoch ms) closes: the first instant after
 * `at` that `isWithinWindow` puts outside it. What a token issued under a mandate at `at` may live
 * until (src/mandates/coverage.ts `coverEndsAt`). That is:
 * - `at` itself when the window does not contain `at` (nothing is covered);
 * - absolute: `to`;
 * - recurring: the day's `hours.to` by the zone's wall clock — the next morning's for an overnight
 *   range entered in its evening, the next midnight for `24:00`. Ranges that join are one stretch,
 *   since no instant between them is outside the window: whole days (`00:00`–`24:00`) of
 *   consecutive listed days (mon–fri: Monday to Saturday 00:00; `Infinity` when every day is
 *   listed whole), and a range whose end the clock skips when springing forward into the next one.
 * Daylight saving: the end is when the clock first shows `hours.to`. An end skipped by the clock
 * springing forward (01:30 on a night that goes from 01:00 to 02:00) is the moment it springs; an
 * end the clock shows twice when it falls back is the first time; and a clock falling back to
 * before `hours.from` ends the stretch there. Assumes no two changes of a zone's offset within the
 * day or two one range spans, as in every zone's rules.
 */
export function windowEnd(window: TimeWindow, at: number): number {
  if (!('timezone' in window)) return Date.parse(window.from) <= at && at < Date.parse(window.to) ? Date.parse(window.to) : at;
  const wholeDay = window.hours.from === '00:00' && window.hours.to === '24:00';
  if (wholeDay && window.days.length === weekdays.length) return isWithinWindow(window, at) ? Infinity : at;
  let end = at;
  // Each turn ends one day's range, and goes on into the next when that one has begun by then:
  // whole days, or a range whose end the clock skipped when springing forward into the next.
  for (let turn = 0; turn <= weekdays.length; turn++) {
    const local = zoneClock(window.timezone, end);
    if (!inHours(window, local)) return end;
    end = rangeEnd(window, end, local);
  }
  return end; // Not reached (a week of joined days is every day whole): end at the last range, failing closed.
}

/** The end of the range (one listed day's hours) that contains `at`; `local`: the zone's clock at `at`. */
function rangeEnd(window: RecurringWindow, at: number, local: ZoneClock): number {
  const from = toMinutes(window.hours.from);
  const to = toMinutes(window.hours.to);
  // An overnight range entered in its evening ends on the next day; one in its morning, today.
  const nextDay = from > to && local.minutes >= from;
  const wallEnd = local.midnight + ((nextDay ? 24 * 60 : 0) + to) * minuteMs;
  return whenClockShows(window, wallEnd, at, local.offset);
}

/**
 * The first instant from `at` (inside the range) at which the zone's clock shows `wallEnd` or
 * later (wall time as UTC ms) — or at which a change of offset takes the clock out of the window
 * (forward past the end, or back before the start). `offset`: the zone's offset at `at`.
 */
function whenClockShows(window: RecurringWindow, wallEnd: number, at: number, offset: number): number {
  let t = at;
  for (let change = 0; change < 3; change++) {
    // When the clock shows the end if the offset holds until then.
    const reached = wallEnd - offset;
    if (zoneClock(window.timezone, reached).offset === offset) return reached;
    t = offsetChange(window.timezone, t, reached, offset);
    const local = zoneClock(window.timezone, t);
    if (!inHours(window, local)) return t;
    offset = local.offset;
    // Sprung forward past the end into the next day's range: this range ends here (and the window goes on).
    if (wallEnd - offset <= t) return t;
  }
  return t; // More changes than any zone makes in a stretch: end at the last one (fail closed).
}

/** The first whole minute in (from, to] at which the zone's offset is no longer `offset` (it is not at `to`). */
function offsetChange(timezone: string, from: number, to: number, offset: number): number {
  let before = Math.floor(from / minuteMs);
  let after = Math.ceil(to / minuteMs);
  while (after - before > 1) {
    const middle = Math.floor((before + after) / 2);
    if (zoneClock(timezone, middle * minuteMs).offset === offset) before = middle;
    else after = middle;
  }
  return after * minuteMs;
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

const minuteMs = 60_000;

const dateFormatters = new Map<string, Intl.DateTimeFormat>();

/** As `formatter`, with the date: for the arithmetic of a window's end (a token under a window). */
function dateFormatter(timezone: string): Intl.DateTimeFormat {
  let f = dateFormatters.get(timezone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', { timeZone: timezone, weekday: 'short', year: 'numeric', month: 'numeric', day: 'numeric', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
    if (dateFormatters.size < 1000) dateFormatters.set(timezone, f);
  }
  return f;
}

/**
 * A zone's wall clock at an instant, to the minute: the weekday and minutes since local midnight
 * (as `wallClock`), that midnight as UTC ms (`Date.UTC` of the local date), and the zone's offset
 * (local minus UTC, ms).
 */
interface ZoneClock {
  day: Weekday;
  minutes: number;
  midnight: number;
  offset: number;
}

function zoneClock(timezone: string, at: number): ZoneClock {
  const minute = Math.floor(at / minuteMs) * minuteMs;
  let day: Weekday = 'mon';
  const n: Record<string, number> = {};
  for (const part of dateFormatter(timezone).formatToParts(minute)) {
    if (part.type === 'weekday') day = part.value.toLowerCase().slice(0, 3) as Weekday;
    else if (part.type !== 'literal') n[part.type] = Number(part.value);
  }
  const midnight = Date.UTC(n.year!, n.month! - 1, n.day!);
  const minutes = n.hour! * 60 + n.minute!;
  return { day, minutes, midnight, offset: midnight + minutes * minuteMs - minute };
}
