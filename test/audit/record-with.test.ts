import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, test } from 'node:test';
import { AuditRecorder } from '../../src/audit/recorder.ts';
import { ManualClock } from '../../src/clock.ts';
import { migrate } from '../../src/storage/database.ts';
import { testDialects } from '../helpers/storage.ts';

for (const dialect of testDialects()) {
  describe(`recordWith on ${dialect.name}`, () => {
    const pushed = (id: string) => ({ uri_hash: `h-${id}`, id, client_id: 'c', request: '{}', created_at: 1, expires_at: 2, consumed_at: null });

    test('commits the writes and their events together, then resolves with the work value and tells the listeners', async (t) => {
      const database = await dialect.create(t);
      await migrate(database.storage);
      const recorder = new AuditRecorder(database.storage.db, { clock: new ManualClock(), node: 'n' });
      const counts: number[] = [];
      recorder.onCommitted((count) => counts.push(count));
      const id = randomUUID();
      const value = await recorder.recordWith(async (trx) => {
        await trx.insertInto('pushed_requests').values(pushed(id)).execute();
        return { value: 'done', events: [{ type: 'code.issued', subject: 'u' }, { type: 'token.issued', subject: 'u' }] };
      });
      assert.equal(value, 'done');
      const other = database.connect();
      assert.ok(await other.db.selectFrom('pushed_requests').select('id').where('id', '=', id).executeTakeFirst());
      assert.deepEqual((await other.db.selectFrom('audit_events').select('type').orderBy('seq').execute()).map((r) => r.type), ['code.issued', 'token.issued']);
      assert.deepEqual(counts, [2]);
      await recorder.close();
    });

    test('rolls the writes back when an event is refused by the guard, and when the work throws', async (t) => {
      const database = await dialect.create(t);
      await migrate(database.storage);
      const recorder = new AuditRecorder(database.storage.db, { clock: new ManualClock(), node: 'n' });
      await assert.rejects(
        recorder.recordWith(async (trx) => {
          await trx.insertInto('pushed_requests').values(pushed('a')).execute();
          return { value: undefined, events: [{ type: 'token.issued', details: { refresh_token: 'secret-value' } }] };
        }),
      );
      await assert.rejects(
        recorder.recordWith(async (trx) => {
          await trx.insertInto('pushed_requests').values(pushed('b')).execute();
          throw new Error('lost');
        }),
        /lost/,
      );
      assert.equal((await database.storage.db.selectFrom('pushed_requests').select('id').execute()).length, 0);
      assert.equal((await database.storage.db.selectFrom('audit_events').select('seq').execute()).length, 0);
      await recorder.close();
      await assert.rejects(recorder.recordWith(async () => ({ value: 1, events: [] })), /closed/);
    });
  });
}
