import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  decodeCompactJws,
  decodeJwt,
  JwsFormatError,
  jwkAlgorithms,
  keyFitsAlgorithm,
  mediaType,
  privateMemberOf,
  sameAlgorithm,
  withBothEd25519Names,
} from '../../src/jose/index.ts';

// The one compact-JWS decoder (RFC 7515 §7.1 under RFC 8725 §3.3), the private-JWK member list and
// the algorithm names, as units.

const b64u = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
const header = b64u({ alg: 'ES256', typ: 'JWT' });
const claims = b64u({ sub: 'alice' });
const signature = b64u('sixteen byte sig'); // 16 bytes: the last character carries 4 unused bits
const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
/** The same bytes spelled with a non-zero unused bit: decodes alike, but is not canonical. */
const nonCanonical = `${signature.slice(0, -1)}${alphabet[alphabet.indexOf(signature.at(-1)!) | 1]}`;

describe('decodeCompactJws', () => {
  test('decodes a compact JWS into its header and claims', () => {
    assert.equal(Buffer.from(nonCanonical, 'base64url').toString(), 'sixteen byte sig', 'the non-canonical spelling decodes to the same bytes');
    const decoded = decodeCompactJws(`${header}.${claims}.${signature}`);
    assert.deepEqual(decoded, { ok: true, jws: { header: { alg: 'ES256', typ: 'JWT' }, claims: { sub: 'alice' } } });
    assert.deepEqual(decodeJwt(`${header}.${claims}.${signature}`), { sub: 'alice' });
  });

  test('refuses what is not exactly one compact JWS of JSON objects, each for its own reason', () => {
    const cases: [string, string, string][] = [
      ['empty', '', 'empty'],
      ['JSON serialization', JSON.stringify({ payload: claims, signatures: [] }), 'json_serialization'],
      ['a JWE', `${header}.a.b.c.d`, 'jwe'],
      ['two segments', `${header}.${claims}`, 'segments'],
      ['four segments', `${header}.${claims}.${signature}.x`, 'segments'],
      ['an unsecured JWT', `${header}.${claims}.`, 'unsecured'],
      ['an empty header', `.${claims}.${signature}`, 'base64url'],
      ['padding', `${header}.${claims}.${signature}==`, 'base64url'],
      ['standard base64 characters', `${header}.${claims}.ab+/`, 'base64url'],
      ['whitespace', `${header}.${claims}. ${signature}`, 'base64url'],
      ['non-canonical trailing bits', `${header}.${claims}.${nonCanonical}`, 'base64url'],
      ['a header that is not JSON', `${b64u('not json')}.${claims}.${signature}`, 'header'],
      ['a header that is an array', `${b64u([1])}.${claims}.${signature}`, 'header'],
      ['a header that is not UTF-8', `${Buffer.from([0xff, 0xfe]).toString('base64url')}.${claims}.${signature}`, 'header'],
      ['claims that are a string', `${header}.${b64u('"alice"')}.${signature}`, 'claims'],
      ['claims that are null', `${header}.${b64u('null')}.${signature}`, 'claims'],
    ];
    for (const [what, token, problem] of cases) {
      const decoded = decodeCompactJws(token);
      assert.equal(decoded.ok ? 'ok' : decoded.problem, problem, what);
    }
    assert.throws(() => decodeJwt('garbage'), JwsFormatError);
  });

  test('refuses a token over its cap before parsing, counting UTF-8 bytes', () => {
    const token = `${header}.${b64u({ pad: 'x'.repeat(200) })}.${signature}`;
    assert.equal(decodeCompactJws(token, { maxBytes: 100 }).ok, false);
    assert.equal(decodeCompactJws(token, { maxBytes: 1000 }).ok, true);
    const big = decodeCompactJws('x'.repeat(17 * 1024));
    assert.ok(!big.ok && big.problem === 'too_large');
    const wide = decodeCompactJws('é'.repeat(9000)); // 9000 UTF-16 units under the 16 KiB cap, 18000 bytes over it
    assert.ok(!wide.ok && wide.problem === 'too_large' && /18000 bytes/.test(wide.reason));
  });

  test('compares media types without case or an application/ prefix (RFC 7515 §4.1.9)', () => {
    assert.equal(mediaType('application/AT+JWT'), 'at+jwt');
    assert.equal(mediaType(7), undefined);
  });
});

describe('JWK members and algorithm names', () => {
  test('knows every private member of RSA, EC, OKP, symmetric and AKP keys', () => {
    for (const member of ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k', 'priv']) assert.equal(privateMemberOf({ kty: 'RSA', n: 'n', e: 'AQAB', [member]: 'x' }), member);
    assert.equal(privateMemberOf({ kty: 'EC', crv: 'P-256', x: 'x', y: 'y' }), undefined);
  });

  test('treats EdDSA and Ed25519 as one algorithm for Ed25519 keys only, never Ed448 (RFC 9864 §2.2)', () => {
    assert.ok(sameAlgorithm('EdDSA', 'Ed25519') && sameAlgorithm('Ed25519', 'EdDSA') && sameAlgorithm('ES256', 'ES256'));
    assert.ok(!sameAlgorithm('EdDSA', 'ES256') && !sameAlgorithm('eddsa', 'EdDSA'));
    assert.ok(keyFitsAlgorithm('Ed25519', { kty: 'OKP', crv: 'Ed25519', x: 'x' }));
    assert.ok(!keyFitsAlgorithm('Ed25519', { kty: 'OKP', crv: 'Ed448', x: 'x' }) && !keyFitsAlgorithm('EdDSA', { kty: 'OKP', crv: 'Ed448', x: 'x' }));
    assert.deepEqual(jwkAlgorithms({ kty: 'OKP', crv: 'Ed25519', x: 'x', alg: 'EdDSA' }), ['EdDSA', 'Ed25519']);
    assert.deepEqual(jwkAlgorithms({ kty: 'OKP', crv: 'Ed25519', x: 'x', use: 'enc' }), []);
    assert.deepEqual(jwkAlgorithms({ kty: 'RSA', n: 'n', e: 'AQAB', alg: 'PS256' }), ['PS256']);
    assert.deepEqual(withBothEd25519Names(['ES256', 'EdDSA', 'PS256']), ['ES256', 'EdDSA', 'Ed25519', 'PS256']);
    assert.deepEqual(withBothEd25519Names(['Ed25519', 'EdDSA']), ['Ed25519', 'EdDSA']);
  });
});
