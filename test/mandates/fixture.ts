/** Shared mandate documents for the mandate tests. */
import assert from 'node:assert/strict';
import type { MandateEntry } from '../../src/mandates/terms.ts';
import { readMandateEntry } from '../../src/mandates/terms.ts';
import { formatProblem, Validator } from '../../src/validation.ts';

export const grantorLei = '5493001KJTIIGC8Y1R12';

/** Monday 4 May 2026, 09:00 in London (08:00Z): inside the example's trading hours. */
export const monday0900London = Date.parse('2026-05-04T08:00:00Z');

/** A complete `mandates[]` entry as an apply file writes it. */
export const exampleMandate = {
  id: 'mandate-ops-2026',
  grantor: { lei: grantorLei },
  grantee: { client_id: 'algo-7' },
  scopes: ['order:create', 'order:cancel'],
  constraints: {
    instrument_classes: ['fx', 'bond'],
    venues: ['XLON', 'XNYS'],
    max_notional: { amount: '5000000.00', currency: 'USD' },
    regions: ['uk', 'eu'],
    time_window: { timezone: 'Europe/London', days: ['fri', 'mon', 'tue', 'wed', 'thu'], hours: { from: '08:00', to: '17:30' } },
  },
  legal_basis: { reference: 'Master services agreement 2026-04, clause 7', text: 'The grantor authorises the grantee\nto route orders.' },
  effective_from: '2026-05-01T00:00:00Z',
  effective_to: '2027-05-01T00:00:00+01:00',
};

/** A validated entry: the example with `overrides` (top-level fields). */
export function mandateEntry(overrides: Record<string, unknown> = {}): MandateEntry {
  const v = new Validator();
  const entry = readMandateEntry(v, 'mandate', { ...exampleMandate, ...overrides });
  assert.ok(entry, v.problems.map(formatProblem).join('\n'));
  return entry;
}
