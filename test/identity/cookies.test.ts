import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { cookieValues, serializeCookie } from '../../src/identity/cookies.ts';

describe('cookies', () => {
  test('finds every value of a cookie in a Cookie header, in order, ignoring others and malformed pairs', () => {
    const header = 'theme=dark; clearance_session=abc; junk; clearance_session_x=no; clearance_session="def";  clearance_session=ghi';
    assert.deepEqual(cookieValues(header, 'clearance_session'), ['abc', 'def', 'ghi']);
    assert.deepEqual(cookieValues(undefined, 'clearance_session'), []);
    assert.deepEqual(cookieValues('', 'clearance_session'), []);
  });

  test('serializes an HttpOnly cookie with its path, SameSite and Secure', () => {
    assert.equal(
      serializeCookie('clearance_session', 'v4lue', { path: '/', secure: true, sameSite: 'Lax' }),
      'clearance_session=v4lue; Path=/; HttpOnly; SameSite=Lax; Secure',
    );
    assert.equal(
      serializeCookie('clearance_session', '', { path: '/idp', secure: false, sameSite: 'Strict', maxAge: 0 }),
      'clearance_session=; Path=/idp; HttpOnly; SameSite=Strict; Max-Age=0',
    );
  });

  test('refuses a cookie name, value or path that would inject attributes', () => {
    const options = { path: '/', secure: true, sameSite: 'Lax' } as const;
    assert.throws(() => serializeCookie('a=b', 'v', options), TypeError);
    assert.throws(() => serializeCookie('a', 'v; Domain=evil.example', options), TypeError);
    assert.throws(() => serializeCookie('a', 'v', { ...options, path: '/; Domain=evil.example' }), TypeError);
    assert.throws(() => serializeCookie('a', 'v\r\nSet-Cookie: x=y', options), TypeError);
  });
});
