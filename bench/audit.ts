/**
 * Audit log benchmarks (issue 3 §9), on SQLite with the server's storage settings:
 *
 * - audit-append-sqlite: sustained `record()` rate with the sealer running, the way the server
 *   runs it (group commit shared with other writes, a round every 500 ms). `concurrency` callers
 *   each await their event before recording the next, as requests do before responding.
 *   Goal: >= 20,000 events/s. `sealed_per_s` is how fast the sealer sealed meanwhile (it gives
 *   the event loop a turn between pieces of its work, and under this load it falls behind); the
 *   events left unsealed at the end (`unsealed_at_end`) are sealed after the timed run.
 * - audit-verify-1m: time for `verifyStore` to check a log of 1,000,000 events (every leaf hash,
 *   the tree, every checkpoint signature). Goal: <= 20 s.
 *
 * AUDIT_BENCH_SECONDS (default 10), AUDIT_BENCH_CONCURRENCY (default 1000) and
 * AUDIT_VERIFY_EVENTS (default 1000000) adjust them.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { AuditKeys } from '../src/audit/audit-key.ts';
import type { AuditEvent } from '../src/audit/events.ts';
import { AuditRecorder } from '../src/audit/recorder.ts';
import { AuditSealer } from '../src/audit/sealer.ts';
import { sqliteFileOf, verifyStore } from '../src/audit/verify.ts';
import { systemClock } from '../src/clock.ts';
import { loadConfig } from '../src/config.ts';
import { migrate, openStorage, storageOptionsFor, type Storage } from '../src/storage/database.ts';
import { GroupCommit } from '../src/storage/group-commit.ts';
import type { BenchLine } from './harness.ts';

const origin = 'bench.clearance/audit';

/** A token.issued event shaped like the token endpoint's. */
function event(worker: number, i: number): AuditEvent {
  return {
    type: 'token.issued',
    requestId: `req-${worker}-${i}`,
    txn: `txn-${worker}-${i >> 2}`,
    actor: `client-${worker % 50}`,
    client: `client-${worker % 50}`,
    subject: `client-${worker % 50}`,
    audience: 'https://orders.example.com/api',
    scopes: ['order:create', 'order:cancel'],
    details: { jti: `${worker.toString(36)}-${i.toString(36)}`, method: 'private_key_jwt', expiresIn: 300 },
  };
}

interface Store {
  storage: Storage;
  recorder: AuditRecorder;
  sealer: AuditSealer;
  writer: GroupCommit;
  dir: string;
}

async function openStore(maxBatch?: number): Promise<Store> {
  const dir = mkdtempSync(join(tmpdir(), 'clearance-bench-audit-'));
  const storage = openStorage(storageOptionsFor(loadConfig({ CLEARANCE_DATA_DIR: dir })));
  await migrate(storage);
  const writer = new GroupCommit(storage.db);
  const recorder = new AuditRecorder(storage.db, { clock: systemClock, node: 'bench', writer, ...(maxBatch ? { maxBatch } : {}) });
  const sealer = new AuditSealer(storage.db, { clock: systemClock, keys: new AuditKeys(storage.db, randomBytes(32), systemClock), origin });
  recorder.onCommitted((count) => sealer.notify(count));
  return { storage, recorder, sealer, writer, dir };
}

async function closeStore(store: Store): Promise<void> {
  await store.recorder.close();
  await store.sealer.stop();
  await store.storage.close();
  rmSync(store.dir, { recursive: true, force: true });
}

async function count(storage: Storage, table: 'audit_events' | 'audit_leaves'): Promise<number> {
  const row = await storage.db.selectFrom(table).select(({ fn }) => fn.countAll<number>().as('n')).executeTakeFirst();
  return Number(row?.n ?? 0);
}

/** Sustained append rate with sealing on. */
export async function auditAppend(seconds: number, concurrency: number): Promise<BenchLine> {
  const store = await openStore();
  store.sealer.start();
  const latencies: number[] = [];
  let recorded = 0;
  const start = performance.now();
  const end = start + seconds * 1000;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, worker) => {
      for (let i = 0; performance.now() < end; i++) {
        const t0 = performance.now();
        await store.recorder.record(event(worker, i));
        if (i % 8 === 0) latencies.push(performance.now() - t0);
        recorded++;
      }
    }),
  );
  const elapsed = (performance.now() - start) / 1000;
  const unsealedAtEnd = recorded - (await count(store.storage, 'audit_leaves'));
  await store.sealer.stop();
  const sealed = await count(store.storage, 'audit_leaves');
  await closeStore(store);
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => Math.round(latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))]! * 10) / 10;
  return {
    scenario: 'audit-append-sqlite',
    events_per_s: Math.round(recorded / elapsed),
    events: recorded,
    seconds: Math.round(elapsed * 10) / 10,
    concurrency,
    record_p50_ms: pct(0.5),
    record_p99_ms: pct(0.99),
    sealed_per_s: Math.round((recorded - unsealedAtEnd) / elapsed),
    unsealed_at_end: unsealedAtEnd,
    sealed,
    goal_events_per_s: 20_000,
  };
}

/** Time to verify a log of `events` events (built first, at full speed, with sealing). */
export async function auditVerify(events: number): Promise<BenchLine> {
  // Built with bigger transactions than the server uses: only the verification is timed.
  const store = await openStore(20_000);
  const buildStart = performance.now();
  for (let done = 0; done < events; ) {
    const batch = Math.min(20_000, events - done);
    await Promise.all(Array.from({ length: batch }, (_, i) => store.recorder.record(event(i % 1000, done + i))));
    done += batch;
    await store.sealer.sealAll();
  }
  const buildSeconds = (performance.now() - buildStart) / 1000;
  const keys = await new AuditKeys(store.storage.db, undefined, systemClock).publicKeys();
  const start = performance.now();
  const sqliteFile = sqliteFileOf(store.storage);
  const report = await verifyStore(store.storage.db, { keys, ...(sqliteFile ? { sqliteFile } : {}) });
  const seconds = (performance.now() - start) / 1000;
  await closeStore(store);
  if (!report.ok || report.leaves !== events) throw new Error(`verification failed: ${JSON.stringify(report.problem)}`);
  return {
    scenario: events === 1_000_000 ? 'audit-verify-1m' : `audit-verify-${events}`,
    seconds: Math.round(seconds * 100) / 100,
    events,
    leaves_per_s: Math.round(events / seconds),
    checkpoints: report.checkpoints,
    build_seconds: Math.round(buildSeconds * 10) / 10,
    goal_seconds: 20,
  };
}

/** Both audit scenarios, as `npm run bench` runs them. */
export async function auditBench(): Promise<BenchLine[]> {
  const seconds = Number(process.env.AUDIT_BENCH_SECONDS ?? 10);
  const concurrency = Number(process.env.AUDIT_BENCH_CONCURRENCY ?? 1000);
  const events = Number(process.env.AUDIT_VERIFY_EVENTS ?? 1_000_000);
  return [await auditAppend(seconds, concurrency), await auditVerify(events)];
}

if (import.meta.main) {
  for (const line of await auditBench()) console.log(JSON.stringify(line));
}
