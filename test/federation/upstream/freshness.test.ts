import assert from 'node:assert/strict';
import { test } from 'node:test';
import { upstreamFreshness } from '../../../src/federation/upstream/freshness.ts';

const now = 1_800_000_000;

test('without max_age any upstream authentication is recent enough, even one of unknown age', () => {
  assert.deepEqual(upstreamFreshness({}, undefined, now), { ok: true });
  assert.deepEqual(upstreamFreshness({ authTime: now - 86_400 }, {}, now), { ok: true });
});

test('with max_age an upstream authentication of unknown age is refused (fail closed)', () => {
  assert.deepEqual(upstreamFreshness({}, { maxAge: 600 }, now), { ok: false, reason: 'auth_time_missing' });
  assert.deepEqual(upstreamFreshness({ authTime: Number.NaN }, { maxAge: 600 }, now), { ok: false, reason: 'auth_time_missing' });
});

test('with max_age an upstream authentication older than max_age and 30 seconds of skew is refused, one within it goes on', () => {
  assert.deepEqual(upstreamFreshness({ authTime: now - 91 }, { maxAge: 60 }, now), { ok: false, reason: 'authentication_too_old', age: 91 });
  assert.deepEqual(upstreamFreshness({ authTime: now - 90 }, { maxAge: 60 }, now), { ok: true });
  assert.deepEqual(upstreamFreshness({ authTime: now - 2 }, { maxAge: 0 }, now), { ok: true });
  assert.deepEqual(upstreamFreshness({ authTime: now - 120 }, { maxAge: 0 }, now), { ok: false, reason: 'authentication_too_old', age: 120 });
});
