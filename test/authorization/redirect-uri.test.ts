import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { matchesRegisteredRedirectUri } from '../../src/authorization/redirect-uri.ts';

describe('redirect URI matching', () => {
  const registered = ['https://app.example.com/cb', 'https://app.example.com/cb?tenant=a', 'http://127.0.0.1/callback', 'http://[::1]:8080/cb', 'http://localhost:3000/cb'];
  const match = (uri: string) => matchesRegisteredRedirectUri(registered, uri);

  test('matches registered URIs exactly, as strings', () => {
    assert.equal(match('https://app.example.com/cb'), true);
    assert.equal(match('https://app.example.com/cb?tenant=a'), true);
  });

  test('refuses any change: query, path, case, trailing slash, port, fragment, encoding', () => {
    for (const uri of [
      'https://app.example.com/cb?tenant=b',
      'https://app.example.com/cb?tenant=a&x=1',
      'https://app.example.com/cb?',
      'https://app.example.com/cb/',
      'https://app.example.com/CB',
      'https://APP.example.com/cb',
      'https://app.example.com:443/cb',
      'https://app.example.com/cb#frag',
      'https://app.example.com/c%62',
      'https://app.example.com.evil.com/cb',
    ]) {
      assert.equal(match(uri), false, uri);
    }
  });

  test('lets a loopback IP redirect use any port, and nothing else vary (RFC 8252 §7.3)', () => {
    assert.equal(match('http://127.0.0.1:53124/callback'), true);
    assert.equal(match('http://127.0.0.1/callback'), true);
    assert.equal(match('http://[::1]:49152/cb'), true);
    assert.equal(match('http://[::1]/cb'), true);
    assert.equal(match('http://127.0.0.1:53124/other'), false, 'path');
    assert.equal(match('http://127.0.0.1:53124/callback?x=1'), false, 'query');
    assert.equal(match('http://127.0.0.1:53124/callback#x'), false, 'fragment');
    assert.equal(match('https://127.0.0.1:53124/callback'), false, 'scheme');
    assert.equal(match('http://127.0.0.1.evil.com/callback'), false, 'a lookalike host');
    assert.equal(match('http://127.0.0.1@evil.com/callback'), false, 'userinfo');
    assert.equal(match('http://127.0.0.1:0/callback'), false, 'port 0');
    assert.equal(match('http://127.0.0.1:99999/callback'), false, 'port out of range');
    assert.equal(match('http://127.0.0.2:53124/callback'), false, 'another loopback address is another host');
  });

  test('gives localhost no port latitude (RFC 8252 §8.3)', () => {
    assert.equal(match('http://localhost:3000/cb'), true);
    assert.equal(match('http://localhost:3001/cb'), false);
  });
});
