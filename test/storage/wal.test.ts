import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { copyFileSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { setTimeout as sleep } from 'node:timers/promises';
import { test, type TestContext } from 'node:test';
import { sql, type Kysely } from 'kysely';
import { AuditKeys } from '../../src/audit/audit-key.ts';
import { AuditRecorder } from '../../src/audit/recorder.ts';
import { AuditSealer } from '../../src/audit/sealer.ts';
import { sqliteFileOf, verifyStore } from '../../src/audit/verify.ts';
import { ManualClock } from '../../src/clock.ts';
import { migrate } from '../../src/storage/database.ts';
import type { Database } from '../../src/storage/schema.ts';
import { autocheckpointPages, bulkCheckpoint, maxBulkPasses, quietFrames, type WalCheckpoint } from '../../src/storage/wal.ts';
import { origin, sampleEvent } from '../audit/helpers.ts';
import { m2mFixture } from '../interop/m2m-fixture.ts';
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

/**
 * The sealed leaves that the database file itself holds, read from a copy of that file alone
 * (without its WAL): only a checkpoint writes them there. -1 while a copy cannot be read (it may
 * catch a checkpoint half-way).
 */
function leavesInDatabaseFile(file: string): number {
  return countInDatabaseFile(file, 'audit_leaves');
}

/** Rows of `table` in the SQLite database file itself, without its WAL (-1 when it has no such table yet). */
function countInDatabaseFile(file: string, table: string): number {
  const dir = mkdtempSync(join(tmpdir(), 'clearance-wal-copy-'));
  try {
    copyFileSync(file, join(dir, 'copy.db'));
    const copy = new DatabaseSync(join(dir, 'copy.db'));
    try {
      return Number((copy.prepare(`select count(*) as n from ${table}`).get() as { n: number }).n);
    } finally {
      copy.close();
    }
  } catch {
    return -1;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Polls `leavesInDatabaseFile` until it reaches `leaves` (or 30 s pass); returns the last count. */
async function untilDatabaseFileHolds(file: string, leaves: number): Promise<number> {
  let held = leavesInDatabaseFile(file);
  for (let tries = 0; held < leaves && tries < 300; tries++) {
    await sleep(100);
    held = leavesInDatabaseFile(file);
  }
  return held;
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

/** A PASSIVE pass that reports, in turn, each of `frames` as the WAL's frames (all copied). */
function passesReporting(frames: number[]): { pass: () => Promise<WalCheckpoint>; calls: () => number } {
  let calls = 0;
  return {
    pass: async () => {
      const logFrames = frames[Math.min(calls++, frames.length - 1)]!;
      return { busy: 0, logFrames, checkpointedFrames: logFrames };
    },
    calls: () => calls,
  };
}

test('passes over the WAL again while the last pass found many frames written meanwhile, and stops at the first quiet one', async () => {
  // quietFrames added: not quiet yet; one fewer: quiet. Three passes, below the bound of maxBulkPasses.
  const { pass, calls } = passesReporting([6_000, 6_000 + quietFrames, 6_000 + 2 * quietFrames - 1, 9_999]);
  const { last, passes } = await bulkCheckpoint(pass);
  assert.ok(maxBulkPasses > 3);
  assert.equal(passes, 3);
  assert.equal(calls(), 3);
  assert.equal(last.logFrames, 6_000 + 2 * quietFrames - 1);
});

test('ends the bulk after a pass that found nothing new, or found the WAL started over', async () => {
  for (const frames of [[6_000, 6_000], [6_000, 120]]) {
    const { pass, calls } = passesReporting(frames);
    assert.equal((await bulkCheckpoint(pass)).passes, 2, JSON.stringify(frames));
    assert.equal(calls(), 2);
  }
});

test('makes at most maxBulkPasses passes when writes outrun the copy: the held tail copies the rest', async () => {
  const { pass, calls } = passesReporting(Array.from({ length: 20 }, (_, i) => 1_000 * (i + 1)));
  const { last, passes } = await bulkCheckpoint(pass);
  assert.equal(passes, maxBulkPasses);
  assert.equal(calls(), maxBulkPasses);
  assert.equal(last.logFrames, 1_000 * maxBulkPasses);
});

test('lets a failed pass fail the bulk (the sealer then checkpoints on its own thread)', async () => {
  let calls = 0;
  const failing = async (): Promise<WalCheckpoint> => {
    if (++calls === 2) throw new Error('the WAL checkpoint worker exited');
    return { busy: 0, logFrames: 6_000 * calls, checkpointedFrames: 6_000 * calls };
  };
  await assert.rejects(bulkCheckpoint(failing), /worker exited/);
  assert.equal(calls, 2);
});

test('keeps the SQLite WAL as large as the writes between two sealer rounds: the sealer checkpoints it instead of a commit', { timeout: 120_000 }, async (t) => {
  const { database, storage, file, clock, masterKey } = await migratedFile(t);
  const recorder = new AuditRecorder(storage.db, { clock, node: 'n' });
  t.after(() => recorder.close());
  const watch = checkpointWatch();
  const sealer = new AuditSealer(storage.db, { clock, keys: new AuditKeys(storage.db, masterKey, clock), origin, intervalMs: 1, walCheckpointGapMs: 0, onWalCheckpoint: watch.onWalCheckpoint });
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

test('checkpoints the WAL after each round that sealed events, and after idle rounds only once walCheckpointGapMs has passed', { timeout: 120_000 }, async (t) => {
  const { storage, file, clock, masterKey } = await migratedFile(t);
  const recorder = new AuditRecorder(storage.db, { clock, node: 'n' });
  t.after(() => recorder.close());
  const watch = checkpointWatch();
  const sealing: number[] = [];
  const sealer = new AuditSealer(storage.db, {
    clock,
    keys: new AuditKeys(storage.db, masterKey, clock),
    origin,
    intervalMs: 1,
    walCheckpointGapMs: 60_000,
    onWalCheckpoint: watch.onWalCheckpoint,
    onSealed: (count) => sealing.push(count),
  });
  t.after(() => sealer.stop());
  sealer.start();

  // A round a millisecond with nothing to seal: no checkpoint within the gap.
  await sleep(150);
  assert.equal(watch.reports.length, 0, 'idle rounds checkpointed the WAL');

  // Each round that sealed events checkpoints right after it, though the gap has not passed.
  await Promise.all(Array.from({ length: 50 }, (_, i) => recorder.record(sampleEvent(i))));
  while (sealing.reduce((a, b) => a + b, 0) < 50 || watch.reports.length < sealing.length) await watch.next();
  assert.equal(watch.reports.length, sealing.length);
  assert.equal(countInDatabaseFile(file, 'audit_leaves'), 50, 'the sealed leaves are in the database file');

  // Then idle again: no checkpoint.
  await sleep(150);
  assert.equal(watch.reports.length, sealing.length, 'idle rounds after sealing checkpointed the WAL');
  await sealer.stop();
});

test('checkpoints the WAL of an idle sealer once walCheckpointGapMs has passed: writes without audit events reach the database file', { timeout: 120_000 }, async (t) => {
  const { storage, file, clock, masterKey } = await migratedFile(t);
  const sealer = new AuditSealer(storage.db, { clock, keys: new AuditKeys(storage.db, masterKey, clock), origin, intervalMs: 1, walCheckpointGapMs: 20 });
  t.after(() => sealer.stop());
  sealer.start();
  await sql`create table scratch (n integer)`.execute(storage.db);
  await sql`insert into scratch values (1), (2), (3)`.execute(storage.db);
  let held = countInDatabaseFile(file, 'scratch');
  for (let tries = 0; held < 3 && tries < 300; tries++) {
    await sleep(100);
    held = countInDatabaseFile(file, 'scratch');
  }
  assert.equal(held, 3, 'the rows never left the WAL');
  await sealer.stop();
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

test('checkpoints the SQLite WAL with no one watching: the sealed log reaches the database file', { timeout: 120_000 }, async (t) => {
  const { storage, file, clock, masterKey } = await migratedFile(t);
  const recorder = new AuditRecorder(storage.db, { clock, node: 'n' });
  t.after(() => recorder.close());
  // No onWalCheckpoint: as the server runs it.
  const sealer = new AuditSealer(storage.db, { clock, keys: new AuditKeys(storage.db, masterKey, clock), origin, intervalMs: 5 });
  t.after(() => sealer.stop());
  sealer.start();
  await Promise.all(Array.from({ length: 300 }, (_, i) => recorder.record(sampleEvent(i))));

  assert.equal(await untilDatabaseFileHolds(file, 300), 300, 'the sealed leaves never left the WAL');
});

test("keeps a running server's WAL checkpointed: the token.issued events of HTTP requests reach the database file", { timeout: 120_000 }, async (t) => {
  const { server, secretClient } = await m2mFixture(t);
  const file = sqliteFileOf(server.running.ctx.storage)!;
  const before = leavesInDatabaseFile(file);
  const basic = `Basic ${Buffer.from(`${secretClient.id}:${secretClient.secret}`).toString('base64')}`;
  const requests = 40;
  for (let i = 0; i < requests; i++) {
    const response = await fetch(`${server.issuer}/token`, {
      method: 'POST',
      headers: { authorization: basic, 'content-type': 'application/x-www-form-urlencoded' },
      body: 'grant_type=client_credentials&scope=position:view',
    });
    assert.equal(response.status, 200, await response.text());
  }

  // Each issuance is sealed within a round (100 ms on SQLite) and checkpointed right after it.
  const held = await untilDatabaseFileHolds(file, before + requests);
  assert.ok(held >= before + requests, `the database file holds ${held} sealed leaves, ${before} before ${requests} tokens were issued`);
});
