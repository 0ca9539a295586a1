import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { AuditRecorder } from '../../src/audit/recorder.ts';
import { GroupCommit, groupCommitConcurrency } from '../../src/storage/group-commit.ts';
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

  for (const dialect of testDialects()) {
    test(`on ${dialect.name}: commits every event and every single use of a burst once, seen by another node when each caller hears back, and the sealed log verifies`, async (t) => {
      const f = await auditFixture(dialect, t);
      const writer = new GroupCommit(f.db, { concurrency: groupCommitConcurrency(dialect.name, 10) });
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
    });
  }
});
