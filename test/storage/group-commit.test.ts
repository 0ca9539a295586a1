import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { AuditRecorder } from '../../src/audit/recorder.ts';
import { CompiledQuery } from 'kysely';
import { GroupCommit, groupCommitConcurrency, type StatementOperation } from '../../src/storage/group-commit.ts';
import { DatabaseReplayCache } from '../../src/tokens/replay-cache.ts';
import { auditFixture, sampleEvent } from '../audit/helpers.ts';
import { testDialects } from '../helpers/storage.ts';

describe('the group commit, with the concurrency the server gives it', () => {
  test('is one transaction at a time on SQLite, and a third of the pool (at most 4) on PostgreSQL', () => {
    assert.equal(groupCommitConcurrency('sqlite', 10), 1);
    assert.equal(groupCommitConcurrency('postgres', 10), 3);
    assert.equal(groupCommitConcurrency('postgres', 2), 1);
    assert.equal(groupCommitConcurrency('postgres', 100), 4);
  });

  for (const dialect of testDialects()) for (const inFlights of [false, true]) {
    test(`on ${dialect.name}${inFlights ? ', each batch sent as one flight' : ''}: commits every event and every single use of a burst once, seen by another node when each caller hears back, and the sealed log verifies`, async (t) => {
      const f = await auditFixture(dialect, t);
      let flights = 0;
      const flight = () => (flights++, f.storage.flight());
      const writer = new GroupCommit(f.db, { concurrency: groupCommitConcurrency(dialect.name, 10), ...(inFlights ? { flight } : {}) });
      const recorder = new AuditRecorder(f.db, { clock: f.clock, node: 'n', writer });
      const replay = new DatabaseReplayCache(f.db, f.clock, { writer });
      const other = dialect.name === 'sqlite' ? f.db : f.database.connect().db;
      const uses: Promise<boolean>[] = [];
      const events: Promise<void>[] = [];
      // Several turns of a burst, so batches overlap where the dialect allows it.
      for (let turn = 0; turn < 6; turn++) {
        for (let i = 0; i < 50; i++) {
          uses.push(replay.use(`client_assertion:oms:${turn}-${i % 40}`, f.clock.now() + 60_000));
          events.push(
            recorder.record(sampleEvent(turn * 50 + i)).then(async () => {
              const n = await other.selectFrom('audit_events').select('seq').where('id', 'is not', null).execute();
              assert.ok(n.length > 0);
            }),
          );
        }
        await new Promise((resolve) => setImmediate(resolve));
      }
      const answers = await Promise.all(uses);
      await Promise.all(events);
      assert.equal(answers.filter(Boolean).length, 6 * 40, 'each distinct key once');
      assert.equal(await replay.use('client_assertion:oms:3-7', f.clock.now() + 60_000), false);
      const rows = await other.selectFrom('audit_events').select('id').execute();
      assert.equal(rows.length, 300);
      assert.equal(new Set(rows.map((r) => r.id)).size, 300);
      await recorder.close();
      await writer.flush();
      await f.sealer.sealAll();
      const report = await f.verify();
      assert.equal(report.ok, true, JSON.stringify(report));
      if (inFlights) assert.ok(flights > 0 && flights < 600, `${flights} flights for 600 operations: batched, and sent as flights`);
      else assert.equal(flights, 0);
    });
  }

  for (const dialect of testDialects()) {
    test(`on ${dialect.name}: a statement that fails in a flight fails only its own caller; the batch's others are written alone`, async (t) => {
      const f = await auditFixture(dialect, t);
      const writer = new GroupCommit(f.db, { flight: () => f.storage.flight() });
      const insert = (key: string): StatementOperation<string> => ({
        statements: () => [CompiledQuery.raw(`insert into jti_replay (key, expires_at) values (${dialect.name === 'postgres' ? '$1, $2' : '?, ?'})`, [key, 1])],
        result: (answers) => `${key}: ${answers[0]!.numAffectedRows}`,
      });
      const batch = [writer.run(insert('a')), writer.run(insert('dup')), writer.run(insert('dup')), writer.run(insert('b'))];
      const outcomes = await Promise.allSettled(batch);
      assert.deepEqual(outcomes.map((o) => o.status), ['fulfilled', 'fulfilled', 'rejected', 'fulfilled']);
      assert.deepEqual(outcomes.filter((o) => o.status === 'fulfilled').map((o) => o.value), ['a: 1', 'dup: 1', 'b: 1']);
      const keys = await f.db.selectFrom('jti_replay').select('key').orderBy('key').execute();
      assert.deepEqual(keys.map((k) => k.key), ['a', 'b', 'dup']);
    });

    test(`on ${dialect.name}: a flight's result that cannot be read fails only its caller, and nothing is written twice`, async (t) => {
      const f = await auditFixture(dialect, t);
      const writer = new GroupCommit(f.db, { flight: () => f.storage.flight() });
      const insert = (key: string, result: () => string): StatementOperation<string> => ({
        statements: () => [CompiledQuery.raw(`insert into jti_replay (key, expires_at) values (${dialect.name === 'postgres' ? '$1, $2' : '?, ?'})`, [key, 1])],
        result,
      });
      const outcomes = await Promise.allSettled([
        writer.run(insert('kept', () => 'ok')),
        writer.run(
          insert('unread', () => {
            throw new Error('unreadable answer');
          }),
        ),
      ]);
      assert.equal(outcomes[0]!.status, 'fulfilled');
      assert.match(String((outcomes[1] as PromiseRejectedResult).reason), /unreadable answer/);
      const keys = await f.db.selectFrom('jti_replay').select('key').orderBy('key').execute();
      assert.deepEqual(keys.map((k) => k.key), ['kept', 'unread']);
    });

    test(`on ${dialect.name}: a batch with an operation that reads its own answers runs as a transaction, not a flight`, async (t) => {
      const f = await auditFixture(dialect, t);
      let flights = 0;
      const writer = new GroupCommit(f.db, { flight: () => (flights++, f.storage.flight()) });
      const read = writer.run(async (trx) => (await trx.selectFrom('jti_replay').select('key').execute()).length);
      const statement = writer.run({ statements: () => [CompiledQuery.raw(`insert into jti_replay (key, expires_at) values (${dialect.name === 'postgres' ? '$1, $2' : '?, ?'})`, ['k', 1])], result: () => 'written' });
      assert.deepEqual(await Promise.all([read, statement]), [0, 'written']);
      assert.equal(flights, 0);
      assert.equal(await writer.run({ statements: () => [], result: (answers) => answers.length }), 0);
      assert.equal(flights, 1);
    });
  }
});
