import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import fastify from 'fastify';
import { acrLadder as guardLadder, createGuard, type Guard, type VerifiedAccess } from 'clearance/guard';
import { clearanceGuard } from 'clearance/guard/fastify';
import { acrLadder } from '../../src/identity/acr.ts';
import { recordUses } from '../../src/policy/first-use.ts';
import { dpopKey, dpopProof, ath } from '../helpers/dpop.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { examplePolicyText, exampleEntities, ordersApi, peopleAndClients, userId } from '../policy/fixture.ts';
import { refused } from './fixture.ts';

// The guard and the person's authentication (docs/guard.md): a route's minimum level and maximum
// age, checked from the token's acr and auth_time, and a policy's step-up, each answered with the
// RFC 9470 challenge a client can authorize again from.

const phr = 'urn:clearance:acr:phr';
const mfa = 'urn:clearance:acr:mfa';

let server: TestServer;
let aliceId: string;
const cleanups: (() => unknown)[] = [];
/** Closes what the server set up, after the last test. */
const hooks = {
  after(fn: () => unknown): void {
    cleanups.push(fn);
  },
};

before(async () => {
  server = await startTestServer({ t: hooks });
  await server.apply({ ...exampleEntities(), ...peopleAndClients });
  await server.apply({ policies: [{ version: 'v1', text: examplePolicyText({ stepUp: true }), change_ref: 'CHG-14', author: 'alice.author', approver: 'bob.approver', active: true }] });
  aliceId = await userId(server.running.ctx, 'alice');
});
after(async () => {
  for (const fn of cleanups.reverse()) await fn();
});

function guard(): Guard {
  return createGuard({
    issuer: server.issuer,
    audience: ordersApi,
    jwksUri: `${server.issuer}/jwks`,
    policy: { credentials: { clientId: 'order-gateway', clientSecret: server.secrets['order-gateway']! } },
  });
}

/** A token for alice saying how she signed in. */
async function token(authentication: { acr?: string; auth_time?: number; amr?: string[] }, extra: Record<string, unknown> = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return server.running.ctx.keys.signJwt(
    { typ: 'at+jwt' },
    { iss: server.issuer, sub: aliceId, aud: ordersApi, exp: now + 300, iat: now, jti: crypto.randomUUID(), client_id: 'desk-app', scope: 'order:create', ...authentication, ...extra },
  );
}

async function verified(authentication: { acr?: string; auth_time?: number; amr?: string[] }): Promise<VerifiedAccess> {
  return guard().verify({ method: 'POST', url: `${ordersApi}/orders`, headers: { authorization: `Bearer ${await token(authentication)}` } });
}

const now = () => Math.floor(Date.now() / 1000);

describe('the guard’s acr ladder', () => {
  test('is the server’s', () => {
    assert.deepEqual([...guardLadder], [...acrLadder]);
  });
});

describe('requiring a level and a freshness per request', () => {
  test('reads acr, amr and auth_time from the token', async () => {
    const access = await verified({ acr: mfa, amr: ['pwd', 'otp', 'mfa'], auth_time: 1_700_000_000 });
    assert.equal(access.acr, mfa);
    assert.deepEqual(access.amr, ['pwd', 'otp', 'mfa']);
    assert.equal(access.authTime, 1_700_000_000);
  });

  test('a level below the route’s is 401 insufficient_user_authentication with acr_values (RFC 9470 §3)', async () => {
    const g = guard();
    const error = await refused(Promise.resolve().then(async () => g.requireAuthentication(await verified({ acr: mfa, auth_time: now() }), { acr: phr })), 401, 'insufficient_user_authentication');
    assert.equal(error.wwwAuthenticate, `Bearer error="insufficient_user_authentication", error_description="a stronger sign-in is required for this request", acr_values="${phr}"`);
    for (const ok of [phr, 'urn:clearance:acr:phrh']) g.requireAuthentication(await verified({ acr: ok }), { acr: phr });
    g.requireAuthentication(await verified({ acr: 'urn:clearance:acr:1fa' }), { acr: 'urn:clearance:acr:pwd' });
    await refused(Promise.resolve().then(async () => g.requireAuthentication(await verified({}), { acr: 'urn:clearance:acr:pwd' })), 401, 'insufficient_user_authentication', 'a token that does not say');
    await refused(Promise.resolve().then(async () => g.requireAuthentication(await verified({ acr: 'urn:example:gold' }), { acr: mfa })), 401, 'insufficient_user_authentication', 'a level off the ladder');
  });

  test('an authentication older than the route’s max age is challenged with max_age', async () => {
    const g = guard();
    g.requireAuthentication(await verified({ acr: mfa, auth_time: now() - 200 }), { acr: mfa, maxAge: 300 });
    const error = await refused(Promise.resolve().then(async () => g.requireAuthentication(await verified({ acr: mfa, auth_time: now() - 400 }), { acr: mfa, maxAge: 300 })), 401, 'insufficient_user_authentication');
    assert.match(error.wwwAuthenticate!, /^Bearer error="insufficient_user_authentication", error_description="a more recent sign-in is required for this request", acr_values="urn:clearance:acr:mfa", max_age="300"$/);
    await refused(Promise.resolve().then(async () => g.requireAuthentication(await verified({ acr: mfa }), { maxAge: 300 })), 401, 'insufficient_user_authentication', 'no auth_time');
  });

  test('refuses a requirement that is not one of Clearance’s levels', () => {
    assert.throws(() => guard().requireAuthentication({} as VerifiedAccess, { acr: 'urn:example:gold' }), TypeError);
    assert.throws(() => guard().requireAuthentication({} as VerifiedAccess, { maxAge: -1 }), TypeError);
  });
});

describe('the fastify plugin’s per-route acr and maxAge', () => {
  test('challenge in the scheme the client used, before the handler runs', async (t) => {
    const app = fastify();
    t.after(() => app.close());
    let handled = 0;
    await app.register(clearanceGuard, { guard: guard(), origin: 'https://orders.example.com' });
    app.post('/api/orders', { config: { clearance: { scopes: ['order:create'], acr: phr, maxAge: 600 } } }, async () => ({ handled: ++handled }));
    await app.ready();
    const post = (authorization: string, headers: Record<string, string> = {}) => app.inject({ method: 'POST', url: '/api/orders', headers: { authorization, ...headers }, payload: {} });

    const weak = await post(`Bearer ${await token({ acr: mfa, auth_time: now() })}`);
    assert.equal(weak.statusCode, 401);
    assert.equal(weak.headers['www-authenticate'], `Bearer error="insufficient_user_authentication", error_description="a stronger sign-in is required for this request", acr_values="${phr}", max_age="600"`);
    assert.equal(weak.headers['cache-control'], 'no-store');
    assert.equal((weak.json() as { error: string }).error, 'insufficient_user_authentication');
    const stale = await post(`Bearer ${await token({ acr: phr, auth_time: now() - 3600 })}`);
    assert.equal(stale.statusCode, 401);
    assert.match(String(stale.headers['www-authenticate']), /max_age="600"/);
    assert.equal(handled, 0);
    assert.equal((await post(`Bearer ${await token({ acr: phr, auth_time: now() - 60 })}`)).statusCode, 200);

    // A DPoP-bound token is challenged with the DPoP scheme.
    const key = dpopKey();
    const bound = await token({ acr: mfa, auth_time: now() }, { cnf: { jkt: key.jkt } });
    const dpop = await post(`DPoP ${bound}`, { dpop: dpopProof(key, { htm: 'POST', htu: 'https://orders.example.com/api/orders', ath: ath(bound) }) });
    assert.equal(dpop.statusCode, 401);
    assert.match(String(dpop.headers['www-authenticate']), /^DPoP error="insufficient_user_authentication", .*acr_values="urn:clearance:acr:phr", max_age="600", algs="/);
  });

  test('a route naming a level Clearance does not have fails when it is declared', async (t) => {
    const app = fastify();
    t.after(() => app.close());
    await app.register(clearanceGuard, { guard: guard() });
    assert.throws(() => app.get('/x', { config: { clearance: { acr: 'urn:clearance:acr:2fa' } } }, async () => 'x'), TypeError);
  });
});

describe('a step-up policy through the guard', () => {
  const fxOrder = (notional: number) => ({ action: 'order:create', resource: { type: 'instrument', id: 'EURUSD', properties: { instrument_class: 'fx' } }, context: { notional, currency: 'USD' } });

  test('sends the token’s acr and auth_time, and turns the PDP’s step_up into the RFC 9470 challenge', async () => {
    const g = guard();
    // alice traded fx before, so only the notional decides here.
    await server.running.ctx.storage.db.transaction().execute((trx) => recordUses(trx, server.running.ctx, aliceId, [{ kind: 'instrument_class', value: 'fx' }]));
    const atMfa = await verified({ acr: mfa, auth_time: now() });
    const decision = await g.askPolicy(atMfa, fxOrder(20_000_000));
    assert.equal(decision.decision, false);
    assert.deepEqual(decision.stepUp, { acrValues: phr });
    const error = await refused(g.requirePolicy(atMfa, fxOrder(20_000_000)), 401, 'insufficient_user_authentication');
    assert.equal(error.wwwAuthenticate, `Bearer error="insufficient_user_authentication", error_description="policy requires a stronger or more recent sign-in for this request", acr_values="${phr}"`);
    // At the level, allowed; a plain deny stays 403.
    assert.equal((await g.requirePolicy(await verified({ acr: phr, auth_time: now() }), fxOrder(20_000_000))).decision, true);
    await refused(g.requirePolicy(await verified({ acr: phr, auth_time: now() }), fxOrder(60_000_000)), 403, 'access_denied');
  });

  test('the example set fails closed when the desk’s time is unknown: a small order asks for a passkey', async () => {
    const g = guard();
    await server.running.ctx.storage.db.transaction().execute((trx) => recordUses(trx, server.running.ctx, aliceId, [{ kind: 'instrument_class', value: 'fx' }]));
    // alice's desks (examples/entities.yaml) have no time_zone: the hour at her desk is unknown.
    const small = await g.askPolicy(await verified({ acr: mfa, auth_time: now() }), fxOrder(1_000_000));
    assert.equal(small.decision, false);
    assert.deepEqual(small.stepUp, { acrValues: phr });
    assert.deepEqual(small.reasons, ['step-up-outside-trading-hours']);
    assert.equal((await g.askPolicy(await verified({ acr: phr, auth_time: now() }), fxOrder(1_000_000))).decision, true);
  });

  test('a question whose context claims an acr or auth_time is a programming error: only the token says how the person signed in', async () => {
    const g = guard();
    await server.running.ctx.storage.db.transaction().execute((trx) => recordUses(trx, server.running.ctx, aliceId, [{ kind: 'instrument_class', value: 'fx' }]));
    const atMfa = await verified({ acr: mfa, auth_time: now() });
    // A route that forwards its client's context would otherwise let the client claim a passkey.
    for (const claimed of [{ acr: phr }, { auth_time: now() }, { acr: phr, auth_time: now() }]) {
      const question = { ...fxOrder(20_000_000), context: { notional: 20_000_000, currency: 'USD', ...claimed } };
      await assert.rejects(g.askPolicy(atMfa, question), TypeError, JSON.stringify(claimed));
      await assert.rejects(g.requirePolicy(atMfa, question), TypeError, JSON.stringify(claimed));
    }
    // The token's level is what decides.
    assert.deepEqual((await g.askPolicy(atMfa, fxOrder(20_000_000))).stepUp, { acrValues: phr });
  });

  test('sends the token’s txn, so the decision is filed under the trade; a question may not set it', async () => {
    const g = guard();
    await server.running.ctx.storage.db.transaction().execute((trx) => recordUses(trx, server.running.ctx, aliceId, [{ kind: 'instrument_class', value: 'fx' }]));
    const txn = `trade-${crypto.randomUUID()}`;
    const access = await g.verify({ method: 'POST', url: `${ordersApi}/orders`, headers: { authorization: `Bearer ${await token({ acr: phr, auth_time: now() }, { txn })}` } });
    assert.equal((await g.askPolicy(access, fxOrder(60_000_000))).decision, false);
    const rows = await server.running.ctx.storage.db.selectFrom('audit_events').select(['type', 'txn']).where('txn', '=', txn).execute();
    assert.deepEqual(rows.map((r) => [r.type, r.txn]), [['policy.denied', txn]]);
    await assert.rejects(g.askPolicy(access, { ...fxOrder(1), context: { notional: 1, currency: 'USD', txn: 'another' } }), TypeError);
  });

  test('sends the token’s mandate (id and version), which Clearance holds the order to; a question may not name one', async () => {
    const g = guard();
    await server.running.ctx.storage.db.transaction().execute((trx) => recordUses(trx, server.running.ctx, aliceId, [{ kind: 'instrument_class', value: 'fx' }]));
    const txn = `trade-${crypto.randomUUID()}`;
    const access = await g.verify({ method: 'POST', url: `${ordersApi}/orders`, headers: { authorization: `Bearer ${await token({ acr: phr, auth_time: now() }, { txn, mandate: { id: 'no-such-mandate', v: 3 } })}` } });
    const answer = await g.askPolicy(access, fxOrder(1_000_000));
    assert.equal(answer.decision, false, 'the policies allow this order; the mandate it runs under does not exist');
    assert.deepEqual(answer.reasons, ['mandate']);
    const [row] = await server.running.ctx.storage.db.selectFrom('audit_events').select('event').where('txn', '=', txn).execute();
    assert.deepEqual(JSON.parse(row!.event).mandate, { id: 'no-such-mandate', v: 3 });
    await assert.rejects(g.askPolicy(access, { ...fxOrder(1), context: { notional: 1, currency: 'USD', mandate: { id: 'wider', version: 1 } } }), TypeError);
  });
});
