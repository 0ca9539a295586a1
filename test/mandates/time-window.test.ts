import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isWithinWindow, readTimeWindow, windowEnd, type TimeWindow } from '../../src/mandates/time-window.ts';
import { Validator } from '../../src/validation.ts';

// windowEnd: when the stretch of a time window that contains an instant closes — the cap on the
// lifetime of a token issued under a mandate at that instant (src/mandates/coverage.ts coverEndsAt).

const window = (value: unknown): TimeWindow => {
  const v = new Validator();
  const w = readTimeWindow(v, 'time_window', value);
  assert.deepEqual(v.problems, []);
  return w!;
};
const at = (iso: string) => Date.parse(iso);
const iso = (ms: number) => (Number.isFinite(ms) ? new Date(ms).toISOString() : String(ms));
const weekdays = ['mon', 'tue', 'wed', 'thu', 'fri'];
const everyDay = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];

describe('the end of the stretch of a time window that contains an instant', () => {
  test('is the end of the day\'s hours in the window\'s time zone, in winter and in summer', () => {
    const london = window({ timezone: 'Europe/London', days: weekdays, hours: { from: '08:00', to: '17:30' } });
    // Monday 5 January 2026: GMT (UTC+0).
    assert.equal(iso(windowEnd(london, at('2026-01-05T08:00:00Z'))), '2026-01-05T17:30:00.000Z');
    assert.equal(iso(windowEnd(london, at('2026-01-05T17:29:59.999Z'))), '2026-01-05T17:30:00.000Z');
    // Monday 6 July 2026: BST (UTC+1), 17:30 local is 16:30Z.
    assert.equal(iso(windowEnd(london, at('2026-07-06T15:59:00Z'))), '2026-07-06T16:30:00.000Z');
  });

  test('is the instant itself when the window does not contain it: there is no cover to run on', () => {
    const london = window({ timezone: 'Europe/London', days: weekdays, hours: { from: '08:00', to: '17:30' } });
    assert.equal(iso(windowEnd(london, at('2026-01-05T17:30:00Z'))), '2026-01-05T17:30:00.000Z');
    assert.equal(iso(windowEnd(london, at('2026-01-10T12:00:00Z'))), '2026-01-10T12:00:00.000Z', 'a Saturday');
  });

  test('is the next midnight of the zone for hours that run to 24:00', () => {
    const evening = window({ timezone: 'Europe/London', days: ['mon'], hours: { from: '18:00', to: '24:00' } });
    // Monday 6 July 2026 21:00 BST: the day ends at Tuesday 00:00 BST, 23:00Z.
    assert.equal(iso(windowEnd(evening, at('2026-07-06T20:00:00Z'))), '2026-07-06T23:00:00.000Z');
  });

  test('is the next morning for an overnight window, entered in the evening or still running after midnight', () => {
    const sydney = window({ timezone: 'Australia/Sydney', days: ['fri'], hours: { from: '22:00', to: '06:00' } });
    // Friday 9 January 2026 22:00 AEDT (UTC+11) = 11:00Z; it ends Saturday 06:00 AEDT = Friday 19:00Z.
    assert.equal(iso(windowEnd(sydney, at('2026-01-09T11:00:00Z'))), '2026-01-09T19:00:00.000Z');
    assert.equal(iso(windowEnd(sydney, at('2026-01-09T18:00:00Z'))), '2026-01-09T19:00:00.000Z', 'Saturday 05:00 local, still Friday\'s window');
  });

  test('follows the wall clock across a change to or from daylight saving time during the stretch', () => {
    // London springs forward on Sunday 29 March 2026 at 01:00Z (01:00 GMT → 02:00 BST): Saturday
    // night's window, entered at 23:00 GMT, ends at 06:00 BST = 05:00Z, not 06:00Z.
    const saturdayNight = window({ timezone: 'Europe/London', days: ['sat'], hours: { from: '22:00', to: '06:00' } });
    assert.equal(iso(windowEnd(saturdayNight, at('2026-03-28T23:00:00Z'))), '2026-03-29T05:00:00.000Z');
    // And falls back on Sunday 25 October 2026 at 01:00Z (02:00 BST → 01:00 GMT): entered at
    // 22:00 BST (21:00Z), it ends at 06:00 GMT = 06:00Z, not 05:00Z.
    assert.equal(iso(windowEnd(saturdayNight, at('2026-10-24T21:00:00Z'))), '2026-10-25T06:00:00.000Z');
    // Sydney leaves daylight saving on Sunday 5 April 2026 (03:00 AEDT → 02:00 AEST, 16:00Z):
    // Saturday 22:00 AEDT (11:00Z) to Sunday 06:00 AEST (+10) = 20:00Z.
    const sydney = window({ timezone: 'Australia/Sydney', days: ['sat'], hours: { from: '22:00', to: '06:00' } });
    assert.equal(iso(windowEnd(sydney, at('2026-04-04T11:00:00Z'))), '2026-04-04T20:00:00.000Z');
  });

  test('is the moment the clock springs forward when the end falls in the skipped hour', () => {
    // 01:30 does not exist in London on 29 March 2026: the clock goes from 00:59 GMT to 02:00 BST at 01:00Z.
    const early = window({ timezone: 'Europe/London', days: ['sun'], hours: { from: '00:00', to: '01:30' } });
    assert.equal(iso(windowEnd(early, at('2026-03-29T00:30:00Z'))), '2026-03-29T01:00:00.000Z');
    assert.equal(isWithinWindow(early, at('2026-03-29T01:00:00Z')), false);
    // Saturday's range ends at Sunday 01:00, which the clock skips straight into Sunday's range
    // (from 01:30): nothing between them is outside, so the stretch runs on to Monday 01:00 BST.
    const nearlyAllDay = window({ timezone: 'Europe/London', days: ['sat', 'sun'], hours: { from: '01:30', to: '01:00' } });
    assert.equal(iso(windowEnd(nearlyAllDay, at('2026-03-28T12:00:00Z'))), '2026-03-30T00:00:00.000Z');
  });

  test('is the first time the clock shows the end when the end falls in the repeated hour, and the clock turning back before the start ends the stretch', () => {
    // 01:00–01:59 happens twice in London on 25 October 2026: first BST (00:00–00:59Z), then GMT (01:00–01:59Z).
    const early = window({ timezone: 'Europe/London', days: ['sun'], hours: { from: '00:00', to: '01:30' } });
    assert.equal(iso(windowEnd(early, at('2026-10-24T23:30:00Z'))), '2026-10-25T00:30:00.000Z', 'the first 01:30, BST');
    assert.equal(iso(windowEnd(early, at('2026-10-25T01:10:00Z'))), '2026-10-25T01:30:00.000Z', 'inside again during the second 01:00–01:30: until the second 01:30');
    // From 01:15: at 01:30 BST (00:30Z) inside; at 01:00Z the clock shows 01:00 GMT, before the start.
    const late = window({ timezone: 'Europe/London', days: ['sun'], hours: { from: '01:15', to: '03:00' } });
    assert.equal(iso(windowEnd(late, at('2026-10-25T00:30:00Z'))), '2026-10-25T01:00:00.000Z');
    assert.equal(isWithinWindow(late, at('2026-10-25T01:00:00Z')), false);
  });

  test('runs on through whole days that join, across a change of the clocks, and never ends for every whole day', () => {
    const weekdaysAllDay = window({ timezone: 'Europe/London', days: weekdays, hours: { from: '00:00', to: '24:00' } });
    // Monday 23 March 2026: the stretch is Monday 00:00 to Saturday 00:00 GMT.
    assert.equal(iso(windowEnd(weekdaysAllDay, at('2026-03-23T10:00:00Z'))), '2026-03-28T00:00:00.000Z');
    const longWeekend = window({ timezone: 'Europe/London', days: ['fri', 'sat', 'sun', 'mon'], hours: { from: '00:00', to: '24:00' } });
    // Friday 27 March (GMT) to Tuesday 31 March 00:00 BST = Monday 23:00Z.
    assert.equal(iso(windowEnd(longWeekend, at('2026-03-27T12:00:00Z'))), '2026-03-30T23:00:00.000Z');
    const always = window({ timezone: 'Europe/London', days: everyDay, hours: { from: '00:00', to: '24:00' } });
    assert.equal(windowEnd(always, at('2026-03-27T12:00:00Z')), Infinity);
  });

  test('is `to` of an absolute window that contains the instant', () => {
    const auction = window({ from: '2026-05-01T08:00:00+01:00', to: '2026-05-01T09:00:00+01:00' });
    assert.equal(iso(windowEnd(auction, at('2026-05-01T07:00:00Z'))), '2026-05-01T08:00:00.000Z');
    assert.equal(iso(windowEnd(auction, at('2026-05-01T07:59:59Z'))), '2026-05-01T08:00:00.000Z');
    assert.equal(iso(windowEnd(auction, at('2026-05-01T08:00:00Z'))), '2026-05-01T08:00:00.000Z', 'outside: the instant itself');
    assert.equal(iso(windowEnd(auction, at('2026-05-01T06:00:00Z'))), '2026-05-01T06:00:00.000Z');
  });

  test('agrees with isWithinWindow: every instant from the start to the end is inside, the end is not (both 2026 changes of the clocks in four zones)', () => {
    const windows = ['Europe/London', 'America/New_York', 'Australia/Sydney', 'Asia/Tokyo'].flatMap((timezone) =>
      [
        { from: '08:00', to: '17:30' },
        { from: '22:00', to: '06:00' },
        { from: '00:30', to: '02:30' },
        { from: '01:30', to: '01:00' },
        { from: '18:00', to: '24:00' },
        { from: '00:00', to: '24:00' },
      ].map((hours) => window({ timezone, days: ['fri', 'sat', 'sun', 'mon'], hours })),
    );
    // The weekends of the changes: Europe and America in March and October/November, Sydney in April and October.
    const weekends = ['2026-03-06', '2026-03-27', '2026-04-03', '2026-10-02', '2026-10-23', '2026-10-30'].map((day) => at(`${day}T00:00:00Z`));
    const step = 41 * 60_000;
    let checked = 0;
    for (const w of windows) {
      for (const start of weekends) {
        for (let t = start; t < start + 4 * 86_400_000; t += step) {
          const end = windowEnd(w, t);
          const label = `${JSON.stringify(w)} at ${iso(t)}: ${iso(end)}`;
          if (!isWithinWindow(w, t)) {
            assert.equal(end, t, label);
            continue;
          }
          assert.ok(end > t, label);
          if (!Number.isFinite(end)) continue;
          assert.equal(isWithinWindow(w, end), false, `the end is outside: ${label}`);
          assert.equal(isWithinWindow(w, end - 1), true, `the moment before the end is inside: ${label}`);
          for (let u = t; u < end; u += Math.max(13 * 60_000, Math.floor((end - t) / 40))) assert.equal(isWithinWindow(w, u), true, `inside at ${iso(u)}: ${label}`);
          checked++;
        }
      }
    }
    assert.ok(checked > 1000, `${checked} instants inside a window checked`);
  });
});
