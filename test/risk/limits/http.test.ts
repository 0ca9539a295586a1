/**
 * Rate limits from the outside (docs/risk.md "Rate limits"): by source address and endpoint route
 * before any work, by client after client authentication, answered with 429, Retry-After and the
 * RateLimit fields; JSON to an API caller, the error page to a browser.
 */
import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { assertOAuthError, ordersApi, protocolFixture, type ProtocolFixture } from '../../endpoints/fixture.ts';

const tokenForm = { grant_type: 'client_credentials', resource: ordersApi };

async function fixture(t: TestContext, rateLimits: Record<string, unknown>): Promise<ProtocolFixture> {
  const f = await protocolFixture(t);
  await f.apply({ rate_limits: rateLimits });
  return f;
}

/** A refusal as every limit answers it: 429 `temporarily_unavailable`, no-store JSON, Retry-After, the policy and its service limit. */
function assertRateLimited(response: LightMyRequestResponse, policy: string, retryAfter: number): void {
  const body = assertOAuthError(response, 429, 'temporarily_unavailable');
  assert.match(String(body.error_description), /retry later/);
  assert.equal(response.headers['retry-after'], String(retryAfter));
  assert.equal(response.headers['ratelimit-policy'], policy);
  assert.equal(response.headers.ratelimit, `${policy.split(';')[0]};r=0;t=${retryAfter}`);
}

describe('rate limits over HTTP', () => {
  test('refuses a source address over its limit before any work, whatever the endpoint, and not another address', async (t) => {
    const f = await fixture(t, { address: { quota: 3, window: 60 } });
    const from = (address: string, path = '/token') => f.post(path, { auth: f.basic('broker-1'), form: tokenForm, remoteAddress: address });
    for (let i = 0; i < 3; i++) assert.equal((await from('203.0.113.5')).statusCode, 200);
    const events = (await f.auditEvents()).length;
    assertRateLimited(await from('203.0.113.5'), '"address";q=3;w=60', 20);
    assertRateLimited(await from('203.0.113.5', '/introspect'), '"address";q=3;w=60', 20);
    assert.equal((await f.auditEvents()).length, events, 'a refused request did nothing: no authentication, no audit event');
    assert.equal((await from('203.0.113.6')).statusCode, 200);
    f.clock.advance(20_000);
    assert.equal((await from('203.0.113.5')).statusCode, 200, 'one token refilled');
  });

  test('counts an IPv6 /64 as one address', async (t) => {
    const f = await fixture(t, { address: { quota: 2, window: 60 } });
    const from = (address: string) => f.inject({ method: 'GET', url: '/jwks', remoteAddress: address });
    assert.equal((await from('2001:db8:0:0::1')).statusCode, 200);
    assert.equal((await from('2001:db8:0:0::2')).statusCode, 200);
    assert.equal((await from('2001:db8:0:0:ffff::1')).statusCode, 429);
    assert.equal((await from('2001:db8:0:1::1')).statusCode, 200);
  });

  test('limits each endpoint route for all callers together, with the routes apply names on their own terms', async (t) => {
    const f = await fixture(t, { endpoint: { quota: 4, window: 60, routes: { '/token': { quota: 2, window: 10 }, '/jwks': 'off' } } });
    const token = (i: number) => f.post('/token', { auth: f.basic('broker-1'), form: tokenForm, remoteAddress: `198.51.100.${i}` });
    assert.equal((await token(1)).statusCode, 200);
    assert.equal((await token(2)).statusCode, 200);
    assertRateLimited(await token(3), '"endpoint";q=2;w=10', 5);
    // Another route has its own bucket, with the default of the section.
    for (let i = 0; i < 4; i++) assert.notEqual((await f.post('/introspect', { auth: f.basic('broker-1'), form: { token: 'x' }, remoteAddress: `198.51.100.${i}` })).statusCode, 429);
    assertRateLimited(await f.post('/introspect', { auth: f.basic('broker-1'), form: { token: 'x' } }), '"endpoint";q=4;w=60', 15);
    for (let i = 0; i < 20; i++) assert.equal((await f.inject({ method: 'GET', url: '/jwks' })).statusCode, 200, 'a route switched off');
  });

  test('refuses a client over its limit once it has authenticated, at every endpoint that authenticates it, and not another client', async (t) => {
    const f = await fixture(t, { client: { quota: 2, window: 60 } });
    assert.equal((await f.token({ auth: f.basic('broker-1'), form: tokenForm })).statusCode, 200);
    assert.equal((await f.token({ auth: f.basic('broker-1'), form: tokenForm })).statusCode, 200);
    const failures = (await f.auditEvents('client.auth_failed')).length + (await f.auditEvents('client.throttled')).length;
    assertRateLimited(await f.token({ auth: f.basic('broker-1'), form: tokenForm }), '"client";q=2;w=60', 30);
    assertRateLimited(await f.post('/introspect', { auth: f.basic('broker-1'), form: { token: 'x' } }), '"client";q=2;w=60', 30);
    assertRateLimited(await f.post('/revoke', { auth: f.basic('broker-1'), form: { token: 'x' } }), '"client";q=2;w=60', 30);
    assert.equal((await f.auditEvents('client.auth_failed')).length + (await f.auditEvents('client.throttled')).length, failures, 'not an authentication failure');
    assert.equal((await f.token({ auth: f.basic('broker-3'), form: tokenForm })).statusCode, 200);
    // A caller that fails to authenticate is the failure throttle's, not the client's limit.
    assertOAuthError(await f.token({ auth: f.basic('broker-1', 'wrong'), form: tokenForm }), 401, 'invalid_client');
  });

  test('sends no RateLimit fields on an allowed response', async (t) => {
    const f = await fixture(t, { client: { quota: 5, window: 60 }, address: { quota: 5, window: 60 } });
    const response = await f.token({ auth: f.basic('broker-1'), form: tokenForm });
    assert.equal(response.statusCode, 200);
    assert.equal(response.headers.ratelimit, undefined);
    assert.equal(response.headers['ratelimit-policy'], undefined);
  });

  test('answers a browser with the error page', async (t) => {
    const f = await fixture(t, { address: { quota: 1, window: 60 } });
    const page = () => f.inject({ method: 'GET', url: '/authorize?client_id=trading-ui&response_type=code', headers: { accept: 'text/html,application/xhtml+xml' } });
    assert.notEqual((await page()).statusCode, 429);
    const response = await page();
    assert.equal(response.statusCode, 429);
    assert.match(String(response.headers['content-type']), /^text\/html/);
    assert.equal(response.headers['cache-control'], 'no-store');
    assert.equal(response.headers['retry-after'], '60');
    assert.equal(response.headers['ratelimit-policy'], '"address";q=1;w=60');
    assert.match(response.body, /Too many requests came from your network/);
  });

  test('never limits the health probes, and limits nothing switched off', async (t) => {
    const f = await fixture(t, { address: { quota: 1, window: 60 }, client: 'off' });
    for (let i = 0; i < 5; i++) assert.equal((await f.inject({ method: 'GET', url: '/healthz' })).statusCode, 200);
    await f.apply({ rate_limits: { address: 'off' } });
    for (let i = 0; i < 5; i++) assert.equal((await f.token({ auth: f.basic('broker-1'), form: tokenForm })).statusCode, 200);
  });
});
