import assert from 'node:assert/strict';
import { test } from 'node:test';
import { renewedSince, strictest, upstreamFreshness } from '../../../src/federation/upstream/freshness.ts';

const now = 1_800_000_000;
/** The person was sent to the upstream five minutes ago. */
const at = { now, sentAt: now - 300 };

test('without max_age or prompt=login any upstream authentication is recent enough, even one of unknown age', () => {
  assert.deepEqual(upstreamFreshness({}, undefined, at), { ok: true });
  assert.deepEqual(upstreamFreshness({ authTime: now - 86_400 }, {}, at), { ok: true });
  assert.deepEqual(upstreamFreshness({ authTime: now - 86_400 }, { login: false }, at), { ok: true });
});

test('with max_age an upstream authentication of unknown age is refused (fail closed)', () => {
  assert.deepEqual(upstreamFreshness({}, { maxAge: 600 }, at), { ok: false, reason: 'auth_time_missing' });
  assert.deepEqual(upstreamFreshness({ authTime: Number.NaN }, { maxAge: 600 }, at), { ok: false, reason: 'auth_time_missing' });
});

test('with max_age an upstream authentication older than max_age and 30 seconds of skew is refused, one within it goes on', () => {
  assert.deepEqual(upstreamFreshness({ authTime: now - 91 }, { maxAge: 60 }, at), { ok: false, reason: 'authentication_too_old', age: 91 });
  assert.deepEqual(upstreamFreshness({ authTime: now - 90 }, { maxAge: 60 }, at), { ok: true });
  assert.deepEqual(upstreamFreshness({ authTime: now - 2 }, { maxAge: 0 }, at), { ok: true });
  assert.deepEqual(upstreamFreshness({ authTime: now - 120 }, { maxAge: 0 }, at), { ok: false, reason: 'authentication_too_old', age: 120 });
});

test('with prompt=login an upstream authentication of unknown age is refused (fail closed)', () => {
  assert.deepEqual(upstreamFreshness({}, { login: true }, at), { ok: false, reason: 'auth_time_missing' });
  assert.deepEqual(upstreamFreshness({ authTime: Number.POSITIVE_INFINITY }, { login: true }, at), { ok: false, reason: 'auth_time_missing' });
});

test('with prompt=login an upstream authentication from before the person was sent there (less 30 seconds of skew) is refused, one after goes on', () => {
  assert.deepEqual(upstreamFreshness({ authTime: now - 331 }, { login: true }, at), { ok: false, reason: 'authentication_not_renewed', age: 331, sentAge: 300 });
  assert.deepEqual(upstreamFreshness({ authTime: now - 330 }, { login: true }, at), { ok: true });
  assert.deepEqual(upstreamFreshness({ authTime: now - 10 }, { login: true }, at), { ok: true });
  // A long-lived upstream session is refused however long ago it began, max_age or not.
  assert.deepEqual(upstreamFreshness({ authTime: now - 86_400 }, { login: true, maxAge: 100_000 }, at), { ok: false, reason: 'authentication_not_renewed', age: 86_400, sentAge: 300 });
});

test('max_age=0 (prompt=login’s equivalent, OIDC Core §3.1.2.1) refuses an authentication from before the person was sent there: it is older than 30 seconds of skew', () => {
  assert.deepEqual(upstreamFreshness({ authTime: now - 331 }, { maxAge: 0 }, at), { ok: false, reason: 'authentication_too_old', age: 331 });
  assert.deepEqual(upstreamFreshness({}, { maxAge: 0 }, at), { ok: false, reason: 'auth_time_missing' });
  assert.deepEqual(upstreamFreshness({ authTime: now - 20 }, { maxAge: 0 }, { now, sentAt: now - 5 }), { ok: true });
});

test('the strictest of several asks: the shortest max_age, prompt=login if any asks it, the first renewal cause; nothing when none asks', () => {
  assert.equal(strictest(undefined, {}, undefined), undefined);
  assert.deepEqual(strictest({ maxAge: 600 }, { maxAge: 60 }), { maxAge: 60 });
  assert.deepEqual(strictest({ maxAge: 600 }, { login: true, because: 'risk_step_up' }), { maxAge: 600, login: true, because: 'risk_step_up' });
  assert.deepEqual(strictest({ login: false }, { maxAge: 0 }), { maxAge: 0 });
  // A max_age that is not a whole number of seconds is no ask (a kept record is read through this).
  assert.deepEqual(strictest({ maxAge: -1 }, { maxAge: Number.NaN }, { maxAge: 1.5 }), undefined);
});

test('renewed: an authentication the upstream made after the person was sent there (less 30 seconds of skew); unknown is not', () => {
  assert.equal(renewedSince({ authTime: now - 330 }, now - 300), true);
  assert.equal(renewedSince({ authTime: now - 331 }, now - 300), false);
  assert.equal(renewedSince({}, now - 300), false);
  assert.equal(renewedSince({ authTime: Number.NaN }, now - 300), false);
});
