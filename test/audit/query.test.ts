import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { AuditQueryError, queryEvents, readAuditQuery } from '../../src/audit/query.ts';
import { testDialects } from '../helpers/storage.ts';
import { auditFixture } from './helpers.ts';

test('reads query parameters and refuses malformed ones', () => {
  assert.deepEqual(readAuditQuery({ txn: 't', decision: 'deny', since: '2026-01-01T00:00:00Z', until: '1767225600001' }), {
    txn: 't',
    decision: 'deny',
    since: 1_767_225_600_000,
    until: 1_767_225_600_001,
  });
  for (const bad of [{ type: 'token.minted' }, { decision: 'maybe' }, { since: 'yesterday' }, { txn: '' }]) {
    assert.throws(() => readAuditQuery(bad), AuditQueryError, JSON.stringify(bad));
  }
});

for (const dialect of testDialects()) {
  describe(`the audit query on ${dialect.name}`, () => {
    test('filters by transaction, subject, client, type, decision and time, oldest first', async (t) => {
      const f = await auditFixture(dialect, t);
      await f.fill(120);
      await f.recorder.record({ type: 'token.revoked', subject: 'user-1', txn: 'txn-2' });
      const ns = async (query: Parameters<typeof queryEvents>[1]) => (await queryEvents(f.db, query, { limit: 1000 })).events.map((e) => e.event.details?.n ?? 'revoked');
      assert.deepEqual(await ns({ txn: 'txn-2' }), [8, 9, 10, 11, 'revoked']);
      assert.deepEqual(await ns({ subject: 'user-1', client: 'client-1' }), [1, 78]);
      assert.deepEqual((await ns({ type: 'policy.denied', decision: 'deny' })).length, 40);
      assert.deepEqual(await ns({ decision: 'allow' }), []);
      // fill advances the clock 10 ms per 500 events: all 120 share one time.
      assert.equal((await ns({ since: f.clock.now() - 10, until: f.clock.now() })).length, 120);
      const page = await queryEvents(f.db, { txn: 'txn-2' });
      assert.equal(page.events[0]!.leafIndex, 8);
      assert.equal(page.events.at(-1)!.leafIndex, null); // not sealed yet
    });

    test('pages with an opaque cursor and refuses a forged one', async (t) => {
      const f = await auditFixture(dialect, t);
      await f.fill(25);
      const seen: number[] = [];
      let after: string | undefined;
      do {
        const page = await queryEvents(f.db, {}, { limit: 10, ...(after ? { after } : {}) });
        seen.push(...page.events.map((e) => e.event.details!.n as number));
        after = page.next;
      } while (after);
      assert.deepEqual(seen, Array.from({ length: 25 }, (_, i) => i));
      await assert.rejects(queryEvents(f.db, {}, { after: 'bm9wZQ' }), AuditQueryError);
      await assert.rejects(queryEvents(f.db, {}, { limit: 5000 }), AuditQueryError);
    });
  });
}
