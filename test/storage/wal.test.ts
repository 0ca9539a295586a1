import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { statSync } from 'node:fs';
import { test, type TestContext } from 'node:test';
import { sql, type Kysely } from 'kysely';
import { AuditKeys } from '../../src/audit/audit-key.ts';
import { AuditRecorder } from '../../src/audit/recorder.ts';
import { AuditSealer } from '../../src/audit/sealer.ts';
import { sqliteFileOf, verifyStore } from '../../src/audit/verify.ts';
import { ManualClock } from '../../src/clock.ts';
import { migrate } from '../../src/storage/database.ts';
import type { Database } from '../../src/storage/schema.ts';
import { autocheckpointPages, type WalCheckpoint } from '../../src/storage/wal.ts';
import { origin, sampleEvent } from '../audit/helpers.ts';
import { testDialects } from '../helpers/storage.ts';

const sqlite = testDialects().find((d) => d.name === 'sqlite')!;

/** Resolves `next()` after each WAL checkpoint the sealer's loop runs, and keeps their reports. */
function checkpointWatch(): { onWalCheckpoint(result: WalCheckpoint): void; next(): Promise<void>; reports: WalCheckpoint[] } {
  let waiters: (() => void)[] = [];
  const reports: WalCheckpoint[] = [];
  return {
    reports,
    onWalCheckpoint(result) {
      reports.push(result);
      const woken = waiters;
      waiters = [];
      for (const wake of woken) wake();
    },
    next: () => new Promise<void>((resolve) => waiters.push(resolve)),
  };
}

async function autocheckpoint(db: Kysely<Database>): Promise<number> {
  const { rows } = await sql<{ wal_autocheckpoint: number }>`pragma wal_autocheckpoint`.execute(db);
  return Number(rows[0]!.wal_autocheckpoint);
}

/** A migrated SQLite store on a file, with a clock and a master key for its sealer. */
async function migratedFile(t: TestContext) {
  const database = await sqlite.create(t);
  const { storage } = database;
  await migrate(storage);
  return { database, storage, file: sqliteFileOf(storage)!, clock: new ManualClock(1_767_225_600_000), masterKey: randomBytes(32) };
}

test('keeps the SQLite WAL as large as the writes between two sealer rounds: the sealer checkpoints it instead of a commit', { timeout: 120_000 }, async (t) => {
  const { database, storage, file, clock, masterKey } = await migratedFile(t);
  const recorder = new AuditRecorder(storage.db, { clock, node: 'n' });
  t.after(() => recorder.close());
  const watch = checkpointWatch();
  const sealer = new AuditSealer(storage.db, { clock, keys: new AuditKeys(storage.db, masterKey, clock), origin, intervalMs: 1, onWalCheckpoint: watch.onWalCheckpoint });
  assert.equal(await autocheckpoint(storage.db), autocheckpointPages);

  sealer.start();
  const sizes: number[] = [];
  const rounds = 24;
  const perRound = 400;
  for (let round = 0; round < rounds; round++) {
    await Promise.all(Array.from({ length: perRound }, (_, i) => recorder.record(sampleEvent(round * perRound + i))));
    // The round in progress may have started before these were committed; the one after it has not.
    await watch.next();
    await watch.next();
    if (round === 0) assert.equal(await autocheckpoint(storage.db), 0, 'no checkpoint inside a commit while the sealer runs');
    sizes.push(statSync(`${file}-wal`).size);
  }
  await sealer.stop();

  // Without checkpoints every round's pages stay in the WAL: it would end about `rounds` times
  // its size after the first round. Checkpointed, the next write starts it over, so the file
  // stays at the most written between two checkpoints (a round or two, as rounds overlap).
  assert.ok(sizes.at(-1)! <= 4 * sizes[0]!, `the WAL grew from ${sizes[0]} to ${sizes.at(-1)} bytes over ${rounds} rounds: ${sizes.join(', ')}`);
  // Each checkpoint completes (its tail runs while no write can land), so the next write restarts the WAL.
  assert.ok(watch.reports.length >= 2 * rounds);
  assert.ok(watch.reports.every((r) => r.busy === 0 && r.logFrames === r.checkpointedFrames), JSON.stringify(watch.reports.filter((r) => r.logFrames !== r.checkpointedFrames)));
  assert.equal(await autocheckpoint(storage.db), autocheckpointPages, 'the automatic checkpoint is back once the sealer stops');
  const report = await verifyStore(storage.db, { keys: await new AuditKeys(storage.db, masterKey, clock).publicKeys(), sqliteFile: file });
  assert.equal(report.ok, true, report.problem?.message);
  assert.equal(report.leaves, rounds * perRound);
  assert.equal(report.unsealed, 0);
});

test('keeps the SQLite WAL bounded while another process writes: the tail of each checkpoint takes the write lock', { timeout: 120_000 }, async (t) => {
  const { database, storage, file, clock, masterKey } = await migratedFile(t);
  // Another process writing the file, as the workers of `clearance start --workers N` do: holding
  // the sealer's connection does not stop it, so only a checkpoint that takes the write lock
  // completes with every frame copied and lets the next write start the WAL over.
  const writer = spawn(process.execPath, [new URL('./fixtures/write-audit-events.ts', import.meta.url).pathname, file], { stdio: ['pipe', 'pipe', 'inherit'] });
  t.after(() => writer.kill('SIGKILL'));
  const written = new Promise<number>((resolve) => {
    let out = '';
    writer.stdout.on('data', (chunk) => (out += chunk));
    writer.on('exit', () => resolve(Number(/written (\d+)/.exec(out)?.[1] ?? -1)));
  });
  await once(writer.stdout, 'data'); // it writes

  const watch = checkpointWatch();
  const sealer = new AuditSealer(storage.db, { clock, keys: new AuditKeys(storage.db, masterKey, clock), origin, intervalMs: 50, onWalCheckpoint: watch.onWalCheckpoint });
  sealer.start();
  const sizes: number[] = [];
  for (let round = 0; round < 24; round++) {
    await watch.next();
    sizes.push(statSync(`${file}-wal`).size);
  }
  writer.stdin.end(); // stop writing
  const total = await written;
  await sealer.stop();

  // Without the write lock, a checkpoint racing the other process's writes never finds the WAL
  // copied when the next write starts, and the WAL keeps every round's frames (measured: 40 MB
  // in 8 s). With it, the file stays at what is written between two checkpoints.
  assert.ok(sizes.at(-1)! <= 4 * Math.max(sizes[1]!, 1), `the WAL grew from ${sizes[1]} to ${sizes.at(-1)} bytes: ${sizes.join(', ')}`);
  assert.ok(watch.reports.every((r) => r.busy === 0 && r.logFrames === r.checkpointedFrames), JSON.stringify(watch.reports.filter((r) => r.busy !== 0 || r.logFrames !== r.checkpointedFrames)));
  const report = await verifyStore(storage.db, { keys: await new AuditKeys(storage.db, masterKey, clock).publicKeys(), sqliteFile: file });
  assert.equal(report.ok, true, report.problem?.message);
  assert.equal(report.leaves, total);
  assert.equal(report.unsealed, 0);
});
