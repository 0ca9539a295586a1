import type { EntitySnapshot } from '../entities/directory.ts';

/**
 * The local time at a person's desk, for policies on trading hours (`context.local_time`,
 * `context.local_weekday`; docs/policy.md). Which desk, when the person has several:
 * 1. for an account: the account's desk, when it is one of the person's;
 * 2. for an instrument: the first of the person's desks (in their record's order) that trades its
 *    class and has a time zone;
 * 3. otherwise: the first of the person's desks that has a time zone.
 * None with a time zone (`legal_entities[].desks[].time_zone`): the attributes are absent, and a
 * policy reading them must test `context has local_time` (strict validation makes it).
 */
export function deskClock(
  snapshot: EntitySnapshot,
  desks: readonly string[],
  about: { instrumentClass?: string | undefined; accountDesk?: string | undefined },
  nowMs: number,
): { minutes: number; weekday: number; desk: string } | undefined {
  const zoned = desks.flatMap((id) => {
    const desk = snapshot.desks.get(id)?.desk;
    return desk?.time_zone !== undefined ? [{ id, zone: desk.time_zone, classes: desk.product_classes }] : [];
  });
  const chosen =
    (about.accountDesk !== undefined ? zoned.find((d) => d.id === about.accountDesk) : undefined) ??
    (about.instrumentClass !== undefined ? zoned.find((d) => d.classes.includes(about.instrumentClass!)) : undefined) ??
    zoned[0];
  if (!chosen) return undefined;
  const clock = localClock(chosen.zone, nowMs);
  return clock && { ...clock, desk: chosen.id };
}

const weekdays: Record<string, number> = { Mon: 1, Tue: 2, Wed: 3, Thu: 4, Fri: 5, Sat: 6, Sun: 7 };
const formatters = new Map<string, Intl.DateTimeFormat>();

/** Minutes after local midnight (0–1439) and ISO weekday (1 = Monday … 7 = Sunday) in `zone`. */
export function localClock(zone: string, nowMs: number): { minutes: number; weekday: number } | undefined {
  let format = formatters.get(zone);
  if (!format) {
    try {
      format = new Intl.DateTimeFormat('en-GB', { timeZone: zone, hourCycle: 'h23', hour: '2-digit', minute: '2-digit', weekday: 'short' });
    } catch {
      return undefined;
    }
    formatters.set(zone, format);
  }
  const parts = Object.fromEntries(format.formatToParts(new Date(nowMs)).map((p) => [p.type, p.value]));
  const weekday = weekdays[parts.weekday ?? ''];
  const minutes = Number(parts.hour) * 60 + Number(parts.minute);
  return weekday !== undefined && Number.isInteger(minutes) ? { minutes, weekday } : undefined;
}
