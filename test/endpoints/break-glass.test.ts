import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { expireActivations } from '../../src/approvals/break-glass/activations.ts';
import { closeReview } from '../../src/approvals/break-glass/reviews.ts';
import { acr } from '../../src/identity/acr.ts';
import { testDialects } from '../helpers/storage.ts';
import { breakGlassFixture, type BreakGlassFixture } from '../approvals/break-glass-fixture.ts';
import { auditRefuses } from '../helpers/audit-faults.ts';

// The reads of the break-glass admin API name people — an account's custodians, who asked for an
// activation, who closed its review — so each is on the record as `people.reviewed` by its reader
// before the answer leaves, and is not answered when it cannot be (AMENDMENTS, console).

const get = (f: BreakGlassFixture, url: string, token: string) => f.inject({ method: 'GET', url, headers: { authorization: `Bearer ${token}` } });

for (const dialect of testDialects()) {
  describe(`the break-glass admin API's reads on ${dialect.name}`, () => {
    test('puts each read of the accounts, the activations and the reviews on the record as people.reviewed by the reader, with the people it names', async (t) => {
      const f = await breakGlassFixture(t, { dialect });
      let reader = await f.personToken('comp', 'admin:read');
      assert.deepEqual((await get(f, '/admin/break-glass/activations', reader)).json().activations, []);
      assert.deepEqual((await get(f, '/admin/break-glass/reviews', reader)).json().reviews, []);
      assert.equal((await f.auditEvents('people.reviewed')).length, 0, 'an empty list names no one');

      const id = await f.activate('bg-orders');
      const accounts = await get(f, '/admin/break-glass', reader);
      assert.equal(accounts.statusCode, 200, accounts.body);
      assert.deepEqual(accounts.json().accounts.find((a: { name: string }) => a.name === 'bg-admin').custodians, ['cust-1', 'cust-2']);
      assert.equal((await get(f, '/admin/break-glass/activations', reader)).json().activations[0].requester, await f.userId('eng'));
      f.clock.advance(600_000);
      await expireActivations(f.ctx);
      // The first token has expired meanwhile (5 minutes).
      reader = await f.personToken('comp', 'admin:read');
      assert.equal((await get(f, '/admin/break-glass/reviews', reader)).json().reviews[0].closed_by, null);
      assert.ok((await closeReview(f.ctx, { activationId: id, closer: await f.userId('comp'), acr: acr.phishingResistant, note: 'INC-9 reviewed' })).ok);
      assert.equal((await get(f, '/admin/break-glass/reviews?open=false', reader)).json().reviews[0].closed_by, await f.userId('comp'));

      const comp = await f.userId('comp');
      assert.deepEqual(
        (await f.auditEvents('people.reviewed')).map((e) => [e.actor, e.client, e.details]),
        [
          // The custodians cust-1 and cust-2 of bg-admin, and eng who asked for bg-orders' activation in force.
          [comp, 'trading-ui', { people: 3, via: 'break-glass', accounts: 2 }],
          [comp, 'trading-ui', { people: 1, via: 'break-glass', activations: 1 }],
          // An open review names no one yet; its account and activation lead to who asked.
          [comp, 'trading-ui', { people: 0, via: 'break-glass', reviews: 1 }],
          [comp, 'trading-ui', { people: 1, via: 'break-glass', reviews: 1 }],
        ],
      );
    });

    test('answers server_error, never the people, when a read cannot be put on the record', async (t) => {
      const f = await breakGlassFixture(t, { dialect });
      const id = await f.activate('bg-orders');
      f.clock.advance(600_000);
      await expireActivations(f.ctx);
      assert.ok((await closeReview(f.ctx, { activationId: id, closer: await f.userId('comp'), acr: acr.phishingResistant, note: 'INC-9 reviewed' })).ok);
      const reader = await f.personToken('comp', 'admin:read');
      auditRefuses(t, f.ctx, 'people.reviewed');
      const named = [await f.userId('eng'), await f.userId('comp'), 'cust-1'];
      for (const url of ['/admin/break-glass', '/admin/break-glass/activations', '/admin/break-glass/reviews']) {
        const failed = await get(f, url, reader);
        assert.deepEqual([failed.statusCode, failed.json().error, failed.headers['cache-control']], [500, 'server_error', 'no-store'], url);
        for (const person of named) assert.ok(!failed.body.includes(person), `${url} shows none of the people`);
      }
    });
  });
}

const post = (f: BreakGlassFixture, url: string, token: string, payload: unknown) =>
  f.inject({ method: 'POST', url, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, payload: JSON.stringify(payload) });

/** A value shaped like a token (a JWS), which the audit log never records. */
const tokenShaped = `see ${Buffer.from('{"alg":"HS256"}').toString('base64url')}.${Buffer.from('{"sub":"x"}').toString('base64url')}.c2lnbmF0dXJl`;

describe('the break-glass admin API’s free text', () => {
  test('refuses a reason or a note the audit log would refuse, or with control characters, as invalid_request, never a 5xx, and records nothing of it', async (t) => {
    const f = await breakGlassFixture(t);
    const eng = await f.personToken('eng', 'admin:write');
    for (const reason of [tokenShaped, 'line one\u0000line two']) {
      const refused = await post(f, '/admin/break-glass/bg-orders/activations', eng, { reason });
      assert.equal(refused.statusCode, 400, refused.body);
      assert.equal(refused.json().error, 'invalid_request');
      assert.equal(refused.headers['cache-control'], 'no-store');
    }
    assert.equal((await f.auditEvents('break_glass.requested')).length, 0);
    const created = await post(f, '/admin/break-glass/bg-orders/activations', eng, { reason: 'order gateway down' });
    assert.equal(created.statusCode, 201, created.body);
    const id = (created.json() as { request_id: string }).request_id;
    assert.ok((await f.decide(id, 'cust-1')).ok);
    assert.ok((await f.decide(id, 'cust-2')).ok);
    assert.equal((await post(f, `/admin/break-glass/activations/${id}/end`, eng, {})).statusCode, 204);

    const comp = await f.personToken('comp', 'reviews:close');
    for (const note of [tokenShaped, 'reviewed\u001b[2J']) {
      const refused = await post(f, `/admin/break-glass/reviews/${id}/close`, comp, { note });
      assert.equal(refused.statusCode, 400, refused.body);
      assert.equal(refused.json().error, 'invalid_request');
    }
    const closed = await post(f, `/admin/break-glass/reviews/${id}/close`, comp, { note: 'INC-42 reviewed' });
    assert.equal(closed.statusCode, 200, closed.body);
  });
});

describe('refused acts on an activation and its review', () => {
  test('puts on the record a stand-down by someone who neither asked nor keeps the account, and a review closing by someone not compliance or not phishing-resistant', async (t) => {
    const f = await breakGlassFixture(t);
    const id = await f.activate('bg-orders');
    const mallory = await f.personToken('mallory', 'admin:write reviews:close');
    const ended = await post(f, `/admin/break-glass/activations/${id}/end`, mallory, {});
    assert.equal(ended.statusCode, 403, ended.body);
    const [refused] = await f.auditEvents('break_glass.refused');
    assert.deepEqual(
      { reasons: refused?.decision?.reasons, actor: refused?.actor, txn: refused?.txn, operation: refused?.details?.operation, target: refused?.details?.target },
      { reasons: ['not_requester_or_custodian'], actor: await f.userId('mallory'), txn: id, operation: 'end', target: id },
    );
    assert.equal((await f.auditEvents('break_glass.ended')).length, 0, 'still in force');

    assert.equal((await post(f, `/admin/break-glass/activations/${id}/end`, await f.personToken('eng', 'admin:write'), {})).statusCode, 204);
    assert.equal((await post(f, `/admin/break-glass/reviews/${id}/close`, mallory, { note: 'nothing to see' })).statusCode, 403);
    const weak = await f.personToken('comp', 'reviews:close', acr.multiFactor);
    assert.equal((await post(f, `/admin/break-glass/reviews/${id}/close`, weak, { note: 'looked at it' })).statusCode, 403);
    const closings = await f.auditEvents('break_glass.review_refused');
    assert.deepEqual(
      closings.map((e) => ({ reasons: e.decision?.reasons, actor: e.actor, txn: e.txn })),
      [
        { reasons: ['not_compliance'], actor: await f.userId('mallory'), txn: id },
        { reasons: ['insufficient_authentication'], actor: await f.userId('comp'), txn: id },
      ],
    );
  });
});
