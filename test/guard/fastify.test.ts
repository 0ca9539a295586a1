import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import fastify, { type FastifyInstance } from 'fastify';
import { createGuard, createIdempotencyGuard, fingerprintOf, MemoryIdempotencyStore } from 'clearance/guard';
import { clearanceGuard, idempotent } from 'clearance/guard/fastify';
import { ath, dpopKey, dpopProof } from '../helpers/dpop.ts';
import { guardFixture, ordersApi, type GuardFixture } from './fixture.ts';

// An order API built on fastify with the guard plugin, driven with inject: the plugin verifies
// tokens before handlers run, answers refusals itself, and the idempotency wrapper answers a
// duplicate instruction with the first record.

const origin = 'https://orders.example.com';

let f: GuardFixture;
let app: FastifyInstance;
let handled = 0;
const cleanups: (() => unknown)[] = [];

before(async () => {
  f = await guardFixture({ after: (fn) => cleanups.push(fn) });
  const guard = createGuard({ issuer: f.issuer, audience: ordersApi, jwksUri: `${f.issuer}/jwks` });
  const idem = createIdempotencyGuard({ store: new MemoryIdempotencyStore() });
  app = fastify();
  await app.register(clearanceGuard, { guard, origin });
  app.get('/health', { config: { clearance: false } }, async () => ({ ok: true }));
  app.get('/api/positions', { config: { clearance: { scopes: ['position:view'] } } }, async (request) => {
    handled++;
    return { subject: request.access!.subject, binding: request.access!.binding.method };
  });
  app.post(
    '/api/orders',
    { config: { clearance: { scopes: ['order:create'] } } },
    idempotent(idem, { action: 'order:create', fingerprint: (request) => fingerprintOf(request.body) }, async (request, reply) => {
      handled++;
      reply.code(201);
      return { order_id: `ord-${handled}`, txn: request.access!.txn };
    }),
  );
  await app.ready();
  cleanups.push(() => app.close());
});
after(async () => {
  for (const fn of cleanups.reverse()) await fn();
});

const order = { instrument: 'EURUSD', side: 'buy', quantity: 1_000_000 };

describe('the fastify plugin', () => {
  test('lets a valid token through with request.access, and leaves a route marked public alone', async () => {
    const { access_token } = await f.token({ scope: 'position:view' });
    const response = await app.inject({ method: 'GET', url: '/api/positions', headers: { authorization: `Bearer ${access_token}` } });
    assert.equal(response.statusCode, 200, response.body);
    assert.deepEqual(response.json(), { subject: 'order-router', binding: 'none' });
    assert.equal((await app.inject({ method: 'GET', url: '/health' })).statusCode, 200);
  });

  test('answers a missing token with 401, a challenge, a JSON error and no-store, before the handler runs', async () => {
    const before = handled;
    const response = await app.inject({ method: 'GET', url: '/api/positions' });
    assert.equal(response.statusCode, 401);
    assert.equal(response.headers['www-authenticate'], 'Bearer, DPoP algs="ES256 EdDSA Ed25519 PS256"');
    assert.equal(response.headers['cache-control'], 'no-store');
    assert.match(String(response.headers['content-type']), /^application\/json/);
    assert.deepEqual(response.json(), { error: 'invalid_token', error_description: 'a Bearer or DPoP access token is required' });
    assert.equal(handled, before);
  });

  test('answers a token without the route scope with 403 insufficient_scope naming it', async () => {
    const { access_token } = await f.token({ scope: 'order:create' });
    const response = await app.inject({ method: 'GET', url: '/api/positions', headers: { authorization: `Bearer ${access_token}` } });
    assert.equal(response.statusCode, 403);
    assert.match(String(response.headers['www-authenticate']), /error="insufficient_scope".*scope="position:view"/);
    assert.equal(response.json().error, 'insufficient_scope');
  });

  test('refuses a token in the query with 400 invalid_request', async () => {
    const { access_token } = await f.token({ scope: 'position:view' });
    const response = await app.inject({ method: 'GET', url: `/api/positions?access_token=${access_token}` });
    assert.equal(response.statusCode, 400);
    assert.equal(response.json().error, 'invalid_request');
  });

  test('checks a DPoP proof against the public origin it is configured with', async () => {
    const key = dpopKey();
    const { access_token } = await f.token({ scope: 'position:view', dpop: key });
    const call = (htu: string) =>
      app.inject({ method: 'GET', url: '/api/positions?page=1', headers: { authorization: `DPoP ${access_token}`, dpop: dpopProof(key, { htm: 'GET', htu, ath: ath(access_token) }) } });
    const passed = await call(`${origin}/api/positions`);
    assert.equal(passed.statusCode, 200, passed.body);
    assert.equal(passed.json().binding, 'dpop');
    const wrong = await call('http://localhost:80/api/positions');
    assert.equal(wrong.statusCode, 401);
    assert.equal(wrong.json().error, 'invalid_dpop_proof');
    assert.match(String(wrong.headers['www-authenticate']), /^DPoP error="invalid_dpop_proof"/);
  });

  test('runs an instruction once per txn: a duplicate gets 409 with the first record, another body 409 conflict', async () => {
    const token = await f.sign(f.claims({ txn: 'txn-7f2c' }));
    const post = (body: unknown, bearer = token) =>
      app.inject({ method: 'POST', url: '/api/orders', headers: { authorization: `Bearer ${bearer}`, 'content-type': 'application/json' }, payload: JSON.stringify(body) });

    const first = await post(order);
    assert.equal(first.statusCode, 201, first.body);
    const created = first.json() as { order_id: string; txn: string };
    assert.equal(created.txn, 'txn-7f2c');
    const runs = handled;

    const again = await post({ quantity: 1_000_000, side: 'buy', instrument: 'EURUSD' });
    assert.equal(again.statusCode, 409);
    assert.equal(again.headers['cache-control'], 'no-store');
    const body = again.json();
    assert.equal(body.error, 'duplicate_instruction');
    assert.equal(body.instruction.state, 'done');
    assert.deepEqual(body.instruction.result, created);
    assert.ok(Date.parse(body.instruction.processedAt) > 0);
    assert.equal(handled, runs, 'the handler did not run again');

    const changed = await post({ ...order, quantity: 5_000_000 });
    assert.equal(changed.statusCode, 409);
    assert.equal(changed.json().error, 'instruction_conflict');

    const [one, two] = await Promise.all([post(order, await f.sign(f.claims({ txn: 'txn-par' }))), post(order, await f.sign(f.claims({ txn: 'txn-par' })))]);
    assert.deepEqual([one.statusCode, two.statusCode].sort(), [201, 409], 'two parallel requests: one runs');
  });

  test('refuses an instruction whose token has no txn with 403 txn_required', async () => {
    const { access_token } = await f.token({ scope: 'order:create' });
    const response = await app.inject({ method: 'POST', url: '/api/orders', headers: { authorization: `Bearer ${access_token}`, 'content-type': 'application/json' }, payload: JSON.stringify(order) });
    assert.equal(response.statusCode, 403);
    assert.equal(response.json().error, 'txn_required');
  });
});
