import { DatabaseSync, type StatementSync } from 'node:sqlite';
import type { DpopReplayStore } from './dpop.ts';
import type { IdempotencyStore, StoredInstruction } from './idempotency.ts';

/**
 * Instruction records in a SQLite file (node:sqlite), so a resource server that restarts keeps
 * them. The slot is the primary key (txn, action): a claim is one `INSERT ... ON CONFLICT DO
 * NOTHING`, so of two claims — two requests, or two processes on the same file (WAL, busy
 * timeout) — exactly one inserts. Completing and releasing touch only a slot still processing.
 */
export class SqliteIdempotencyStore implements IdempotencyStore {
  readonly #db: DatabaseSync;
  readonly #claim: StatementSync;
  readonly #get: StatementSync;
  readonly #complete: StatementSync;
  readonly #release: StatementSync;

  /** Opens (creating if needed) the database file at `path`; `:memory:` for a throwaway one. */
  constructor(path: string) {
    this.#db = new DatabaseSync(path);
    this.#db.exec('PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; PRAGMA synchronous = FULL;');
    this.#db.exec(`CREATE TABLE IF NOT EXISTS guard_instructions (
      txn TEXT NOT NULL,
      action TEXT NOT NULL,
      fingerprint TEXT,
      state TEXT NOT NULL CHECK (state IN ('processing', 'done')),
      started_at TEXT NOT NULL,
      processed_at TEXT,
      result TEXT,
      PRIMARY KEY (txn, action)
    ) STRICT`);
    this.#claim = this.#db.prepare(
      `INSERT INTO guard_instructions (txn, action, fingerprint, state, started_at) VALUES (?, ?, ?, 'processing', ?) ON CONFLICT (txn, action) DO NOTHING`,
    );
    this.#get = this.#db.prepare('SELECT txn, action, fingerprint, state, started_at, processed_at, result FROM guard_instructions WHERE txn = ? AND action = ?');
    this.#complete = this.#db.prepare(`UPDATE guard_instructions SET state = 'done', processed_at = ?, result = ? WHERE txn = ? AND action = ? AND state = 'processing'`);
    this.#release = this.#db.prepare(`DELETE FROM guard_instructions WHERE txn = ? AND action = ? AND state = 'processing'`);
  }

  async claim(record: StoredInstruction): Promise<StoredInstruction | undefined> {
    // Another process may release the slot between our insert and our read: then claim again.
    for (;;) {
      const { changes } = this.#claim.run(record.txn, record.action, record.fingerprint ?? null, record.startedAt);
      if (Number(changes) === 1) return undefined;
      const existing = this.#read(record.txn, record.action);
      if (existing) return existing;
    }
  }

  async complete(txn: string, action: string, processedAt: string, result: string | undefined): Promise<void> {
    this.#complete.run(processedAt, result ?? null, txn, action);
  }

  async release(txn: string, action: string): Promise<void> {
    this.#release.run(txn, action);
  }

  async get(txn: string, action: string): Promise<StoredInstruction | undefined> {
    return this.#read(txn, action);
  }

  close(): void {
    if (this.#db.isOpen) this.#db.close();
  }

  #read(txn: string, action: string): StoredInstruction | undefined {
    const row = this.#get.get(txn, action) as
      | { txn: string; action: string; fingerprint: string | null; state: 'processing' | 'done'; started_at: string; processed_at: string | null; result: string | null }
      | undefined;
    if (!row) return undefined;
    return {
      txn: row.txn,
      action: row.action,
      ...(row.fingerprint !== null ? { fingerprint: row.fingerprint } : {}),
      state: row.state,
      startedAt: row.started_at,
      ...(row.processed_at !== null ? { processedAt: row.processed_at } : {}),
      ...(row.result !== null ? { result: row.result } : {}),
    };
  }
}

/**
 * Used `jti`s in a SQLite file (node:sqlite), so that a guard that restarts still knows them: the
 * SETs its SSF receiver acted on (createSsfReceiver's `replay`), or DPoP proofs (createGuard's
 * `dpop.replay`). It may be the file of a SqliteIdempotencyStore (its own table). `use` is one
 * statement — insert the key, or take over its row only once it has expired — so of two uses of a
 * key, in one process or in several on the same file (WAL, busy timeout), exactly one is first.
 * Expired rows are deleted at most once a minute.
 */
export class SqliteReplayStore implements DpopReplayStore {
  readonly #db: DatabaseSync;
  readonly #use: StatementSync;
  readonly #sweep: StatementSync;
  readonly #now: () => number;
  #sweptAt = -Infinity;

  /** Opens (creating if needed) the database file at `path`; `now` is the clock in epoch ms (tests). */
  constructor(path: string, options: { now?: () => number } = {}) {
    this.#now = options.now ?? Date.now;
    this.#db = new DatabaseSync(path);
    this.#db.exec('PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; PRAGMA synchronous = FULL;');
    this.#db.exec(`CREATE TABLE IF NOT EXISTS guard_used_jtis (
      key TEXT PRIMARY KEY,
      expires_at INTEGER NOT NULL
    ) STRICT`);
    // An expired row is a key no longer used: taking it over is a first use again.
    this.#use = this.#db.prepare(
      'INSERT INTO guard_used_jtis (key, expires_at) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at WHERE guard_used_jtis.expires_at < ?',
    );
    this.#sweep = this.#db.prepare('DELETE FROM guard_used_jtis WHERE expires_at < ?');
  }

  /** True the first time `key` is used before `expiresAt` (epoch ms); false while an earlier use has not expired. */
  use(key: string, expiresAt: number): boolean {
    const now = this.#now();
    if (now - this.#sweptAt >= 60_000) {
      this.#sweptAt = now;
      this.#sweep.run(now);
    }
    const { changes } = this.#use.run(key, Math.ceil(expiresAt), now);
    return Number(changes) === 1;
  }

  close(): void {
    if (this.#db.isOpen) this.#db.close();
  }
}
