import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { canonicalAmount, compareAmounts, readMandateEntry, termsDigest, termsDocument } from '../../src/mandates/terms.ts';
import { isWithinWindow, readTimeWindow, type TimeWindow } from '../../src/mandates/time-window.ts';
import { formatProblem, Validator } from '../../src/validation.ts';
import { exampleMandate, grantorLei } from './fixture.ts';

const lei = grantorLei;
const validEntry = exampleMandate;

function read(value: unknown, options: { acceptedAtDefault?: number } = {}) {
  const v = new Validator();
  const entry = readMandateEntry(v, 'mandates[0]', value, options);
  return { entry, problems: v.problems.map(formatProblem) };
}

describe('mandate terms', () => {
  test('reads a full entry and normalizes it: sorted lists, canonical amount, UTC times, resolved timezone', () => {
    const { entry, problems } = read(validEntry);
    assert.deepEqual(problems, []);
    assert.ok(entry);
    assert.deepEqual(entry.terms.grantor, { kind: 'lei', id: lei });
    assert.deepEqual(entry.terms.grantee, { kind: 'client', id: 'algo-7' });
    assert.deepEqual(entry.terms.scopes, ['order:cancel', 'order:create']);
    assert.deepEqual(entry.terms.constraints, {
      instrument_classes: ['bond', 'fx'],
      venues: ['XLON', 'XNYS'],
      max_notional: { amount: '5000000', currency: 'USD' },
      regions: ['eu', 'uk'],
      time_window: { timezone: 'Europe/London', days: ['mon', 'tue', 'wed', 'thu', 'fri'], hours: { from: '08:00', to: '17:30' } },
    });
    assert.equal(entry.terms.effectiveFrom, Date.parse('2026-05-01T00:00:00Z'));
    assert.equal(termsDocument(entry.terms).effective_to, '2027-04-30T23:00:00.000Z');
    assert.equal(entry.acceptance, undefined);
  });

  test('gives equal terms written differently the same digest, and different terms another', () => {
    const a = read(validEntry).entry!;
    const reordered = {
      ...validEntry,
      scopes: ['order:cancel', 'order:create'],
      constraints: { ...validEntry.constraints, venues: ['XNYS', 'XLON'], max_notional: { amount: 5000000, currency: 'USD' } },
      effective_to: '2027-04-30T23:00:00Z',
    };
    const b = read(reordered).entry!;
    assert.equal(termsDigest(a.terms), termsDigest(b.terms));
    const c = read({ ...validEntry, scopes: ['order:create'] }).entry!;
    assert.notEqual(termsDigest(a.terms), termsDigest(c.terms));
    assert.match(termsDigest(a.terms), /^[0-9a-f]{64}$/);
  });

  test('reports every problem of an entry with its path', () => {
    const { entry, problems } = read({
      id: 'bad id',
      grantor: { lei: '5493001KJTIIGC8Y1R13' },
      grantee: { client_id: 'a', user: 'b' },
      scopes: ['order:create', 'Order:Delete', 'order:create'],
      constraints: {
        instrument_classes: ['Equities'],
        venues: ['xlon'],
        max_notional: { amount: '-5', currency: 'usd' },
        regions: ['EU'],
        time_window: { timezone: 'Mars/Olympus', days: ['monday'], hours: { from: '8:00', to: '17:30' } },
        colour: 'red',
      },
      legal_basis: { text: 'no reference' },
      effective_from: '2026-05-01',
      effective_to: '2026-02-30T00:00:00Z',
      accepted_at: '2026-04-01T00:00:00Z',
      notes: 'x',
    });
    assert.equal(entry, undefined);
    assert.deepEqual(problems, [
      'mandates[0].notes: is not a recognised field',
      'mandates[0].id: must be 1–64 letters, digits and . _ : - (starting with a letter or digit)',
      'mandates[0].grantor.lei: must be a valid LEI (ISO 17442: 20 characters, check digits)',
      'mandates[0].grantee: must have exactly one of lei, client_id, user',
      'mandates[0].scopes[1]: must be a business verb scope such as order:create',
      'mandates[0].scopes[2]: is listed twice',
      'mandates[0].constraints.colour: is not a recognised field',
      'mandates[0].constraints.instrument_classes[0]: must be a lowercase product class such as fx or crypto_derivatives',
      'mandates[0].constraints.venues[0]: must be an ISO 10383 market identifier code such as XLON',
      'mandates[0].constraints.regions[0]: must be a lowercase region identifier such as eu or apac',
      'mandates[0].constraints.max_notional.amount: must be a positive decimal amount (at most 18 digits before the point and 8 after)',
      'mandates[0].constraints.max_notional.currency: must be an ISO 4217 currency code such as USD',
      'mandates[0].constraints.time_window.timezone: must be an IANA timezone such as Europe/London',
      'mandates[0].constraints.time_window.days[0]: must be one of mon, tue, wed, thu, fri, sat, sun',
      'mandates[0].constraints.time_window.hours.from: must be a time HH:MM (00:00 to 24:00)',
      'mandates[0].legal_basis.reference: must be a non-empty string',
      'mandates[0].effective_from: must be a date and time with an offset, such as 2026-05-01T08:00:00Z',
      'mandates[0].effective_to: is not a valid date and time',
      'mandates[0].accepted_at: is only given with accepted_by',
    ]);
  });

  test('needs accepted_at with accepted_by in a file, and takes the default the admin API gives', () => {
    assert.deepEqual(read({ ...validEntry, accepted_by: 'ops-signatory-17' }).problems, ['mandates[0].accepted_at: is required with accepted_by']);
    const at = Date.parse('2026-04-02T10:00:00Z');
    assert.deepEqual(read({ ...validEntry, accepted_by: 'ops-signatory-17' }, { acceptedAtDefault: at }).entry?.acceptance, { by: 'ops-signatory-17', at });
    assert.deepEqual(read({ ...validEntry, accepted_by: 'ops-signatory-17', accepted_at: '2026-04-02T11:00:00+01:00' }).entry?.acceptance, { by: 'ops-signatory-17', at });
  });

  test('refuses values the audit log would refuse, an end before the start, and control characters', () => {
    const jwt = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln';
    const { problems } = read({
      ...validEntry,
      legal_basis: { reference: `MSA ${jwt}` },
      accepted_by: 'jane\u0007doe',
      accepted_at: '2026-04-02T10:00:00Z',
      effective_to: '2026-04-30T00:00:00Z',
    });
    assert.deepEqual(problems, [
      'mandates[0].legal_basis.reference: looks like a token or a key, which the audit log never records',
      'mandates[0].effective_to: must be later than effective_from',
      'mandates[0].accepted_by: must not contain control characters',
    ]);
  });

  test('accepts each kind of grantor and grantee, and an open-ended mandate without constraints', () => {
    for (const [grantor, grantee] of [
      [{ account: 'ACC-7781' }, { lei }],
      [{ lei }, { user: 'alice' }],
      [{ lei }, { user: '0b7f4d1e-3c1a-4b7e-9a51-2f8f2f6d9c11' }],
    ] as const) {
      const { entry, problems } = read({ id: 'm-1', grantor, grantee, scopes: ['order:create'], legal_basis: { reference: 'MSA' }, effective_from: '2026-05-01T00:00:00Z' });
      assert.deepEqual(problems, [], JSON.stringify(grantee));
      assert.equal(entry?.terms.effectiveTo, null);
      assert.deepEqual(entry?.terms.constraints, {});
    }
    assert.deepEqual(read({ ...validEntry, grantor: { client_id: 'x' } }).problems, ['mandates[0].grantor: must have exactly one of lei, account']);
  });
});

describe('amounts', () => {
  test('are canonical decimals compared exactly, without floating point', () => {
    assert.equal(canonicalAmount('5000000.00'), '5000000');
    assert.equal(canonicalAmount('2500.50'), '2500.5');
    assert.equal(canonicalAmount(1000000), '1000000');
    assert.equal(canonicalAmount(0.1), '0.1');
    for (const bad of ['0', '0.00', '-1', '1e6', 1e21, '01', '1.123456789', '', null, Number.NaN]) assert.equal(canonicalAmount(bad), undefined, String(bad));
    assert.equal(compareAmounts('0.3', '0.30000001'), -1);
    assert.equal(compareAmounts('999999999999999999.99999999', '999999999999999999.99999998'), 1);
    assert.equal(compareAmounts('5000000', '5000000'), 0);
  });
});

describe('time windows', () => {
  const window = (value: unknown): TimeWindow => {
    const v = new Validator();
    const w = readTimeWindow(v, 'time_window', value);
    assert.deepEqual(v.problems, []);
    return w!;
  };
  const at = (iso: string) => Date.parse(iso);

  test('a recurring window follows the timezone wall clock across daylight saving time', () => {
    const london = window({ timezone: 'Europe/London', days: ['mon', 'tue', 'wed', 'thu', 'fri'], hours: { from: '08:00', to: '17:30' } });
    // Winter: London is UTC+0. Monday 2026-01-05.
    assert.equal(isWithinWindow(london, at('2026-01-05T08:00:00Z')), true);
    assert.equal(isWithinWindow(london, at('2026-01-05T07:59:59Z')), false);
    assert.equal(isWithinWindow(london, at('2026-01-05T17:29:59Z')), true);
    assert.equal(isWithinWindow(london, at('2026-01-05T17:30:00Z')), false);
    // Summer: UTC+1. Monday 2026-07-06 08:00 local is 07:00Z.
    assert.equal(isWithinWindow(london, at('2026-07-06T07:00:00Z')), true);
    assert.equal(isWithinWindow(london, at('2026-07-06T16:30:00Z')), false);
    // Saturday.
    assert.equal(isWithinWindow(london, at('2026-07-11T10:00:00Z')), false);
  });

  test('an overnight window belongs to the day it starts on', () => {
    const sydney = window({ timezone: 'Australia/Sydney', days: ['fri'], hours: { from: '22:00', to: '06:00' } });
    // Friday 2026-01-09 22:00 AEDT (UTC+11) = 11:00Z.
    assert.equal(isWithinWindow(sydney, at('2026-01-09T11:00:00Z')), true);
    assert.equal(isWithinWindow(sydney, at('2026-01-09T10:59:00Z')), false);
    // Saturday 05:59 local = Friday 18:59Z: still Friday's window.
    assert.equal(isWithinWindow(sydney, at('2026-01-09T18:59:00Z')), true);
    assert.equal(isWithinWindow(sydney, at('2026-01-09T19:00:00Z')), false);
    // Friday 05:00 local belongs to Thursday's window, which is not listed.
    assert.equal(isWithinWindow(sydney, at('2026-01-08T18:00:00Z')), false);
  });

  test('00:00 to 24:00 is the whole day, and an absolute window is a half-open interval', () => {
    const sunday = window({ timezone: 'UTC', days: ['sun'], hours: { from: '00:00', to: '24:00' } });
    assert.equal(isWithinWindow(sunday, at('2026-01-04T00:00:00Z')), true);
    assert.equal(isWithinWindow(sunday, at('2026-01-04T23:59:59Z')), true);
    assert.equal(isWithinWindow(sunday, at('2026-01-05T00:00:00Z')), false);
    const auction = window({ from: '2026-05-01T08:00:00+01:00', to: '2026-05-01T09:00:00+01:00' });
    assert.deepEqual(auction, { from: '2026-05-01T07:00:00.000Z', to: '2026-05-01T08:00:00.000Z' });
    assert.equal(isWithinWindow(auction, at('2026-05-01T07:00:00Z')), true);
    assert.equal(isWithinWindow(auction, at('2026-05-01T08:00:00Z')), false);
  });

  test('refuses equal hours, 24:00 as a start, unknown fields and an absolute window that ends before it starts', () => {
    const problems = (value: unknown) => {
      const v = new Validator();
      readTimeWindow(v, 'w', value);
      return v.problems.map(formatProblem);
    };
    assert.deepEqual(problems({ timezone: 'UTC', days: ['mon'], hours: { from: '09:00', to: '09:00' } }), ['w.hours.to: must differ from hours.from (00:00 to 24:00 is the whole day)']);
    assert.deepEqual(problems({ timezone: 'UTC', days: [], hours: { from: '24:00', to: '09:00' } }), ['w.days: must not be empty', 'w.hours.from: must be earlier than 24:00']);
    assert.deepEqual(problems({ timezone: 'UTC', days: ['mon'], hours: { from: '09:00', to: '10:00' }, from: 'x' }), ['w.from: is not a recognised field']);
    assert.deepEqual(problems({ from: '2026-05-01T09:00:00Z', to: '2026-05-01T08:00:00Z' }), ['w.to: must be later than from']);
  });
});
