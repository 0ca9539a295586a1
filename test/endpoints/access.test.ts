import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import type { StoredAuditEvent } from '../../src/audit/events.ts';
import type { Context } from '../../src/context.ts';
import { buildApp } from '../../src/http/app.ts';
import { basicAuthorization } from './fixture.ts';
import { answerSources, policyContext, userId } from '../policy/fixture.ts';

interface AccessFixture {
  ctx: Context;
  app: FastifyInstance;
  alice: string;
  bob: string;
  gateway: string;
  secrets: Record<string, string>;
  post(path: string, body: unknown, headers?: Record<string, string>): Promise<LightMyRequestResponse>;
  decisions(): Promise<StoredAuditEvent[]>;
}

async function accessFixture(t: TestContext): Promise<AccessFixture> {
  const { ctx, secrets } = await policyContext(t);
  const app = buildApp(ctx);
  t.after(() => app.close());
  await app.ready();
  const gateway = basicAuthorization('order-gateway', secrets['order-gateway']!);
  return {
    ctx,
    app,
    alice: await userId(ctx, 'alice'),
    bob: await userId(ctx, 'bob'),
    gateway,
    secrets,
    post: (path, body, headers = {}) =>
      app.inject({ method: 'POST', url: path, headers: { 'content-type': 'application/json', authorization: gateway, ...headers }, payload: JSON.stringify(body) }),
    async decisions() {
      const rows = await ctx.storage.db.selectFrom('audit_events').select('event').where('type', 'in', ['policy.allowed', 'policy.denied']).orderBy('seq').execute();
      return rows.map((r) => JSON.parse(r.event) as StoredAuditEvent);
    },
  };
}

const fxOrder = (subject: string, notional: number) => ({
  subject: { type: 'user', id: subject },
  action: { name: 'order:create' },
  resource: { type: 'instrument', id: 'EURUSD', properties: { instrument_class: 'fx' } },
  context: { notional, currency: 'USD' },
});

describe('the AuthZEN access evaluation API', () => {
  test('answers an evaluation with the decision, its reasons and the policy version, and audits it', async (t) => {
    const f = await accessFixture(t);
    const allowed = await f.post('/access/v1/evaluation', fxOrder(f.alice, 1_000_000), { 'x-request-id': 'pep-42' });
    assert.equal(allowed.statusCode, 200, allowed.body);
    assert.equal(allowed.headers['x-request-id'], 'pep-42');
    assert.equal(allowed.headers['cache-control'], 'no-store');
    assert.deepEqual(allowed.json(), {
      decision: true,
      context: {
        policy_version: 'v1',
        reasons: ['desk-trades-its-product-classes'],
        reason_admin: { en: 'allowed by desk-trades-its-product-classes (policy set v1)' },
      },
    });
    const denied = await f.post('/access/v1/evaluation', fxOrder(f.alice, 60_000_000));
    assert.equal(denied.json().decision, false);
    assert.deepEqual(denied.json().context.reasons, ['limit-fx-spot-desk-fx']);
    assert.deepEqual(denied.json().context.reason_user, { en: 'not permitted by policy' });

    const events = await f.decisions();
    assert.deepEqual(events.map((e) => [e.type, e.client, e.details!.via]), [
      ['policy.allowed', 'order-gateway', 'authzen'],
      ['policy.denied', 'order-gateway', 'authzen'],
    ]);
  });

  test("files each decision under the trade's txn the guard sends in the context, and refuses a malformed one", async (t) => {
    const f = await accessFixture(t);
    const withTxn = (notional: number, txn: unknown) => ({ ...fxOrder(f.alice, notional), context: { notional, currency: 'USD', txn } });
    assert.equal((await f.post('/access/v1/evaluation', withTxn(1_000_000, 'trade-2026-0001'))).json().decision, true);
    assert.equal((await f.post('/access/v1/evaluation', withTxn(60_000_000, 'trade-2026-0001'))).json().decision, false);
    const batch = await f.post('/access/v1/evaluations', { evaluations: [withTxn(1_000_000, 'trade-2'), withTxn(60_000_000, 'trade-3')] });
    assert.equal(batch.statusCode, 200, batch.body);
    assert.deepEqual((await f.decisions()).map((e) => [e.type, e.txn, e.details!.reasons ?? e.decision?.reasons]).map(([type, txn]) => [type, txn]), [
      ['policy.allowed', 'trade-2026-0001'],
      ['policy.denied', 'trade-2026-0001'],
      ['policy.allowed', 'trade-2'],
      ['policy.denied', 'trade-3'],
    ]);
    for (const bad of ['has space', 'x'.repeat(65), 42, 'new']) {
      const refused = await f.post('/access/v1/evaluation', withTxn(1_000_000, bad));
      assert.equal(refused.statusCode, 400, refused.body);
      assert.match(refused.body, /context\.txn/);
    }
    assert.equal((await f.decisions()).length, 4, 'a malformed txn decides nothing');
  });

  test("decides well-formed orders with Cedar asked without the schema, as it would with it", async (t) => {
    const f = await accessFixture(t);
    const before = await answerSources();
    // The FX desk's 50m limit: one under, one over (fresh notionals, so neither is remembered).
    const under = await f.post('/access/v1/evaluation', fxOrder(f.alice, 1_000_003));
    const over = await f.post('/access/v1/evaluation', fxOrder(f.alice, 60_000_003));
    assert.deepEqual([under.json().decision, over.json().decision], [true, false]);
    assert.deepEqual(over.json().context.reasons, ['limit-fx-spot-desk-fx']);
    const after = await answerSources();
    assert.ok(after.checked! - (before.checked ?? 0) >= 2, 'both asked without the schema');
    assert.equal(after.schema ?? 0, before.schema ?? 0, 'none needed the schema');
  });

  test('answers an order in a band of notionals it has decided from memory, and one across a limit afresh', async (t) => {
    const f = await accessFixture(t);
    const decide = async (notional: number) => {
      const before = await answerSources();
      const answer = await f.post('/access/v1/evaluation', fxOrder(f.alice, notional));
      const after = await answerSources();
      return [notional, answer.json().decision, Object.keys(after).filter((source) => after[source] !== (before[source] ?? 0)).join()];
    };
    const asked = [];
    // The FX desk's limit is 50m (limits.cedar): at it allowed, above it denied; 12 is below the
    // lowest limit (2m), a band not asked yet.
    for (const notional of [49_999_999, 50_000_000, 50_000_001, 49_000_000, 55_000_000, 50_000_000, 12]) asked.push(await decide(notional));
    assert.deepEqual(asked, [
      [49_999_999, true, 'checked'],
      [50_000_000, true, 'checked'],
      [50_000_001, false, 'checked'],
      [49_000_000, true, 'remembered'],
      [55_000_000, false, 'remembered'],
      [50_000_000, true, 'remembered'],
      [12, true, 'checked'],
    ]);
    // Every decision is evidenced with its own notional.
    assert.deepEqual(
      (await f.decisions()).map((e) => (e.details!.request as { context: { notional: number } }).context.notional),
      asked.map(([notional]) => notional),
    );
  });

  test('fails closed: an unknown subject or resource is a deny, not an error', async (t) => {
    const f = await accessFixture(t);
    const unknown = await f.post('/access/v1/evaluation', fxOrder('no-such-user', 1));
    assert.equal(unknown.statusCode, 200);
    assert.equal(unknown.json().decision, false);
    assert.match(unknown.json().context.reason_admin.en, /no user no-such-user/);
    const account = await f.post('/access/v1/evaluation', { subject: { type: 'client', id: 'risk-engine' }, action: { name: 'position:view' }, resource: { type: 'account', id: 'NOPE' } });
    assert.equal(account.json().decision, false);
  });

  test('evaluates a batch with defaults and each evaluations semantic', async (t) => {
    const f = await accessFixture(t);
    const batch = {
      subject: { type: 'user', id: f.alice },
      action: { name: 'order:create' },
      context: { notional: 1_000_000 },
      evaluations: [
        { resource: { type: 'instrument', id: 'EURUSD', properties: { instrument_class: 'fx' } } },
        { resource: { type: 'instrument', id: 'BTC-USD', properties: { instrument_class: 'crypto' } } },
        { resource: { type: 'instrument', id: 'SOFR-2Y', properties: { instrument_class: 'rates_derivatives' } }, context: { notional: 30_000_000 } },
        { subject: { type: 'user', id: f.bob }, resource: { type: 'instrument', id: 'BTC-USD', properties: { instrument_class: 'crypto' } } },
      ],
    };
    const all = await f.post('/access/v1/evaluations', batch);
    assert.equal(all.statusCode, 200, all.body);
    assert.deepEqual(all.json().evaluations.map((e: { decision: boolean }) => e.decision), [true, false, false, false]);
    assert.deepEqual(all.json().evaluations[2].context.reasons, ['limit-rates-desk-rates-derivatives']);
    assert.deepEqual(all.json().evaluations[3].context.reasons, ['kyc-verified-to-trade']);

    const denyFirst = await f.post('/access/v1/evaluations', { ...batch, options: { evaluations_semantic: 'deny_on_first_deny' } });
    assert.deepEqual(denyFirst.json().evaluations.map((e: { decision: boolean }) => e.decision), [true, false]);
    const permitFirst = await f.post('/access/v1/evaluations', { ...batch, options: { evaluations_semantic: 'permit_on_first_permit' } });
    assert.deepEqual(permitFirst.json().evaluations.map((e: { decision: boolean }) => e.decision), [true]);

    // Without evaluations it is one evaluation, answered as such (§7.1).
    const single = await f.post('/access/v1/evaluations', fxOrder(f.alice, 5));
    assert.equal(single.json().decision, true);
    assert.equal(single.json().evaluations, undefined);
    assert.equal((await f.decisions()).length, 4 + 2 + 1 + 1);
  });

  test('answers a batch only once every decision of it is durable, and fails when one cannot be recorded', async (t) => {
    const f = await accessFixture(t);
    const batch = { subject: { type: 'user', id: f.alice }, action: { name: 'order:create' }, context: { notional: 5 }, evaluations: [fxOrder(f.alice, 1), fxOrder(f.bob, 1), fxOrder(f.alice, 60_000_000)] };
    const answered = await f.post('/access/v1/evaluations', batch);
    assert.equal(answered.statusCode, 200);
    assert.equal((await f.decisions()).length, 3, 'all three recorded when the answer left');
    const record = f.ctx.audit.record.bind(f.ctx.audit);
    let calls = 0;
    f.ctx.audit.record = (event) => (++calls === 2 ? Promise.reject(new Error('disk full')) : record(event));
    t.after(() => {
      f.ctx.audit.record = record;
    });
    const failed = await f.post('/access/v1/evaluations', batch);
    assert.equal(failed.statusCode, 500, 'a PEP treats it as a deny');
    assert.equal(failed.json().evaluations, undefined);
  });

  test('refuses a malformed request with every problem by path, and decides nothing', async (t) => {
    const f = await accessFixture(t);
    const bad = await f.post('/access/v1/evaluation', {
      subject: { type: 'robot', id: f.alice },
      action: { name: 'Buy' },
      resource: { type: 'instrument', id: 'EURUSD', properties: { instrument_class: 'fx', colour: 'red' } },
      context: { notional: -5, time: 0, favourite: 'x' },
    });
    assert.equal(bad.statusCode, 400);
    assert.equal(bad.json().error, 'invalid_request');
    const description = bad.json().error_description as string;
    for (const expected of ['subject.type: must be one of user, client, agent', 'action.name: must be a scope', 'resource.properties.colour: is not a recognised field', 'context.notional: must be from 0', "context.time: is Clearance's own clock", 'context.favourite: is not an attribute']) {
      assert.ok(description.includes(expected), `${expected} in ${description}`);
    }
    const missing = await f.post('/access/v1/evaluations', { evaluations: [{ action: { name: 'order:create' } }] });
    assert.equal(missing.statusCode, 400);
    assert.match(missing.json().error_description, /evaluations\[0\]\.subject: is required/);
    const form = await f.app.inject({ method: 'POST', url: '/access/v1/evaluation', headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: f.gateway }, payload: 'a=b' });
    assert.equal(form.statusCode, 415);
    assert.equal((await f.decisions()).length, 0);
  });

  test('admits only authenticated clients allowed access:evaluate, by Basic or by an access token', async (t) => {
    const f = await accessFixture(t);
    const none = await f.app.inject({ method: 'POST', url: '/access/v1/evaluation', headers: { 'content-type': 'application/json' }, payload: JSON.stringify(fxOrder(f.alice, 1)) });
    assert.equal(none.statusCode, 401);
    assert.match(String(none.headers['www-authenticate']), /Basic/);
    const wrongSecret = await f.post('/access/v1/evaluation', fxOrder(f.alice, 1), { authorization: basicAuthorization('order-gateway', 'wrong') });
    assert.equal(wrongSecret.statusCode, 401);
    assert.equal(wrongSecret.json().error, 'invalid_client');

    // A client without access:evaluate is refused (403), however well it authenticates.
    const other = await f.post('/access/v1/evaluation', fxOrder(f.alice, 1), { authorization: basicAuthorization('no-pdp-access', f.secrets['no-pdp-access']!) });
    assert.equal(other.statusCode, 403);
    assert.equal(other.json().error, 'access_denied');

    // A token for <issuer>/access with access:evaluate works as a Bearer token.
    const issued = await f.app.inject({
      method: 'POST',
      url: '/token',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: f.gateway },
      payload: 'grant_type=client_credentials&scope=access%3Aevaluate',
    });
    assert.equal(issued.statusCode, 200, issued.body);
    const token = issued.json().access_token as string;
    const bearer = await f.post('/access/v1/evaluation', fxOrder(f.alice, 1), { authorization: `Bearer ${token}` });
    assert.equal(bearer.statusCode, 200, bearer.body);
    assert.equal(bearer.json().decision, true);
    const forged = await f.post('/access/v1/evaluation', fxOrder(f.alice, 1), { authorization: `Bearer ${token.slice(0, -4)}AAAA` });
    assert.equal(forged.statusCode, 401);
    // Each refused caller was recorded as a failed client authentication, and decided nothing.
    assert.equal((await f.decisions()).length, 1);
  });

  test('publishes the PDP metadata', async (t) => {
    const f = await accessFixture(t);
    const response = await f.app.inject({ method: 'GET', url: '/.well-known/authzen-configuration' });
    assert.equal(response.statusCode, 200);
    const issuer = f.ctx.config.issuer;
    assert.deepEqual(response.json(), {
      policy_decision_point: issuer,
      access_evaluation_endpoint: `${issuer}/access/v1/evaluation`,
      access_evaluations_endpoint: `${issuer}/access/v1/evaluations`,
    });
  });
});
