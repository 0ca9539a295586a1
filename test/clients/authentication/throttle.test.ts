import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { ManualClock } from '../../../src/clock.ts';
import {
  MemoryAuthFailureThrottle,
  MemoryFailureReservations,
  throttleKeyForAddress,
  throttledError,
  type AuthAttempt,
  type AuthFailureThrottle,
  type ThrottleOptions,
} from '../../../src/clients/authentication/throttle.ts';
import { RedisAuthFailureThrottle } from '../../../src/risk/limits/redis-throttles.ts';
import { redisSkip, testSharedStore } from '../../helpers/redis.ts';
import { assertionBody, assertionClaims, basic, harness, keyPair, rejectsWith, signAssertion } from './fixture.ts';

const secret = (clientId: string, address: string): AuthAttempt => ({ address, clientId, secret: true });
const assertion = (clientId: string, address: string): AuthAttempt => ({ address, clientId, secret: false });

/** Settles `n` failures of one kind, each from `address(i)`, and asserts none was refused. */
async function fail(throttle: AuthFailureThrottle, n: number, attempt: (i: number) => AuthAttempt, outcome: 'failure' | 'secret_guess' = 'failure') {
  for (let i = 0; i < n; i++) assert.equal(await throttle.settle(attempt(i), outcome), undefined, `failure ${i} is counted, not refused`);
}

/**
 * The stores of the model, run through the same suite: this process's memory, and Redis (shared
 * by every node; a fallback that fails the test if used, so every answer is Redis's).
 */
const stores: { name: string; skip: string | false; open(t: TestContext, clock: ManualClock, options?: ThrottleOptions): Promise<AuthFailureThrottle> }[] = [
  { name: 'in-memory', skip: false, open: async (_t, clock, options) => new MemoryAuthFailureThrottle(clock, options) },
  {
    name: 'Redis',
    skip: redisSkip,
    async open(t, clock, options) {
      const unused: AuthFailureThrottle = { check: () => assert.fail('the fallback was used'), settle: () => assert.fail('the fallback was used') };
      return new RedisAuthFailureThrottle(await testSharedStore(t), unused, clock, options);
    },
  },
];

for (const { name, skip, open } of stores) describe(`the ${name} client authentication throttle`, { skip }, () => {
  test('refuses an address after 30 failures within 60 seconds, whatever the client ids, with the wait until the oldest ages out', async (t) => {
    const clock = new ManualClock(1_000_000);
    const throttle = await open(t, clock);
    await fail(throttle, 29, (i) => secret(`client-${i}`, '203.0.113.7'));
    assert.equal(await throttle.check({ address: '203.0.113.7', secret: false }), undefined);
    await fail(throttle, 1, () => ({ address: '203.0.113.7', secret: false }));
    clock.advance(20_000);
    const refusal = await throttle.check(assertion('anyone', '203.0.113.7'));
    assert.equal(refusal?.retryAfterMs, 40_000);
    assert.match(refusal!.reason, /^address 203\.0\.113\.7 exceeded 30 failures in 60 s$/);
    assert.equal(await throttle.check(assertion('anyone', '203.0.113.8')), undefined);
  });

  test('refuses a client from one address after 10 failures there, and only there', async (t) => {
    const clock = new ManualClock(0);
    const throttle = await open(t, clock);
    await fail(throttle, 10, () => assertion('oms-service', '203.0.113.66'));
    const refusal = await throttle.check(assertion('oms-service', '203.0.113.66'));
    assert.match(refusal?.reason ?? '', /^client oms-service from address 203\.0\.113\.66 exceeded 10 failures in 60 s$/);
    assert.equal(await throttle.check(assertion('oms-service', '192.0.2.50')), undefined, 'the client from elsewhere');
    assert.equal(await throttle.check(assertion('risk-service', '203.0.113.66')), undefined, 'another client from that address');
    assert.equal(await throttle.settle(assertion('oms-service', '192.0.2.50'), 'success'), undefined);
    clock.advance(60_000);
    assert.equal(await throttle.check(assertion('oms-service', '203.0.113.66')), undefined, 'a minute later');
  });

  test('does not put a client into the guessing state for failures that are not wrong secrets', async (t) => {
    const clock = new ManualClock(0);
    const throttle = await open(t, clock);
    await fail(throttle, 50, (i) => secret('risk-service', `198.51.100.${i + 1}`));
    assert.equal(await throttle.settle(secret('risk-service', '198.51.100.1'), 'success'), undefined);
  });

  test('after 10 wrong secrets from anywhere, admits a secret only from an address that has not failed as the client', async (t) => {
    const clock = new ManualClock(0);
    const throttle = await open(t, clock);
    await fail(throttle, 10, (i) => secret('risk-service', `198.51.100.${i + 1}`), 'secret_guess');
    clock.advance(10_000);
    // A guessing address is refused, even when its secret is right.
    const refusal = await throttle.settle(secret('risk-service', '198.51.100.10'), 'success');
    assert.match(refusal?.reason ?? '', /^client risk-service is being guessed \(10 wrong secrets in 60 s\) and address 198\.51\.100\.10 has failed as it$/);
    // The wait ends when the first of the two clears: here, the guessing state (its oldest guess ages out).
    assert.equal(refusal!.retryAfterMs, 50_000);
    // An address that has not failed gets its answer; a wrong secret makes it a guessing address too.
    assert.equal(await throttle.settle(secret('risk-service', '192.0.2.50'), 'success'), undefined);
    assert.equal(await throttle.settle(secret('risk-service', '192.0.2.51'), 'secret_guess'), undefined);
    assert.ok(await throttle.check(secret('risk-service', '192.0.2.51')));
    // Not a secret: the guessing state does not apply (the per-address limits still do).
    assert.equal(await throttle.check(assertion('risk-service', '198.51.100.10')), undefined);
    // Another client is not affected.
    assert.equal(await throttle.check(secret('broker-1', '198.51.100.10')), undefined);
  });

  test('does not count a refused attempt, so a throttled caller cannot extend its own wait', async (t) => {
    const clock = new ManualClock(0);
    const throttle = await open(t, clock, { perClientAddress: { max: 2, windowMs: 60_000 } });
    await fail(throttle, 1, () => secret('a', '192.0.2.1'));
    clock.advance(30_000);
    await fail(throttle, 1, () => secret('a', '192.0.2.1'));
    for (let i = 0; i < 5; i++) assert.ok(await throttle.settle(secret('a', '192.0.2.1'), 'failure'));
    clock.advance(30_000);
    await fail(throttle, 1, () => secret('a', '192.0.2.1'));
    assert.ok(await throttle.settle(secret('a', '192.0.2.1'), 'failure'));
  });

  test('decides each settlement on the counters as they stand, so a burst gets at most the limit admitted', async (t) => {
    const clock = new ManualClock(0);
    const throttle = await open(t, clock);
    // All fifty passed the early check before any was settled.
    const attempts = Array.from({ length: 50 }, () => secret('risk-service', '203.0.113.68'));
    for (const attempt of attempts) assert.equal(await throttle.check(attempt), undefined);
    const settled = await Promise.all(attempts.map((attempt) => throttle.settle(attempt, 'secret_guess')));
    assert.equal(settled.filter((r) => r === undefined).length, 10);
  });

  test('takes its limits from options', async (t) => {
    const clock = new ManualClock(0);
    const throttle = await open(t, clock, {
      perAddress: { max: 3, windowMs: 10_000 },
      perClientAddress: { max: 2, windowMs: 5000 },
      secretGuesses: { max: 1, windowMs: 20_000 },
    });
    await fail(throttle, 1, () => secret('a', '192.0.2.1'), 'secret_guess');
    // One wrong secret puts `a` in the guessing state; 192.0.2.1 waits until its failure ages out.
    assert.equal((await throttle.check(secret('a', '192.0.2.1')))?.retryAfterMs, 5000);
    assert.equal(await throttle.check(secret('a', '192.0.2.2')), undefined);
    assert.equal(await throttle.check(assertion('a', '192.0.2.1')), undefined);
    await fail(throttle, 1, () => assertion('a', '192.0.2.1'));
    assert.equal((await throttle.check(assertion('a', '192.0.2.1')))?.retryAfterMs, 5000);
    await fail(throttle, 1, () => assertion('b', '192.0.2.1'));
    assert.equal((await throttle.check(assertion('c', '192.0.2.1')))?.retryAfterMs, 10_000);
  });

  test('counts an IPv6 /64 as one address and an IPv4-mapped address as IPv4', async (t) => {
    assert.equal(throttleKeyForAddress('2001:db8:0:0:1::1'), '2001:db8:0:0::/64');
    assert.equal(throttleKeyForAddress('2001:DB8::ffff'), '2001:db8:0:0::/64');
    assert.equal(throttleKeyForAddress('2001:db8:0:1::1'), '2001:db8:0:1::/64');
    assert.equal(throttleKeyForAddress('::ffff:192.0.2.1'), '192.0.2.1');
    assert.equal(throttleKeyForAddress('::1'), '0:0:0:0::/64');
    const clock = new ManualClock(0);
    const throttle = await open(t, clock, { perAddress: { max: 2, windowMs: 60_000 }, perClientAddress: { max: 1, windowMs: 60_000 } });
    await fail(throttle, 1, () => ({ address: '2001:db8::1', secret: false }));
    await fail(throttle, 1, () => assertion('a', '2001:db8::2'));
    assert.ok(await throttle.check({ address: '2001:db8::abcd', secret: false }));
    assert.equal(await throttle.check({ address: '2001:db8:0:1::1', secret: false }), undefined);
    const mapped = await open(t, clock, { perClientAddress: { max: 1, windowMs: 60_000 } });
    await fail(mapped, 1, () => assertion('a', '::ffff:192.0.2.1'));
    assert.ok(await mapped.check(assertion('a', '192.0.2.1')), 'the client from the same IPv4 address');
  });

  // Redis bounds nothing per key count: each key expires a window after its last failure.
  if (name === 'in-memory') test('keeps memory bounded by evicting the least recently failing key', async (t) => {
    const clock = new ManualClock(0);
    const throttle = await open(t, clock, { perAddress: { max: 1, windowMs: 60_000 }, maxTracked: 3 });
    for (const address of ['192.0.2.1', '192.0.2.2', '192.0.2.3']) await fail(throttle, 1, () => ({ address, secret: false }));
    assert.ok(await throttle.check({ address: '192.0.2.1', secret: false }));
    await fail(throttle, 1, () => ({ address: '192.0.2.4', secret: false }));
    assert.equal(await throttle.check({ address: '192.0.2.1', secret: false }), undefined, 'evicted');
    assert.ok(await throttle.check({ address: '192.0.2.4', secret: false }));
  });

  test('counts only the failures within the window, however many came before', async (t) => {
    const clock = new ManualClock(0);
    const throttle = await open(t, clock, { perAddress: { max: 3, windowMs: 60_000 } });
    for (let i = 0; i < 1000; i++) {
      // Below the limit each time: the window slides past the older ones.
      clock.advance(30_000);
      await throttle.settle({ address: '192.0.2.1', secret: false }, 'failure');
    }
    await fail(throttle, 1, () => ({ address: '192.0.2.1', secret: false }));
    assert.equal((await throttle.check({ address: '192.0.2.1', secret: false }))?.retryAfterMs, 30_000);
  });

  test('does not track client ids longer than any registered client_id can be', async (t) => {
    const clock = new ManualClock(0);
    const throttle = await open(t, clock, { perClientAddress: { max: 1, windowMs: 60_000 }, secretGuesses: { max: 1, windowMs: 60_000 } });
    const long = 'x'.repeat(129);
    await fail(throttle, 1, () => secret(long, '192.0.2.1'), 'secret_guess');
    assert.equal(await throttle.check(secret(long, '192.0.2.1')), undefined);
  });

  test('makes a refusal a 429 invalid_client with Retry-After in whole seconds', () => {
    const error = throttledError({ retryAfterMs: 30_001, reason: 'address 192.0.2.1 exceeded 30 failures in 60 s' });
    assert.equal(error.status, 429);
    assert.deepEqual(error.toJSON(), { error: 'invalid_client', error_description: 'too many failed authentications; retry later' });
    assert.equal(error.headers['retry-after'], '31');
    assert.equal(error.detail, 'throttled: address 192.0.2.1 exceeded 30 failures in 60 s');
    assert.equal(throttledError({ retryAfterMs: 1, reason: 'x' }).headers['retry-after'], '1');
  });
});

describe('the failure reservations the password login uses', () => {
  test('reserves an attempt in the same step as its check, and refunds only that attempt', () => {
    const clock = new ManualClock(0);
    const windows = new MemoryFailureReservations(clock, { perKey: { max: 3, windowMs: 5000 }, perAddress: { max: 30, windowMs: 5000 }, maxTracked: 100 });
    const earlier = windows.reserve('a', '192.0.2.1');
    assert.ok('refund' in earlier);
    const reserved = [0, 1, 2, 3].map(() => windows.reserve('a', '192.0.2.1'));
    assert.equal(reserved.filter((r) => 'refund' in r).length, 2, 'one failure and two reservations reach the limit');
    assert.deepEqual(reserved.slice(2), [{ retryAfterMs: 5000 }, { retryAfterMs: 5000 }]);
    const first = reserved[0]!;
    assert.ok('refund' in first);
    first.refund();
    first.refund(); // once only
    assert.ok('refund' in windows.reserve('a', '192.0.2.1'), 'the refunded place is free again');
    assert.deepEqual(windows.reserve('a', '192.0.2.1'), { retryAfterMs: 5000 });
  });
});

describe('throttling in authenticateClient', () => {
  const throttled = (options: ThrottleOptions = {}) => ({ throttle: (clock: ManualClock) => new MemoryAuthFailureThrottle(clock, options) });

  test('answers 429 to the guessing address after 10 wrong secrets, even to the right secret, and lets another address in', async (t) => {
    const h = await harness(t, throttled());
    const right = (await h.register({ client_id: 'risk-service', token_endpoint_auth_method: 'client_secret_basic' }))!;
    const attacker = '203.0.113.67';
    for (let i = 0; i < 10; i++) {
      await rejectsWith(h.authenticate({ authorization: basic('risk-service', `guess-${i}`), sourceAddress: attacker }), { status: 401, detail: /wrong secret/ });
    }
    const error = await rejectsWith(h.authenticate({ authorization: basic('risk-service', right), sourceAddress: attacker }), {
      status: 429,
      detail: /throttled: client risk-service from address 203\.0\.113\.67 exceeded 10 failures in 60 s; client risk-service is being guessed/,
    });
    assert.equal(error.headers['retry-after'], '60');
    assert.equal(error.headers['www-authenticate'], undefined);
    assert.equal((await h.authenticate({ authorization: basic('risk-service', right), sourceAddress: '192.0.2.50' })).method, 'client_secret_basic');
    h.clock.advance(60_000);
    assert.equal((await h.authenticate({ authorization: basic('risk-service', right), sourceAddress: attacker })).method, 'client_secret_basic');
  });

  test('counts a wrong secret as a guess only for a client that has a secret and is registered for the method used', async (t) => {
    const h = await harness(t, throttled({ secretGuesses: { max: 2, windowMs: 60_000 } }));
    const right = (await h.register({ client_id: 'risk-service', token_endpoint_auth_method: 'client_secret_basic' }))!;
    const key = keyPair('ES256');
    await h.register({ client_id: 'oms-service', token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [key.jwk] } });
    // Secrets against a private_key_jwt client, client_secret_post against a Basic client, forged
    // assertions against both, an unknown client: none of these is guessing a secret.
    for (let i = 0; i < 5; i++) {
      const address = `198.51.100.${i + 1}`;
      await rejectsWith(h.authenticate({ authorization: basic('oms-service', 'x'), sourceAddress: address }), { status: 401, detail: /registered for private_key_jwt/ });
      await rejectsWith(h.authenticate({ body: { client_id: 'risk-service', client_secret: 'x' }, sourceAddress: address }), { status: 401, detail: /registered for/ });
      const forged = signAssertion(keyPair('ES256'), assertionClaims('risk-service', h.clock));
      await rejectsWith(h.authenticate({ body: assertionBody(forged), sourceAddress: address }), { status: 401, detail: /registered for client_secret_basic/ });
      await rejectsWith(h.authenticate({ authorization: basic('ghost', 'x'), sourceAddress: address }), { status: 401, detail: /unknown client/ });
    }
    assert.equal((await h.authenticate({ authorization: basic('risk-service', right), sourceAddress: '198.51.100.1' })).method, 'client_secret_basic');
    // Two wrong secrets are: an address that failed as the client now waits for a secret.
    await rejectsWith(h.authenticate({ authorization: basic('risk-service', 'g1'), sourceAddress: '198.51.100.1' }), { status: 401, detail: /wrong secret/ });
    await rejectsWith(h.authenticate({ authorization: basic('risk-service', 'g2'), sourceAddress: '198.51.100.2' }), { status: 401, detail: /wrong secret/ });
    await rejectsWith(h.authenticate({ authorization: basic('risk-service', right), sourceAddress: '198.51.100.3' }), { status: 429, detail: /being guessed/ });
    assert.equal((await h.authenticate({ authorization: basic('risk-service', right), sourceAddress: '198.51.100.9' })).method, 'client_secret_basic');
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
    const right = (await h.register({ client_id: 'risk-service', token_endpoint_auth_method: 'client_secret_basic' }))!;
    await rejectsWith(h.authenticate({ authorization: basic('ghost-1', 'x') }), { detail: /unknown client/ });
    await rejectsWith(h.authenticate({ authorization: basic('ghost-2', 'x') }), { detail: /unknown client/ });
    await h.authenticate({ authorization: basic('risk-service', right) });
    await rejectsWith(h.authenticate({ authorization: basic('ghost-3', 'x') }), { detail: /unknown client/ });
    await rejectsWith(h.authenticate({ authorization: basic('risk-service', right) }), { status: 429, detail: /throttled: address/ });
  });

  test("settles a secret's success, and not a private key's, which was no guess (one round trip less to Redis per token)", async (t) => {
    const outcomes: string[] = [];
    const h = await harness(t, {
      throttle: (clock: ManualClock) => {
        const memory = new MemoryAuthFailureThrottle(clock);
        return { check: (attempt) => memory.check(attempt), settle: (attempt, outcome) => (outcomes.push(`${attempt.clientId} ${outcome}`), memory.settle(attempt, outcome)) };
      },
    });
    const right = (await h.register({ client_id: 'risk-service', token_endpoint_auth_method: 'client_secret_basic' }))!;
    const key = keyPair('ES256');
    await h.register({ client_id: 'oms-service', token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [key.jwk] } });
    await h.authenticate({ authorization: basic('risk-service', right) });
    await h.authenticate({ body: assertionBody(signAssertion(key, assertionClaims('oms-service', h.clock))) });
    await rejectsWith(h.authenticate({ body: assertionBody(signAssertion(keyPair('ES256'), assertionClaims('oms-service', h.clock))) }), { status: 401, detail: /signature/ });
    assert.deepEqual(outcomes, ['risk-service success', 'oms-service failure']);
  });

  test('does not count throttled attempts as new failures', async (t) => {
    const h = await harness(t, throttled({ perClientAddress: { max: 2, windowMs: 60_000 } }));
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
