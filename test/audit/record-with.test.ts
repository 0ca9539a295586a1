import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, test } from 'node:test';
import { AuditRecorder } from '../../src/audit/recorder.ts';
import { ManualClock } from '../../src/clock.ts';
import { migrate } from '../../src/storage/database.ts';
import { FlightRefused } from '../../src/storage/flight.ts';
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

  describe(`commit (a flight with its events) on ${dialect.name}`, () => {
    const pushed = (id: string) => ({ uri_hash: `h-${id}`, id, client_id: 'c', request: '{}', created_at: 1, expires_at: 2, consumed_at: null });

    test('commits the flight and its events together, events last, then tells the listeners', async (t) => {
      const database = await dialect.create(t);
      await migrate(database.storage);
      const recorder = new AuditRecorder(database.storage.db, { clock: new ManualClock(), node: 'n' });
      const counts: number[] = [];
      recorder.onCommitted((count) => counts.push(count));
      const flight = database.storage.flight();
      const inserted = flight.run(database.storage.db.insertInto('pushed_requests').values(pushed('a')));
      await recorder.commit(flight, [{ type: 'code.issued', subject: 'u' }, { type: 'token.issued', subject: 'u' }]);
      assert.equal(Number((await inserted).numAffectedRows), 1);
      const other = database.connect();
      assert.ok(await other.db.selectFrom('pushed_requests').select('id').where('id', '=', 'a').executeTakeFirst());
      assert.deepEqual((await other.db.selectFrom('audit_events').select('type').orderBy('seq').execute()).map((r) => r.type), ['code.issued', 'token.issued']);
      assert.deepEqual(counts, [2]);
      await recorder.close();
    });

    test('writes nothing when an event is refused, or an expectation of the flight is not met', async (t) => {
      const database = await dialect.create(t);
      await migrate(database.storage);
      const recorder = new AuditRecorder(database.storage.db, { clock: new ManualClock(), node: 'n' });
      const refused = database.storage.flight();
      refused.run(database.storage.db.insertInto('pushed_requests').values(pushed('a')));
      await assert.rejects(recorder.commit(refused, [{ type: 'token.issued', details: { refresh_token: 'secret-value' } }]));
      assert.equal(refused.size, 1, 'refused before anything was sent');
      const unmet = database.storage.flight();
      unmet.run(database.storage.db.insertInto('pushed_requests').values(pushed('b')));
      unmet.run(database.storage.db.updateTable('pushed_requests').set({ consumed_at: 3 }).where('id', '=', 'absent'), { rows: 1, otherwise: 'absent' });
      await assert.rejects(recorder.commit(unmet, [{ type: 'code.issued', subject: 'u' }]), FlightRefused);
      assert.equal((await database.storage.db.selectFrom('pushed_requests').select('id').execute()).length, 0);
      assert.equal((await database.storage.db.selectFrom('audit_events').select('seq').execute()).length, 0);
      await recorder.close();
      await assert.rejects(recorder.commit(database.storage.flight(), []), /closed/);
    });
  });
}
