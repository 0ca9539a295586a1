import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { describeAuthorizationDetails, formatAmount, parseAuthorizationDetails } from '../../src/authorization/authorization-details.ts';
import { OAuthError } from '../../src/oauth-error.ts';

const order = {
  type: 'order',
  instrument: { class: 'bond', symbol: 'UST 10Y' },
  side: 'buy',
  max_notional: { amount: '10000000', currency: 'USD' },
  venue: 'XNYS',
  account: 'ACC-7781',
};

const settlement = {
  type: 'settlement_instruction',
  settlement_type: 'dvp',
  account: 'CUST-1',
  counterparty_lei: '5493001KJTIIGC8Y1R12',
  max_amount: { amount: 2500000.5, currency: 'EUR' },
  value_date: '2026-01-15',
};

function refuses(value: unknown, pattern: RegExp): void {
  assert.throws(
    () => parseAuthorizationDetails(value),
    (error: unknown) => error instanceof OAuthError && error.error === 'invalid_authorization_details' && pattern.test(error.description ?? ''),
    JSON.stringify(value),
  );
}

describe('authorization_details (RFC 9396)', () => {
  test('accepts registered types, as JSON text or as parsed JSON', () => {
    assert.deepEqual(parseAuthorizationDetails(JSON.stringify([order])), [order]);
    assert.deepEqual(parseAuthorizationDetails([order, settlement]), [order, settlement]);
    assert.deepEqual(parseAuthorizationDetails(undefined), []);
  });

  test('writes plain-language consent lines', () => {
    assert.deepEqual(describeAuthorizationDetails([order, { ...order, side: 'sell', actions: ['create', 'amend', 'cancel'] }, settlement]), [
      'Create buy orders in UST 10Y (bond) up to USD 10,000,000 on venue XNYS for account ACC-7781',
      'Create, amend and cancel sell orders in UST 10Y (bond) up to USD 10,000,000 on venue XNYS for account ACC-7781',
      'Submit DVP settlement instructions from account CUST-1 to counterparty 5493001KJTIIGC8Y1R12 up to EUR 2,500,000.5 for value date 2026-01-15',
    ]);
    assert.equal(formatAmount('1234567.25'), '1,234,567.25');
  });

  test('refuses what is not a non-empty JSON array of objects', () => {
    refuses('not json', /not JSON/);
    refuses('{}', /JSON array/);
    refuses('[]', /empty/);
    refuses('[1]', /must be an object/);
    refuses(JSON.stringify(Array(21).fill(order)), /more than 20/);
  });

  test('refuses an unknown or missing type', () => {
    refuses([{ ...order, type: 'wire_transfer' }], /not supported/);
    refuses([{ instrument: order.instrument }], /type is required/);
  });

  test('refuses unknown fields, missing fields and malformed values', () => {
    refuses([{ ...order, leverage: 10 }], /leverage is not a field/);
    const { venue: _venue, ...withoutVenue } = order;
    refuses([withoutVenue], /venue is required/);
    refuses([{ ...order, side: 'short' }], /side must be one of buy, sell/);
    refuses([{ ...order, max_notional: { amount: '-5', currency: 'USD' } }], /positive decimal/);
    refuses([{ ...order, max_notional: { amount: '1e9', currency: 'USD' } }], /positive decimal/);
    refuses([{ ...order, max_notional: { amount: '0', currency: 'USD' } }], /positive decimal/);
    refuses([{ ...order, max_notional: { amount: '100', currency: 'XXY' } }], /ISO 4217/);
    refuses([{ ...order, max_notional: { amount: '100', currency: 'usd' } }], /currency is malformed/);
    refuses([{ ...order, venue: 'NYSE stock exchange' }], /venue is malformed/);
    refuses([{ ...order, instrument: { class: 'tulips', symbol: 'X' } }], /class must be one of/);
    refuses([{ ...order, actions: ['create', 'create'] }], /twice/);
    refuses([{ ...order, actions: ['transfer'] }], /must be one of create, amend, cancel/);
    refuses([{ ...settlement, counterparty_lei: '5493001KJTIIGC8Y1R13' }], /not a valid LEI/);
    refuses([{ ...settlement, value_date: '2026-13-01' }], /value_date is malformed/);
    refuses([{ ...order, account: 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.sig' }], /shaped like a token/);
  });
});
