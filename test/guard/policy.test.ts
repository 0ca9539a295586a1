import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { createGuard, type Guard, type GuardOptions, type VerifiedAccess } from 'clearance/guard';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { examplePolicyText, exampleEntities, ordersApi, peopleAndClients, userId } from '../policy/fixture.ts';
import { refused } from './fixture.ts';

// guard.askPolicy against a real Clearance's AuthZEN endpoint with the example entities and
// policies: the resource server authenticates as its own client (order-gateway, allowed
// access:evaluate), and every failure to get a decision is a deny.

let server: TestServer;
let secret: string;
let alice: VerifiedAccess;
const cleanups: (() => unknown)[] = [];
/** Closes what the server set up, after the last test. */
const hooks = {
  after(fn: () => unknown): void {
    cleanups.push(fn);
  },
};

const fxOrder = (notional: number) => ({
  action: 'order:create',
  resource: { type: 'instrument', id: 'EURUSD', properties: { instrument_class: 'fx' } },
  context: { notional, currency: 'USD' },
});

function guardWith(policy: GuardOptions['policy']): Guard {
  return createGuard({ issuer: server.issuer, audience: ordersApi, jwksUri: `${server.issuer}/jwks`, ...(policy ? { policy } : {}) });
}

before(async () => {
  server = await startTestServer({ t: hooks });
  await server.apply({ ...exampleEntities(), ...peopleAndClients });
  await server.apply({ policies: [{ version: 'v1', text: examplePolicyText(), change_ref: 'CHG-1', author: 'alice.author', approver: 'bob.approver', active: true }] });
  secret = server.secrets['order-gateway']!;
  // A token for alice, verified by the guard as a resource server would.
  const sub = await userId(server.running.ctx, 'alice');
  const now = Math.floor(Date.now() / 1000);
  const token = await server.running.ctx.keys.signJwt(
    { typ: 'at+jwt' },
    { iss: server.issuer, sub, aud: ordersApi, exp: now + 300, iat: now, jti: crypto.randomUUID(), client_id: 'desk-app', scope: 'order:create' },
  );
  alice = await guardWith(undefined).verify({ method: 'POST', url: `${ordersApi}/orders`, headers: { authorization: `Bearer ${token}` } });
});
after(async () => {
  for (const fn of cleanups.reverse()) await fn();
});

describe('the guard asking the policy decision point', () => {
  test('gets a permit and a deny with client_secret_basic, with the reasons and the policy version', async () => {
    const guard = guardWith({ credentials: { clientId: 'order-gateway', clientSecret: secret } });
    assert.deepEqual(await guard.askPolicy(alice, fxOrder(1_000_000)), { decision: true, reasons: ['desk-trades-its-product-classes'], policyVersion: 'v1' });
    const denied = await guard.askPolicy(alice, fxOrder(60_000_000));
    assert.equal(denied.decision, false);
    assert.deepEqual(denied.reasons, ['limit-fx-spot-desk-fx']);
    assert.equal(denied.failure, undefined);
  });

  test('requirePolicy passes a permit and refuses a deny with 403 access_denied', async () => {
    const guard = guardWith({ credentials: { clientId: 'order-gateway', clientSecret: secret } });
    assert.equal((await guard.requirePolicy(alice, fxOrder(1_000_000))).decision, true);
    const error = await refused(guard.requirePolicy(alice, fxOrder(60_000_000)), 403, 'access_denied');
    assert.equal(error.detail, 'limit-fx-spot-desk-fx');
  });

  test('authenticates with a Bearer token for the access audience from client_credentials', async () => {
    let fetched = 0;
    const accessToken = async () => {
      fetched++;
      const response = await fetch(`${server.issuer}/token`, {
        method: 'POST',
        headers: { authorization: `Basic ${Buffer.from(`order-gateway:${secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'access:evaluate', resource: `${server.issuer}/access` }).toString(),
      });
      assert.equal(response.status, 200);
      return ((await response.json()) as { access_token: string }).access_token;
    };
    const guard = guardWith({ credentials: { accessToken } });
    assert.equal((await guard.askPolicy(alice, fxOrder(1_000_000))).decision, true);
    assert.equal(fetched, 1);
  });

  test('fails closed: wrong credentials, a refused request, no PDP, a PDP that does not answer, no policy options', async () => {
    const wrongSecret = await guardWith({ credentials: { clientId: 'order-gateway', clientSecret: 'not-the-secret' } }).askPolicy(alice, fxOrder(1));
    assert.equal(wrongSecret.decision, false);
    assert.match(wrongSecret.failure!, /answered 401/);

    const notAllowed = await guardWith({ credentials: { clientId: 'risk-engine', clientSecret: server.secrets['risk-engine']! } }).askPolicy(alice, fxOrder(1));
    assert.match(notAllowed.failure!, /answered 403/, 'a client without access:evaluate');

    const malformed = await guardWith({ credentials: { clientId: 'order-gateway', clientSecret: secret } }).askPolicy(alice, { ...fxOrder(1), action: 'not a scope' });
    assert.match(malformed.failure!, /answered 400/);

    const nowhere = await guardWith({ credentials: { clientId: 'order-gateway', clientSecret: secret }, endpoint: 'http://127.0.0.1:9/access/v1/evaluation' }).askPolicy(alice, fxOrder(1));
    assert.equal(nowhere.decision, false);
    assert.match(nowhere.failure!, /could not be asked/);

    const silent = createServer(() => undefined); // accepts and never answers
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as { port: number }).port;
    try {
      const started = Date.now();
      const slow = await guardWith({ credentials: { clientId: 'order-gateway', clientSecret: secret }, endpoint: `http://127.0.0.1:${port}/`, timeoutMs: 200 }).askPolicy(alice, fxOrder(1));
      assert.equal(slow.decision, false);
      assert.ok(Date.now() - started < 2_000, 'gives up at the time-out');
    } finally {
      silent.closeAllConnections();
      silent.close();
    }

    const unconfigured = await guardWith(undefined).askPolicy(alice, fxOrder(1));
    assert.deepEqual(unconfigured, { decision: false, failure: 'the guard has no policy options' });
  });
});
