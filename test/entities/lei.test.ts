import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isValidLei } from '../../src/entities/lei.ts';

test('accepts LEIs whose ISO 7064 MOD 97-10 check digits are right', () => {
  for (const lei of ['5493001KJTIIGC8Y1R12', '529900T8BM49AURSDO55', 'HWUPKR0MPOU8FGXBT394']) {
    assert.equal(isValidLei(lei), true, lei);
  }
});

test('refuses every single-digit change of the check digits', () => {
  for (let n = 0; n < 100; n++) {
    const digits = String(n).padStart(2, '0');
    assert.equal(isValidLei(`5493001KJTIIGC8Y1R${digits}`), digits === '12', digits);
  }
});

test('refuses a transposition, lower case, letters in the check digits and wrong lengths', () => {
  for (const lei of [
    '5493001KJTIIGC8Y1R21',
    '4593001KJTIIGC8Y1R12',
    '5493001kjtiigc8y1r12',
    '5493001KJTIIGC8Y1RA2',
    '5493001KJTIIGC8Y1R1',
    '5493001KJTIIGC8Y1R120',
    '5493001KJTIIGC8Y1R1 ',
    '',
  ]) {
    assert.equal(isValidLei(lei), false, JSON.stringify(lei));
  }
});
