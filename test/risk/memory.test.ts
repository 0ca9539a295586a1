import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { RecentEvents, TokenPresentations } from '../../src/risk/memory.ts';

describe('RecentEvents', () => {
  test('counts the events of a key after a time, and drops older ones', () => {
    const recent = new RecentEvents();
    for (const at of [100, 200, 300]) recent.record('client:oms', at);
    assert.equal(recent.count('client:oms', 150), 2);
    assert.equal(recent.count('client:oms', 150), 2, 'counting again drops nothing newer');
    assert.equal(recent.count('client:oms', 300), 0);
    assert.equal(recent.count('client:other', 0), 0);
  });

  test('keeps at most `keep` events of a key, the most recent', () => {
    const recent = new RecentEvents({ keep: 3 });
    for (let at = 1; at <= 10; at++) recent.record('client:oms', at);
    assert.equal(recent.count('client:oms', 0), 3);
    recent.record('client:algo', 1, 2);
    recent.record('client:algo', 2, 2);
    recent.record('client:algo', 3, 2);
    assert.equal(recent.count('client:algo', 0), 2, 'a caller asking for fewer keeps fewer');
  });

  test('keeps at most `maxKeys` keys, forgetting the least recently recorded first', () => {
    const recent = new RecentEvents({ maxKeys: 2 });
    recent.record('a', 1);
    recent.record('b', 2);
    recent.record('a', 3); // a is now more recent than b
    recent.record('c', 4);
    assert.equal(recent.count('b', 0), 0, 'b was the least recently recorded');
    assert.equal(recent.count('a', 0), 2);
    assert.equal(recent.count('c', 0), 1);
  });

  test('stays at its bound through many more keys than it keeps', () => {
    const recent = new RecentEvents({ maxKeys: 100 });
    for (let i = 0; i < 10_000; i++) recent.record(`key-${i}`, i);
    let kept = 0;
    for (let i = 0; i < 10_000; i++) kept += recent.count(`key-${i}`, -1);
    assert.equal(kept, 100);
    assert.equal(recent.count('key-9999', -1), 1, 'the newest are the ones kept');
  });
});

describe('TokenPresentations', () => {
  test('names the networks a token was presented from after a time', () => {
    const seen = new TokenPresentations();
    seen.note('jti-1', '203.0.113.0/24', 100);
    seen.note('jti-1', '198.51.100.0/24', 200);
    seen.note('jti-1', '203.0.113.0/24', 300);
    assert.deepEqual(seen.networks('jti-1', 150).sort(), ['198.51.100.0/24', '203.0.113.0/24']);
    assert.deepEqual(seen.networks('jti-1', 250), ['203.0.113.0/24']);
    assert.deepEqual(seen.networks('jti-2', 0), []);
  });

  test('keeps at most eight networks per token, the most recent', () => {
    const seen = new TokenPresentations();
    for (let i = 0; i < 12; i++) seen.note('jti-1', `net-${i}`, i);
    const networks = seen.networks('jti-1', -1);
    assert.equal(networks.length, 8);
    assert.ok(!networks.includes('net-3') && networks.includes('net-4') && networks.includes('net-11'));
  });

  test('keeps at most `maxTokens` tokens, forgetting the least recently presented first', () => {
    const seen = new TokenPresentations({ maxTokens: 2 });
    seen.note('a', 'net', 1);
    seen.note('b', 'net', 2);
    seen.note('a', 'net', 3);
    seen.note('c', 'net', 4);
    assert.deepEqual(seen.networks('b', 0), [], 'b was the least recently presented');
    assert.deepEqual(seen.networks('a', 0), ['net']);
    assert.deepEqual(seen.networks('c', 0), ['net']);
  });
});
