import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { describeAuthorizationDetails, formatAmount, parseAuthorizationDetails, type DetailVocabulary } from '../../src/authorization/authorization-details.ts';
import { defaultInstrumentClasses } from '../../src/entities/directory.ts';
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

/** What a fresh install declares: the built-in instrument classes. */
const defaults: DetailVocabulary = { instrumentClasses: new Set(defaultInstrumentClasses.map((c) => c.id)) };

function refuses(value: unknown, pattern: RegExp, vocabulary: DetailVocabulary = defaults): void {
  assert.throws(
    () => parseAuthorizationDetails(value, vocabulary),
    (error: unknown) => error instanceof OAuthError && error.error === 'invalid_authorization_details' && pattern.test(error.description ?? ''),
    JSON.stringify(value),
  );
}

describe('authorization_details (RFC 9396)', () => {
  test('accepts registered types, as JSON text or as parsed JSON', () => {
    assert.deepEqual(parseAuthorizationDetails(JSON.stringify([order]), defaults), [order]);
    assert.deepEqual(parseAuthorizationDetails([order, settlement], defaults), [order, settlement]);
    assert.deepEqual(parseAuthorizationDetails(undefined, defaults), []);
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
    refuses([{ ...order, instrument: { class: 'tulips', symbol: 'X' } }], /^authorization_details\[0\]\.instrument\.class "tulips" is not a declared instrument class$/);
    refuses([{ ...order, actions: ['create', 'create'] }], /twice/);
    refuses([{ ...order, actions: ['transfer'] }], /must be one of create, amend, cancel/);
    refuses([{ ...settlement, counterparty_lei: '5493001KJTIIGC8Y1R13' }], /not a valid LEI/);
    refuses([{ ...settlement, value_date: '2026-13-01' }], /value_date is malformed/);
    refuses([{ ...order, account: 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.sig' }], /shaped like a token/);
  });

  test('refuses a counterparty name with invisible or control characters, or a word mixing Latin with Cyrillic or Greek letters', () => {
    const named = (counterparty_name: string) => [{ ...settlement, counterparty_name }];
    refuses(named('Example Embar\u200Bgoed Trading LLC'), /^authorization_details\[0\]\.counterparty_name contains an invisible or control character$/);
    refuses(named('Example Embar\u00ADgoed Trading LLC'), /invisible or control character/);
    refuses(named('Example\u2060Embargoed Trading LLC'), /invisible or control character/);
    refuses(named('Example Trading LLC\uFEFF'), /invisible or control character/);
    refuses(named('Example \u202Egnidart\u202C LLC'), /invisible or control character/);
    refuses(named('Example\nTrading LLC'), /invisible or control character/);
    refuses(named('Ex\u0430mple Embargoed Trading LLC'), /^authorization_details\[0\]\.counterparty_name mixes Latin with Cyrillic or Greek letters in one word$/);
    refuses(named('Εxample Trading'), /mixes Latin with Cyrillic or Greek/);
    // Real names: accented Latin, wholly Cyrillic or Greek, one word in each script, punctuation.
    for (const name of ['Société Générale S.A.', 'ООО Пример', 'Παράδειγμα Α.Ε.', 'Sberbank (ПАО Сбербанк)', "O'Brien & Müller-Lüdenscheidt GmbH"]) {
      assert.equal(parseAuthorizationDetails(named(name), defaults)[0]!.counterparty_name, name);
    }
  });

  test('accepts exactly the instrument classes the entity model declares, in orders and settlement instructions', () => {
    const firm: DetailVocabulary = { instrumentClasses: new Map([['rates_derivatives', { id: 'rates_derivatives', complex: true }]]) };
    const swap = { ...order, instrument: { class: 'rates_derivatives', symbol: 'SOFR-2Y' } };
    assert.deepEqual(parseAuthorizationDetails([swap], firm), [swap]);
    refuses([swap], /instrument\.class "rates_derivatives" is not a declared instrument class/);
    refuses([order], /^authorization_details\[0\]\.instrument\.class "bond" is not a declared instrument class$/, firm);
    refuses([{ ...settlement, instrument: { class: 'bond', symbol: 'UST 10Y' } }], /instrument\.class "bond" is not a declared instrument class/, firm);
    assert.ok(parseAuthorizationDetails([{ ...settlement, instrument: { class: 'rates_derivatives', symbol: 'SOFR-2Y' } }], firm));
  });
});
