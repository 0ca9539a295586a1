import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { expireActivations } from '../../src/approvals/break-glass/activations.ts';
import { closeReview } from '../../src/approvals/break-glass/reviews.ts';
import { acr } from '../../src/identity/acr.ts';
import { testDialects } from '../helpers/storage.ts';
import { breakGlassFixture, type BreakGlassFixture } from '../approvals/break-glass-fixture.ts';

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
      const record = f.ctx.audit.record.bind(f.ctx.audit);
      f.ctx.audit.record = async (event) => {
        if (event.type === 'people.reviewed') throw new Error('the audit log is unreachable');
        return record(event);
      };
      t.after(() => {
        f.ctx.audit.record = record;
      });
      const named = [await f.userId('eng'), await f.userId('comp'), 'cust-1'];
      for (const url of ['/admin/break-glass', '/admin/break-glass/activations', '/admin/break-glass/reviews']) {
        const failed = await get(f, url, reader);
        assert.deepEqual([failed.statusCode, failed.json().error, failed.headers['cache-control']], [500, 'server_error', 'no-store'], url);
        for (const person of named) assert.ok(!failed.body.includes(person), `${url} shows none of the people`);
      }
    });
  });
}
