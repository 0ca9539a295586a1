import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { coverEndsAt } from '../../src/mandates/coverage.ts';
import { mandateEntry, monday0900London } from './fixture.ts';

// coverEndsAt: the one rule for how long a token issued under a mandate version may live.

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/** A version of the example mandate (mon–fri 08:00–17:30 Europe/London, to 1 May 2027) with `overrides`. */
function version(overrides: Record<string, unknown> = {}, reassignBy: number | null = null) {
  return { terms: mandateEntry(overrides).terms, reassignBy };
}

describe('when a mandate version stops covering what is done under it from an instant on', () => {
  test('is the close of the time window\'s current stretch when that comes before the version\'s end', () => {
    // Monday 4 May 2026 09:00 BST: the window closes at 17:30 BST = 16:30Z.
    assert.equal(iso(coverEndsAt(version(), monday0900London)), '2026-05-04T16:30:00.000Z');
  });

  test('is effective_to, or the reassignment deadline, when that comes first', () => {
    assert.equal(iso(coverEndsAt(version({ effective_to: '2026-05-04T12:00:00Z' }), monday0900London)), '2026-05-04T12:00:00.000Z');
    assert.equal(iso(coverEndsAt(version({}, Date.parse('2026-05-04T10:00:00Z')), monday0900London)), '2026-05-04T10:00:00.000Z');
  });

  test('is the instant itself outside the window: nothing may be issued then', () => {
    const saturday = Date.parse('2026-05-09T10:00:00Z');
    assert.equal(coverEndsAt(version(), saturday), saturday);
  });

  test('is the version\'s end without a time window, and null for an open-ended version without one', () => {
    const { time_window: _, ...unlimited } = mandateEntry().terms.constraints;
    const open = { terms: { ...mandateEntry().terms, constraints: unlimited, effectiveTo: null }, reassignBy: null };
    assert.equal(coverEndsAt(open, monday0900London), null);
    assert.equal(iso(coverEndsAt({ ...open, terms: { ...open.terms, effectiveTo: Date.parse('2027-01-01T00:00:00Z') } }, monday0900London)), '2027-01-01T00:00:00.000Z');
    // A window open all week ends nothing.
    const always = version({ constraints: { time_window: { timezone: 'UTC', days: ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'], hours: { from: '00:00', to: '24:00' } } } });
    assert.equal(iso(coverEndsAt(always, monday0900London)), '2027-04-30T23:00:00.000Z');
  });
});
