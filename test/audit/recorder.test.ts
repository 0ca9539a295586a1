import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { AuditRecorder } from '../../src/audit/recorder.ts';
import { ManualClock } from '../../src/clock.ts';
import { migrate } from '../../src/storage/database.ts';
import { GroupCommit } from '../../src/storage/group-commit.ts';
import { testDialects } from '../helpers/storage.ts';
import { sampleEvent } from './helpers.ts';

for (const dialect of testDialects()) {
  describe(`the audit recorder on ${dialect.name}`, () => {
    test('resolves only once the event is committed, visible to another connection', async (t) => {
      const database = await dialect.create(t);
      await migrate(database.storage);
      const clock = new ManualClock(1_767_225_600_000);
      const recorder = new AuditRecorder(database.storage.db, { clock, node: 'node-a' });
      await recorder.record({ type: 'token.issued', subject: 'user-1', client: 'c-1', txn: 't-1', details: { jti: 'j-1' } });
      const other = database.connect();
      const row = await other.db.selectFrom('audit_events').selectAll().executeTakeFirstOrThrow();
      const event = JSON.parse(row.event);
      assert.equal(event.node, 'node-a');
      assert.equal(event.time, 1_767_225_600_000);
      assert.equal(event.v, 1);
      assert.equal(row.id, event.id);
      assert.deepEqual([row.type, row.subject, row.client, row.txn, row.decision], ['token.issued', 'user-1', 'c-1', 't-1', null]);
      await recorder.close();
    });

    test('writes the events of one event-loop turn in one transaction, and those queued during a commit in the next', async (t) => {
      const database = await dialect.create(t);
      await migrate(database.storage);
      const recorder = new AuditRecorder(database.storage.db, { clock: new ManualClock(), node: 'n' });
      const batches: number[] = [];
      recorder.onCommitted((count) => batches.push(count));
      const first = Array.from({ length: 700 }, (_, i) => recorder.record(sampleEvent(i)));
      await new Promise((resolve) => setImmediate(resolve));
      // The first batch is being written; these wait for the next transaction.
      const second = Array.from({ length: 300 }, (_, i) => recorder.record(sampleEvent(700 + i)));
      await Promise.all([...first, ...second]);
      assert.deepEqual(batches, [700, 300]);
      const seqs = (await database.storage.db.selectFrom('audit_events').select('event').orderBy('seq').execute()).map((r) => JSON.parse(r.event).details.n);
      assert.deepEqual(seqs, Array.from({ length: 1000 }, (_, i) => i));
      await recorder.close();
    });

    test('rejects every event of a batch whose transaction failed, and keeps working afterwards', async (t) => {
      const database = await dialect.create(t);
      const recorder = new AuditRecorder(database.storage.db, { clock: new ManualClock(), node: 'n' });
      // No tables yet: the insert fails.
      const results = await Promise.allSettled([recorder.record(sampleEvent(1)), recorder.record(sampleEvent(2))]);
      assert.deepEqual(results.map((r) => r.status), ['rejected', 'rejected']);
      await migrate(database.storage);
      await recorder.record(sampleEvent(3));
      assert.equal((await database.storage.db.selectFrom('audit_events').selectAll().execute()).length, 1);
      await recorder.close();
    });

    test('flushes what is queued on close and refuses events afterwards', async (t) => {
      const database = await dialect.create(t);
      await migrate(database.storage);
      const recorder = new AuditRecorder(database.storage.db, { clock: new ManualClock(), node: 'n' });
      const pending = Array.from({ length: 50 }, (_, i) => recorder.record(sampleEvent(i)));
      await recorder.close();
      await Promise.all(pending);
      assert.equal((await database.storage.db.selectFrom('audit_events').selectAll().execute()).length, 50);
      await assert.rejects(recorder.record(sampleEvent(99)), /closed/);
    });

    test('shares the group-commit transaction with other writes when given a writer', async (t) => {
      const database = await dialect.create(t);
      await migrate(database.storage);
      const writer = new GroupCommit(database.storage.db);
      const recorder = new AuditRecorder(database.storage.db, { clock: new ManualClock(), node: 'n', writer });
      await Promise.all(Array.from({ length: 20 }, (_, i) => recorder.record(sampleEvent(i))));
      assert.equal((await database.storage.db.selectFrom('audit_events').selectAll().execute()).length, 20);
      await recorder.close();
      await writer.flush();
    });
  });
}
