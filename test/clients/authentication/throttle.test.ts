import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ManualClock } from '../../../src/clock.ts';
import { MemoryAuthFailureThrottle, throttleKeyForAddress, type ThrottleOptions } from '../../../src/clients/authentication/throttle.ts';
import { OAuthError } from '../../../src/oauth-error.ts';
import { basic, harness, rejectsWith } from './fixture.ts';

function isThrottled(retryAfter?: string) {
  return (error: unknown) => {
    assert.ok(error instanceof OAuthError);
    assert.equal(error.status, 429);
    assert.equal(error.error, 'invalid_client');
    assert.deepEqual(error.toJSON(), { error: 'invalid_client', error_description: 'too many failed authentications; retry later' });
    if (retryAfter !== undefined) assert.equal(error.headers['retry-after'], retryAfter);
    assert.match(error.detail ?? '', /^throttled: /);
    return true;
  };
}

describe('the in-memory authentication failure throttle', () => {
  test('refuses a client after 10 failures within 60 seconds, with Retry-After', async () => {
    const clock = new ManualClock(1_000_000);
    const throttle = new MemoryAuthFailureThrottle(clock);
    for (let i = 0; i < 9; i++) {
      await throttle.recordFailure('oms-service', `198.51.100.${i}`);
      clock.advance(1000);
    }
    await throttle.checkClient('oms-service');
    await throttle.recordFailure('oms-service', '198.51.100.99');
    clock.advance(20_000);
    // The first failure (at 1 000 000) ages out at 1 060 000; now is 1 029 000.
    await assert.rejects(throttle.checkClient('oms-service'), isThrottled('31'));
    await throttle.checkClient('risk-service');
  });

  test('lets a client try again once its oldest failure leaves the window', async () => {
    const clock = new ManualClock(0);
    const throttle = new MemoryAuthFailureThrottle(clock);
    for (let i = 0; i < 10; i++) await throttle.recordFailure('oms-service', '198.51.100.1');
    clock.advance(59_999);
    await assert.rejects(throttle.checkClient('oms-service'), isThrottled('1'));
    clock.advance(1);
    await throttle.checkClient('oms-service');
  });

  test('refuses an address after 30 failures within 60 seconds, whatever the client ids', async () => {
    const clock = new ManualClock(0);
    const throttle = new MemoryAuthFailureThrottle(clock);
    for (let i = 0; i < 29; i++) await throttle.recordFailure(`client-${i}`, '203.0.113.7');
    await throttle.checkAddress('203.0.113.7');
    await throttle.recordFailure(undefined, '203.0.113.7');
    await assert.rejects(throttle.checkAddress('203.0.113.7'), isThrottled('60'));
    await throttle.checkAddress('203.0.113.8');
  });

  test('takes its limits from options', async () => {
    const clock = new ManualClock(0);
    const throttle = new MemoryAuthFailureThrottle(clock, { perClient: { max: 2, windowMs: 5000 }, perAddress: { max: 3, windowMs: 10_000 } });
    await throttle.recordFailure('a', '192.0.2.1');
    await throttle.recordFailure('a', '192.0.2.1');
    await assert.rejects(throttle.checkClient('a'), isThrottled('5'));
    await throttle.checkAddress('192.0.2.1');
    await throttle.recordFailure('b', '192.0.2.1');
    await assert.rejects(throttle.checkAddress('192.0.2.1'), isThrottled('10'));
  });

  test('reserves an attempt in the same step as its check, and refunds only that attempt', async () => {
    const clock = new ManualClock(0);
    const throttle = new MemoryAuthFailureThrottle(clock, { perClient: { max: 3, windowMs: 5000 } });
    await throttle.recordFailure('a', '192.0.2.1');
    const reserved = [0, 1, 2, 3].map(() => throttle.reserve('a', '192.0.2.1'));
    assert.equal(reserved.filter((r) => 'refund' in r).length, 2, 'one failure and two reservations reach the limit');
    assert.deepEqual(reserved.slice(2), [{ retryAfterMs: 5000 }, { retryAfterMs: 5000 }]);
    const first = reserved[0]!;
    assert.ok('refund' in first);
    first.refund();
    first.refund(); // once only
    assert.ok('refund' in throttle.reserve('a', '192.0.2.1'), 'the refunded place is free again');
    await assert.rejects(throttle.checkClient('a'), isThrottled('5'));
  });

  test('counts an IPv6 /64 as one address and an IPv4-mapped address as IPv4', async () => {
    assert.equal(throttleKeyForAddress('2001:db8:0:0:1::1'), '2001:db8:0:0::/64');
    assert.equal(throttleKeyForAddress('2001:DB8::ffff'), '2001:db8:0:0::/64');
    assert.equal(throttleKeyForAddress('2001:db8:0:1::1'), '2001:db8:0:1::/64');
    assert.equal(throttleKeyForAddress('::ffff:192.0.2.1'), '192.0.2.1');
    assert.equal(throttleKeyForAddress('::1'), '0:0:0:0::/64');
    const clock = new ManualClock(0);
    const throttle = new MemoryAuthFailureThrottle(clock, { perAddress: { max: 2, windowMs: 60_000 } });
    await throttle.recordFailure(undefined, '2001:db8::1');
    await throttle.recordFailure(undefined, '2001:db8::2');
    await assert.rejects(throttle.checkAddress('2001:db8::abcd'), isThrottled());
    await throttle.checkAddress('2001:db8:0:1::1');
  });

  test('keeps memory bounded by evicting the least recently failing key', async () => {
    const clock = new ManualClock(0);
    const throttle = new MemoryAuthFailureThrottle(clock, { perAddress: { max: 1, windowMs: 60_000 }, maxTracked: 3 });
    for (const address of ['192.0.2.1', '192.0.2.2', '192.0.2.3']) await throttle.recordFailure(undefined, address);
    await assert.rejects(throttle.checkAddress('192.0.2.1'), isThrottled());
    await throttle.recordFailure(undefined, '192.0.2.4');
    await throttle.checkAddress('192.0.2.1'); // evicted
    await assert.rejects(throttle.checkAddress('192.0.2.4'), isThrottled());
  });

  test('keeps at most max failure times per key however many failures arrive', async () => {
    const clock = new ManualClock(0);
    const throttle = new MemoryAuthFailureThrottle(clock, { perClient: { max: 3, windowMs: 60_000 } });
    for (let i = 0; i < 1000; i++) {
      await throttle.recordFailure('a', '192.0.2.1');
      clock.advance(10);
    }
    // Only the last three failures count: the oldest of them ages out 60 s after it happened.
    await assert.rejects(throttle.checkClient('a'), isThrottled('60'));
  });

  test('does not track client ids longer than any registered client_id can be', async () => {
    const clock = new ManualClock(0);
    const throttle = new MemoryAuthFailureThrottle(clock, { perClient: { max: 1, windowMs: 60_000 } });
    const long = 'x'.repeat(129);
    await throttle.recordFailure(long, '192.0.2.1');
    await throttle.checkClient(long);
  });
});

describe('throttling in authenticateClient', () => {
  const throttled = (options: ThrottleOptions = {}) => ({ throttle: (clock: ManualClock) => new MemoryAuthFailureThrottle(clock, options) });

  test('answers 429 after repeated wrong secrets, even to the right secret, until the window passes', async (t) => {
    const h = await harness(t, throttled());
    const secret = (await h.register({ client_id: 'risk-service', token_endpoint_auth_method: 'client_secret_basic' }))!;
    for (let i = 0; i < 10; i++) {
      await rejectsWith(h.authenticate({ authorization: basic('risk-service', `guess-${i}`), sourceAddress: `198.51.100.${i}` }), { detail: /wrong secret/ });
    }
    const error = await rejectsWith(h.authenticate({ authorization: basic('risk-service', secret) }), {
      status: 429,
      detail: /throttled: client risk-service exceeded 10 failures in 60 s/,
    });
    assert.equal(error.headers['retry-after'], '60');
    assert.equal(error.headers['www-authenticate'], undefined);
    h.clock.advance(60_000);
    assert.equal((await h.authenticate({ authorization: basic('risk-service', secret) })).method, 'client_secret_basic');
  });

  test('throttles an address spraying many client ids, before any lookup', async (t) => {
    const h = await harness(t, throttled());
    for (let i = 0; i < 30; i++) {
      await rejectsWith(h.authenticate({ body: { client_id: `probe-${i}`, client_secret: 'x' }, sourceAddress: '203.0.113.9' }), { detail: /unknown client/ });
    }
    await rejectsWith(h.authenticate({ body: { client_id: 'probe-x', client_secret: 'x' }, sourceAddress: '203.0.113.9' }), {
      status: 429,
      detail: /throttled: address 203.0.113.9 exceeded 30 failures in 60 s/,
    });
  });

  test('counts malformed requests against the address', async (t) => {
    const h = await harness(t, throttled({ perAddress: { max: 2, windowMs: 60_000 } }));
    await rejectsWith(h.authenticate({ body: {} }), { detail: /no client authentication/ });
    await rejectsWith(h.authenticate({ authorization: 'Basic ***' }), { detail: /malformed/ });
    await rejectsWith(h.authenticate({ body: {} }), { status: 429, detail: /throttled: address/ });
  });

  test('does not reset the address counter on a success', async (t) => {
    const h = await harness(t, throttled({ perAddress: { max: 3, windowMs: 60_000 } }));
    const secret = (await h.register({ client_id: 'risk-service', token_endpoint_auth_method: 'client_secret_basic' }))!;
    await rejectsWith(h.authenticate({ authorization: basic('ghost-1', 'x') }), { detail: /unknown client/ });
    await rejectsWith(h.authenticate({ authorization: basic('ghost-2', 'x') }), { detail: /unknown client/ });
    await h.authenticate({ authorization: basic('risk-service', secret) });
    await rejectsWith(h.authenticate({ authorization: basic('ghost-3', 'x') }), { detail: /unknown client/ });
    await rejectsWith(h.authenticate({ authorization: basic('risk-service', secret) }), { status: 429, detail: /throttled: address/ });
  });

  test('does not count throttled attempts as new failures', async (t) => {
    const h = await harness(t, throttled({ perClient: { max: 2, windowMs: 60_000 } }));
    await h.register({ client_id: 'risk-service', token_endpoint_auth_method: 'client_secret_basic' });
    await rejectsWith(h.authenticate({ authorization: basic('risk-service', 'a') }), { detail: /wrong secret/ });
    h.clock.advance(30_000);
    await rejectsWith(h.authenticate({ authorization: basic('risk-service', 'b') }), { detail: /wrong secret/ });
    for (let i = 0; i < 5; i++) await rejectsWith(h.authenticate({ authorization: basic('risk-service', 'c') }), { status: 429, detail: /throttled/ });
    h.clock.advance(30_000);
    // The first failure aged out; the throttled attempts were not counted, so one more try is allowed.
    await rejectsWith(h.authenticate({ authorization: basic('risk-service', 'd') }), { detail: /wrong secret/ });
    await rejectsWith(h.authenticate({ authorization: basic('risk-service', 'e') }), { status: 429, detail: /throttled/ });
  });
});
