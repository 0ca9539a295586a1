import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import type { StoredAuditEvent } from '../../src/audit/events.ts';
import { buildApp } from '../../src/http/app.ts';
import { revokeMandate } from '../../src/mandates/store.ts';
import { testDialects, type TestDialect } from '../helpers/storage.ts';
import { basicAuthorization } from './fixture.ts';
import { applyDocument, policyContext, userId } from '../policy/fixture.ts';

// Issue 17 item 2 (docs/mandates.md "Orders under a mandate"): the AuthZEN API asks whether an
// order may run under a mandate by its id (and the version the token carries) only; Clearance
// loads the version's terms, holds the order to them and gives them to the policies.

const day = 24 * 3600 * 1000;

async function mandateFixture(t: TestContext, dialect?: TestDialect) {
  const { ctx, secrets } = await policyContext(t, dialect ? { dialect } : {});
  const app = buildApp(ctx);
  t.after(() => app.close());
  await app.ready();
  const alice = await userId(ctx, 'alice');
  const bob = await userId(ctx, 'bob');
  const now = ctx.clock.now();
  const iso = (ms: number) => new Date(ms).toISOString();
  const mandate = (id: string, from: number) => ({
    id,
    grantor: { lei: '5493001KJTIIGC8Y1R12' },
    grantee: { user: alice },
    scopes: ['order:create'],
    constraints: { instrument_classes: ['fx'], max_notional: { amount: '5000000', currency: 'USD' } },
    legal_basis: { reference: 'Desk mandate 2026-11' },
    effective_from: iso(from),
    effective_to: iso(now + 365 * day),
    accepted_by: 'head-of-desk@example.com',
    accepted_at: iso(now - day),
  });
  await applyDocument(ctx, { mandates: [mandate('alice-fx', now - day), mandate('alice-fx-next-year', now + 200 * day)] });
  const gateway = basicAuthorization('order-gateway', secrets['order-gateway']!);
  const ask = (body: unknown) =>
    app.inject({ method: 'POST', url: '/access/v1/evaluation', headers: { 'content-type': 'application/json', authorization: gateway }, payload: JSON.stringify(body) });
  const order = (subject: string, context: Record<string, unknown>, instrumentClass = 'fx') => ({
    subject: { type: 'user', id: subject },
    action: { name: 'order:create' },
    resource: { type: 'instrument', id: 'EURUSD', properties: { instrument_class: instrumentClass } },
    context,
  });
  const decide = async (body: unknown) => {
    const response = await ask(body);
    assert.equal(response.statusCode, 200, response.body);
    return response.json() as { decision: boolean; context: { reasons: string[] } };
  };
  const decisions = async () =>
    (await ctx.storage.db.selectFrom('audit_events').select('event').where('type', 'in', ['policy.allowed', 'policy.denied']).orderBy('seq').execute()).map(
      (r) => JSON.parse(r.event) as StoredAuditEvent,
    );
  return { ctx, alice, bob, ask, order, decide, decisions };
}

describe('orders under a mandate at the AuthZEN API (issue 17 item 2)', () => {
  for (const dialect of testDialects()) {
    test(`with only the mandate's id and version, an order within its terms is allowed and one outside them denied, whatever the policies permit (${dialect.name})`, async (t) => {
      const f = await mandateFixture(t, dialect);
      const under = { id: 'alice-fx', version: 1 };
      assert.equal((await f.decide(f.order(f.alice, { notional: 1_000_000, currency: 'USD', mandate: under }))).decision, true);
      // Her desk's policies allow 6 million (the desk limit is higher); the mandate does not.
      assert.equal((await f.decide(f.order(f.alice, { notional: 6_000_000, currency: 'USD' }))).decision, true, 'without the mandate the policies allow it');
      for (const [context, instrumentClass] of [
        [{ notional: 6_000_000, currency: 'USD', mandate: under }, 'fx'],
        [{ notional: 1_000_000, currency: 'EUR', mandate: under }, 'fx'],
        [{ notional: 1_000_000, mandate: under }, 'fx'],
        [{ notional: 1_000_000, currency: 'USD', mandate: under }, 'crypto'],
      ] as const) {
        const answer = await f.decide(f.order(f.alice, context, instrumentClass));
        assert.equal(answer.decision, false, JSON.stringify(context));
        assert.deepEqual(answer.context.reasons, ['mandate']);
      }
      const events = await f.decisions();
      const refused = events.filter((e) => e.decision?.reasons.includes('mandate'));
      assert.equal(refused.length, 4);
      assert.deepEqual(refused[0]!.mandate, { id: 'alice-fx', v: 1 }, 'filed with the mandate version it was asked under');
      assert.match(String(refused[0]!.details!.mandate_refused), /notional USD 6,?000,?000(\.00)? is above the USD 5,?000,?000(\.00)? of mandate alice-fx v1/);
      assert.deepEqual(events[0]!.mandate, { id: 'alice-fx', v: 1 });
    });

    test(`an unknown, revoked or not yet effective mandate, or one granted to someone else, denies (${dialect.name})`, async (t) => {
      const f = await mandateFixture(t, dialect);
      const within = (mandate: unknown, subject = f.alice) => f.order(subject, { notional: 1_000_000, currency: 'USD', mandate });
      const refusedFor = async (body: unknown) => {
        const answer = await f.decide(body);
        assert.equal(answer.decision, false);
        assert.deepEqual(answer.context.reasons, ['mandate']);
        return (await f.decisions()).at(-1)!.details!.mandate_refused;
      };
      assert.match(String(await refusedFor(within({ id: 'nobodys-mandate' }))), /does not exist/);
      assert.match(String(await refusedFor(within({ id: 'alice-fx', version: 7 }))), /does not exist/);
      assert.match(String(await refusedFor(within({ id: 'alice-fx-next-year' }))), /not in effect before/);
      assert.match(String(await refusedFor(within({ id: 'alice-fx' }, f.bob))), /granted to another user/);
      // The current version, when no version is named.
      assert.equal((await f.decide(within({ id: 'alice-fx' }))).decision, true);
      await revokeMandate(f.ctx, 'alice-fx', { reason: 'desk closed' }, { actor: 'compliance' });
      assert.match(String(await refusedFor(within({ id: 'alice-fx', version: 1 }))), /revoked/);
    });
  }

  test('terms sent by the caller are refused: Clearance loads them, so a caller can never widen a mandate', async (t) => {
    const f = await mandateFixture(t);
    for (const terms of [{ max_notional: 50_000_000 }, { instrument_classes: ['fx', 'crypto'] }, { currency: 'EUR' }, { scopes: ['order:create'] }]) {
      const response = await f.ask(f.order(f.alice, { notional: 6_000_000, currency: 'USD', mandate: { id: 'alice-fx', version: 1, ...terms } }));
      assert.equal(response.statusCode, 400, JSON.stringify(terms));
      assert.equal(response.json().error, 'invalid_request');
      assert.match(response.json().error_description, /is loaded by Clearance from the mandate's version; send only id and version/);
    }
    for (const bad of [{}, { id: 'bad id' }, { id: 'alice-fx', version: 0 }, { id: 'alice-fx', version: '1' }, 'alice-fx']) {
      const response = await f.ask(f.order(f.alice, { notional: 1, currency: 'USD', mandate: bad }));
      assert.equal(response.statusCode, 400, JSON.stringify(bad));
    }
  });
});
