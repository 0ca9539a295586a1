import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isValidCodeVerifier, isValidS256Challenge, s256, verifyS256 } from '../../src/authorization/pkce.ts';

describe('PKCE (RFC 7636)', () => {
  test('computes the S256 challenge of the RFC 7636 appendix B example', () => {
    assert.equal(s256('dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk'), 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM');
    assert.equal(verifyS256('dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk', 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM'), true);
  });

  test('accepts verifiers of 43 to 128 unreserved characters and nothing else', () => {
    assert.equal(isValidCodeVerifier('a'.repeat(43)), true);
    assert.equal(isValidCodeVerifier('A-._~9'.repeat(20).slice(0, 128)), true);
    assert.equal(isValidCodeVerifier('a'.repeat(42)), false, 'too short');
    assert.equal(isValidCodeVerifier('a'.repeat(129)), false, 'too long');
    assert.equal(isValidCodeVerifier(`${'a'.repeat(42)}+`), false, 'outside unreserved');
    assert.equal(isValidCodeVerifier(`${'a'.repeat(42)} `), false);
  });

  test('refuses a verifier that does not transform to the challenge, or is malformed', () => {
    const challenge = s256('b'.repeat(43));
    assert.equal(verifyS256('c'.repeat(43), challenge), false);
    assert.equal(verifyS256('b'.repeat(42), s256('b'.repeat(42))), false, 'a short verifier never verifies');
  });

  test('accepts only 43 base64url characters as an S256 challenge', () => {
    assert.equal(isValidS256Challenge(s256('x'.repeat(50))), true);
    assert.equal(isValidS256Challenge('a'.repeat(44)), false);
    assert.equal(isValidS256Challenge(`${'a'.repeat(42)}=`), false);
  });
});
