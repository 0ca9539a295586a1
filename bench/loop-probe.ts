/**
 * Preloaded into the benchmarked server (`node --import ./bench/loop-probe.ts`) by the
 * `m2m-latency` scenario; talks to the load generator over the IPC channel.
 *
 * Always: the server's event-loop delay (perf_hooks monitorEventLoopDelay, 1 ms resolution),
 * reset on 'reset' and reported on 'report'.
 *
 * With BENCH_STALLS=1 (attribution, issue 20 item 6): a 1 ms timer notes every stall (the loop
 * did not turn for more than `stallMs`), and the suspects are timed where they run:
 * - every node:sqlite statement (node:sqlite is synchronous: its time is event-loop time), by
 *   kind, and each transaction from BEGIN to COMMIT by what it wrote (group commit, sealing
 *   round, other); a COMMIT after which the main database file changed ran a WAL checkpoint
 *   (in WAL mode only a checkpoint writes the main file);
 * - every explicit `PRAGMA wal_checkpoint`;
 * - sealing rounds (AuditSealer.sealOnce, wall time: on SQLite it never yields, so all of it
 *   blocks; on PostgreSQL only its CPU parts do) and the Merkle appends inside them;
 * - garbage collection (PerformanceObserver 'gc');
 * - the time the server's main thread waited for a CPU during each stall (Linux schedstat): on a
 *   shared machine part of a stall is other processes' work.
 * Each stall is then attributed to the timed work that overlaps it. Not for production: it
 * patches node:sqlite's prototypes.
 */
import { readFileSync, statSync } from 'node:fs';
import { monitorEventLoopDelay, performance, PerformanceObserver } from 'node:perf_hooks';
import { DatabaseSync, StatementSync } from 'node:sqlite';

interface Span {
  start: number;
  end: number;
  kind: string;
  /** For a stall: how long this thread waited for a CPU meanwhile (ms). */
  runqueueMs?: number;
}

const stallMs = Number(process.env.BENCH_STALL_MS ?? 10);
const attributing = process.env.BENCH_STALLS === '1';
let histogram = monitorEventLoopDelay({ resolution: 1 });
histogram.enable();

let merkleTotals = (): { appends: number; ms: number } => ({ appends: 0, ms: 0 });
const spans: Span[] = [];
const stalls: Span[] = [];
const totals = new Map<string, { count: number; ms: number; max: number; over5: number }>();

function note(kind: string, start: number, end: number): void {
  const ms = end - start;
  let total = totals.get(kind);
  if (!total) totals.set(kind, (total = { count: 0, ms: 0, max: 0, over5: 0 }));
  total.count++;
  total.ms += ms;
  if (ms > total.max) total.max = ms;
  if (ms >= 5) total.over5++;
  if (ms >= 1 && spans.length < 200_000) spans.push({ start, end, kind });
}

if (attributing) {
  // The stall clock: a timer that should fire every millisecond. Beside it, how long the main
  // thread waited for a CPU (Linux schedstat): on a shared machine a stall may be no work of ours.
  let last = performance.now();
  let waitedNs = runqueueNs();
  const tick = () => {
    const now = performance.now();
    const waited = runqueueNs();
    if (now - last > stallMs && stalls.length < 100_000) stalls.push({ start: last, end: now, kind: 'stall', runqueueMs: (waited - waitedNs) / 1e6 });
    last = now;
    waitedNs = waited;
    setTimeout(tick, 1).unref();
  };
  setTimeout(tick, 1).unref();

  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) note(`gc:${gcKind((entry as unknown as { detail?: { kind?: number } }).detail?.kind)}`, entry.startTime, entry.startTime + entry.duration);
  }).observe({ entryTypes: ['gc'] });

  instrumentSqlite();
  await instrumentSealer();
}

/** Time the main thread has spent runnable but waiting for a CPU, in ns (0 where unknown). */
function runqueueNs(): number {
  try {
    return Number(readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[1]);
  } catch {
    return 0;
  }
}

function gcKind(kind: number | undefined): string {
  switch (kind) {
    case 1:
      return 'minor';
    case 2:
      return 'major';
    case 4:
      return 'incremental';
    case 8:
      return 'weakcb';
    default:
      return String(kind);
  }
}

function instrumentSqlite(): void {
  // One connection per file in the server; remember each one's path for the checkpoint check.
  const paths = new WeakMap<object, string>();
  const open = new Map<string, { start: number; kinds: Set<string> }>();
  const sqlOf = new WeakMap<object, { kind: string; db: string | undefined }>();
  const prepare = DatabaseSync.prototype.prepare;
  DatabaseSync.prototype.prepare = function (this: DatabaseSync, text: string) {
    const statement = prepare.call(this, text) as StatementSync;
    if (!paths.has(this)) paths.set(this, (this as unknown as { location(): string | null }).location() ?? '');
    sqlOf.set(statement, { kind: statementKind(text), db: paths.get(this) });
    return statement;
  } as typeof prepare;
  const exec = DatabaseSync.prototype.exec;
  DatabaseSync.prototype.exec = function (this: DatabaseSync, text: string) {
    const start = performance.now();
    try {
      return exec.call(this, text);
    } finally {
      if (/wal_checkpoint/i.test(text)) note('sqlite:pragma wal_checkpoint', start, performance.now());
    }
  } as typeof exec;
  for (const method of ['run', 'all', 'get', 'iterate'] as const) {
    const original = StatementSync.prototype[method] as (...args: unknown[]) => unknown;
    (StatementSync.prototype as unknown as Record<string, unknown>)[method] = function (this: StatementSync, ...args: unknown[]) {
      const meta = sqlOf.get(this) ?? { kind: 'other', db: undefined };
      const dbFile = meta.db ?? '';
      const mtimeBefore = meta.kind === 'commit' && dbFile ? mtime(dbFile) : 0n;
      const start = performance.now();
      try {
        return original.apply(this, args);
      } finally {
        const end = performance.now();
        let kind = meta.kind;
        if (kind === 'commit' && dbFile && mtime(dbFile) !== mtimeBefore) kind = 'commit+wal-checkpoint';
        note(`sqlite:${kind}`, start, end);
        // Transactions: from BEGIN to COMMIT/ROLLBACK on the same file, labelled by what they wrote.
        if (kind === 'begin') open.set(dbFile, { start, kinds: new Set() });
        else if (kind === 'commit' || kind === 'commit+wal-checkpoint' || kind === 'rollback') {
          const txn = open.get(dbFile);
          open.delete(dbFile);
          if (txn) note(`txn:${transactionKind(txn.kinds)}`, txn.start, end);
        } else open.get(dbFile)?.kinds.add(kind);
      }
    };
  }
}

/** The main database file's mtime and size: in WAL mode only a checkpoint changes them. */
function mtime(path: string): bigint {
  try {
    const stat = statSync(path, { bigint: true });
    return stat.mtimeNs * 1_000_000_000_000n + stat.size;
  } catch {
    return 0n;
  }
}

function statementKind(text: string): string {
  const t = text.trim().toLowerCase().replace(/\s+/g, ' ');
  if (/^begin/.test(t)) return 'begin';
  if (/^commit/.test(t)) return 'commit';
  if (/^rollback/.test(t)) return 'rollback';
  if (/wal_checkpoint/.test(t)) return 'pragma wal_checkpoint';
  const table = /^(?:insert into|update|delete from) "?(\w+)"?/.exec(t) ?? /^select .*? from "?(\w+)"?/.exec(t);
  const verb = /^(\w+)/.exec(t)?.[1] ?? 'other';
  return `${verb} ${table?.[1] ?? '?'}`;
}

function transactionKind(kinds: Set<string>): string {
  if (kinds.has('insert audit_leaves')) return 'sealing-round';
  // The group commit's: audit events and replay-cache jtis (assertions, DPoP proofs).
  if (kinds.has('insert audit_events') || kinds.has('insert jti_replay')) return 'group-commit';
  return 'other';
}

async function instrumentSealer(): Promise<void> {
  const { AuditSealer } = await import('../src/audit/sealer.ts');
  const { CompactMerkleTree } = await import('../src/audit/merkle.ts');
  const sealOnce = AuditSealer.prototype.sealOnce;
  AuditSealer.prototype.sealOnce = async function (this: InstanceType<typeof AuditSealer>, ...args: Parameters<typeof sealOnce>) {
    const start = performance.now();
    try {
      return await sealOnce.apply(this, args);
    } finally {
      note('sealer:round (wall)', start, performance.now());
    }
  };
  const append = CompactMerkleTree.prototype.append;
  let appendMs = 0;
  let appends = 0;
  CompactMerkleTree.prototype.append = function (this: InstanceType<typeof CompactMerkleTree>, ...args: Parameters<typeof append>) {
    const start = performance.now();
    try {
      return append.apply(this, args);
    } finally {
      appendMs += performance.now() - start;
      appends++;
    }
  };
  merkleTotals = () => ({ appends, ms: appendMs });
}

/** What each stall overlapped, summed by kind of work (ms inside the stall). */
function attribute(): { stalls: number; stall_ms: number; by_kind: Record<string, { stalls: number; ms: number }>; worst: unknown[] } {
  const byKind = new Map<string, { stalls: number; ms: number }>();
  const worst: { ms: number; overlaps: Record<string, number> }[] = [];
  let total = 0;
  for (const stall of stalls) {
    total += stall.end - stall.start;
    const overlaps: Record<string, number> = {};
    for (const span of spans) {
      const ms = Math.min(span.end, stall.end) - Math.max(span.start, stall.start);
      if (ms > 0.5) overlaps[span.kind] = (overlaps[span.kind] ?? 0) + ms;
    }
    if ((stall.runqueueMs ?? 0) > 0.5) overlaps['cpu:waiting for a core (other processes)'] = stall.runqueueMs!;
    // Count each stall once per kind that overlapped it; "unattributed" when none did.
    const kinds = Object.keys(overlaps);
    if (kinds.length === 0) overlaps.unattributed = stall.end - stall.start;
    for (const [kind, ms] of Object.entries(overlaps)) {
      const entry = byKind.get(kind) ?? { stalls: 0, ms: 0 };
      entry.stalls++;
      entry.ms += ms;
      byKind.set(kind, entry);
    }
    worst.push({ ms: stall.end - stall.start, overlaps });
  }
  worst.sort((a, b) => b.ms - a.ms);
  return {
    stalls: stalls.length,
    stall_ms: round(total),
    by_kind: Object.fromEntries([...byKind].sort((a, b) => b[1].ms - a[1].ms).map(([k, v]) => [k, { stalls: v.stalls, ms: round(v.ms) }])),
    worst: worst.slice(0, 8).map((w) => ({ ms: round(w.ms), ...Object.fromEntries(Object.entries(w.overlaps).map(([k, v]) => [k, round(v)])) })),
  };
}

function round(value: number): number {
  return Math.round(value * 100) / 100;
}

function ms(ns: number): number {
  return round(ns / 1e6);
}

process.on('message', (message: unknown) => {
  if (message === 'reset') {
    histogram.disable();
    histogram = monitorEventLoopDelay({ resolution: 1 });
    histogram.enable();
    spans.length = 0;
    stalls.length = 0;
    totals.clear();
  } else if (message === 'report') {
    const h = histogram;
    process.send?.({
      loop_p50_ms: ms(h.percentile(50)),
      loop_p99_ms: ms(h.percentile(99)),
      loop_p999_ms: ms(h.percentile(99.9)),
      loop_max_ms: ms(h.max),
      ...(attributing
        ? {
            attribution: attribute(),
            totals: Object.fromEntries(
              [...totals].sort((a, b) => b[1].ms - a[1].ms).map(([k, v]) => [k, { count: v.count, ms: round(v.ms), max_ms: round(v.max), over_5ms: v.over5 }]),
            ),
            merkle_appends: merkleTotals(),
          }
        : {}),
    });
  }
});
// The channel must not keep the server alive once it has shut down.
process.channel?.unref();
