import { DatabaseSync } from 'node:sqlite';
import type { SqliteDatabase, SqliteStatement } from 'kysely';
import { databaseTimeoutDefaults } from '../config.ts';
import { autocheckpointPages } from './wal.ts';
import { adaptStatement } from './node-sqlite-statement.ts';

/** The page cache of each connection, in KiB (see the PRAGMA below for why it is not larger). */
export const pageCacheKiB = 8192;

/**
 * Adapts Node's built-in `node:sqlite` DatabaseSync to the interface Kysely's SqliteDialect
 * expects (the better-sqlite3 shape), so no native addon is needed.
 */
export function openNodeSqlite(
  path: string,
  options: { synchronous?: 'full' | 'normal'; busyTimeoutMs?: number } = {},
): SqliteDatabase & { raw: DatabaseSync } {
  const db = new DatabaseSync(path);
  const busyTimeoutMs = Math.max(0, Math.floor(options.busyTimeoutMs ?? databaseTimeoutDefaults.sqliteBusyMs));
  // WAL lets the CLI and the server share the file; the busy timeout makes a writer wait its turn
  // instead of failing. In WAL mode, NORMAL sync keeps every commit across a process crash (the
  // WAL is written before COMMIT returns) and may lose the last commits on power loss; FULL also
  // fsyncs each commit. On a blocking driver an fsync stalls the event loop (~0.5 ms here), so
  // FULL is opt-in (CLEARANCE_SQLITE_SYNCHRONOUS=full) and group commit keeps it affordable.
  // busy_timeout first: switching to WAL takes a lock, and without a timeout a second process
  // opening the file at the same moment fails at once with "database is locked".
  // node:sqlite is synchronous: while a statement waits for the lock the event loop waits too, so
  // the timeout is short (CLEARANCE_SQLITE_BUSY_TIMEOUT_MS); "database is locked" then answers
  // 503. A transaction waits for it on a timer instead (beginWithoutWaiting below).
  db.exec(`PRAGMA busy_timeout = ${busyTimeoutMs}`);
  db.exec('PRAGMA journal_mode = WAL');
  db.exec(`PRAGMA synchronous = ${options.synchronous === 'full' ? 'FULL' : 'NORMAL'}`);
  db.exec('PRAGMA foreign_keys = ON');
  // A checkpoint every ~40 MB of WAL (instead of 4 MB) lets index pages absorb many inserts
  // between checkpoints: measured about 2x the audit append rate. The server's audit sealer turns
  // the automatic checkpoint off and checkpoints between its rounds (wal.ts): run inside a COMMIT,
  // a checkpoint of that size blocks the event loop for ~100 ms.
  // An 8 MiB page cache, not more: every COMMIT ends by truncating the page cache to the database's
  // size, which walks hash buckets in proportion to the pages cached (pcache1TruncateUnsafe, the
  // hottest function of a long-running server in `perf`). With 64 MiB, a group commit's COMMIT grew
  // from 180 to 300-350 µs as the cache filled, and SQLite's share of an m2m request from 42 to
  // 61-72 µs; with 8 MiB it stays at 125-135 µs and 34-40 µs (docs/performance.md). The pages
  // the hot path reads (index interiors, the newest events) fit; the audit append rate measured
  // the same.
  db.exec(`PRAGMA cache_size = -${pageCacheKiB}`);
  db.exec(`PRAGMA wal_autocheckpoint = ${autocheckpointPages}`);
  const statements = new Map<string, SqliteStatement>();
  const begin = beginWithoutWaiting(db, busyTimeoutMs);
  return {
    raw: db,
    close: () => {
      statements.clear();
      if (db.isOpen) db.close();
    },
    prepare(sql: string): SqliteStatement {
      // A deferred BEGIN can fail with SQLITE_BUSY when it later upgrades to a write lock while
      // another process writes; BEGIN IMMEDIATE takes the write lock up front. It does not wait
      // for it here: the driver retries on SQLITE_BUSY (database.ts, PatientSqliteDriver).
      if (/^begin$/i.test(sql.trim())) return begin;
      let statement = statements.get(sql);
      if (!statement) {
        statement = adaptStatement(db.prepare(sql));
        if (statements.size > 500) statements.clear();
        statements.set(sql, statement);
      }
      return statement;
    },
  };
}

/**
 * BEGIN IMMEDIATE that fails at once with SQLITE_BUSY while another connection holds the write
 * lock, instead of waiting in SQLite's busy handler: that handler sleeps in the calling thread,
 * and node:sqlite calls it on the event loop. With several processes writing one file
 * (`clearance start --workers N`, a CLI command beside the server) each wait stalled every
 * request of the process, measured at 1-8 ms typically and up to 730 ms when the other writer
 * kept taking the lock back first. The driver waits between attempts on a timer instead
 * (database.ts, PatientSqliteDriver). Statements outside a transaction keep the busy timeout.
 */
function beginWithoutWaiting(db: DatabaseSync, busyTimeoutMs: number): SqliteStatement {
  const begin = db.prepare('BEGIN IMMEDIATE');
  // exec, not prepared statements: SQLite applies `PRAGMA busy_timeout` when it compiles it.
  const wait = `PRAGMA busy_timeout = ${busyTimeoutMs}`;
  return {
    reader: false,
    all: () => [],
    iterate: () => [][Symbol.iterator](),
    run: () => {
      db.exec('PRAGMA busy_timeout = 0');
      try {
        return begin.run();
      } finally {
        db.exec(wait);
      }
    },
  };
}

/** SQLITE_BUSY, whatever its extended code. */
export function isSqliteBusy(error: unknown): boolean {
  const errcode = (error as { errcode?: unknown }).errcode;
  return (error as { code?: unknown }).code === 'ERR_SQLITE_ERROR' && typeof errcode === 'number' && (errcode & 0xff) === 5;
}
