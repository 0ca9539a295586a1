import { Worker } from 'node:worker_threads';
import { sql, type Kysely } from 'kysely';
import type { Database } from './schema.ts';

/**
 * SQLite's automatic checkpoint threshold, in WAL pages, for a connection whose WAL nobody else
 * checkpoints (the CLI; the server until its sealer starts). 10,000 pages (~40 MB) instead of
 * SQLite's 1,000 let index pages absorb many inserts between checkpoints (about 2x the audit
 * append rate), but such a checkpoint runs inside whichever COMMIT crosses the threshold, and
 * node:sqlite is synchronous: measured 108-147 ms of blocked event loop each under load
 * (docs/architecture.md, "Writes on the hot path"). The server's sealer turns it off and
 * checkpoints between its rounds instead (`WalCheckpointer`).
 */
export const autocheckpointPages = 10_000;

/** What `PRAGMA wal_checkpoint` reports: frames in the WAL, and how many are now in the database file. */
export interface WalCheckpoint {
  /** 1 when the checkpoint could not run at all (another connection was checkpointing). */
  busy: number;
  /** Frames in the WAL (-1 when the database is not in WAL mode). */
  logFrames: number;
  /** Frames copied into the database file so far (-1 when not in WAL mode). */
  checkpointedFrames: number;
}

/**
 * Sets the automatic checkpoint threshold of `db`'s SQLite connection (0 = never). Whoever sets
 * 0 takes over checkpointing: without checkpoints the WAL grows without bound.
 */
export async function setWalAutocheckpoint(db: Kysely<Database>, pages: number): Promise<void> {
  await sql.raw(`pragma wal_autocheckpoint = ${Math.max(0, Math.floor(pages))}`).execute(db);
}

/**
 * Copies the WAL's committed frames into the database file without waiting for anyone (PASSIVE:
 * it never takes the write lock, so it cannot make a writer wait). Run on the event-loop thread
 * between two transactions, no frame is added meanwhile, so the checkpoint completes unless
 * another process still reads an older snapshot; the next write transaction then starts the WAL
 * over from its beginning, which keeps the file as large as the writes between two checkpoints.
 * Committed data is in the WAL already: a checkpoint moves it, it does not make it durable.
 */
export async function checkpointWal(db: Kysely<Database>): Promise<WalCheckpoint> {
  const { rows } = await sql<{ busy: number; log: number; checkpointed: number }>`pragma wal_checkpoint(passive)`.execute(db);
  const row = rows[0];
  return { busy: Number(row?.busy ?? 0), logFrames: Number(row?.log ?? -1), checkpointedFrames: Number(row?.checkpointed ?? -1) };
}

/**
 * Checkpoints a SQLite file's WAL from a worker thread with a connection of its own (sealer.ts
 * calls it between rounds; issue 20 item 6). `checkpoint()` runs in two steps:
 * 1. the bulk: PASSIVE checkpoints in the worker while writes go on (`bulkCheckpoint`). The copy
 *    and its two fsyncs (WAL, then database file) never block the event loop. A pass copies what
 *    the WAL held when it began; another pass follows while the last one found many frames written
 *    during the one before, so that the tail below has little left to copy;
 * 2. the tail: a RESTART checkpoint in the worker while `db`'s connection is held. RESTART takes
 *    the write lock, so no write of any process lands meanwhile (other processes' writers wait for
 *    it, `clearance start --workers N`), copies only what was written during step 1, and
 *    completes, so the next write starts the WAL over: without this step, a checkpoint racing a
 *    steady stream of writes never catches up and the WAL grows without bound (measured with two
 *    worker processes: 40 MB in 8 s, until a worker's own automatic checkpoint ran inside its
 *    COMMIT). Requests keep being served meanwhile; only their database writes wait for it, a few
 *    frames' worth. Holding `db`'s connection makes this process's own writes wait for it on the
 *    event loop rather than in SQLite's busy handler.
 */
export class WalCheckpointer {
  readonly #db: Kysely<Database>;
  readonly #worker: Worker;
  readonly #waiting = new Map<number, { resolve: (result: WalCheckpoint) => void; reject: (error: Error) => void }>();
  #next = 0;
  #failed: Error | undefined;

  private constructor(db: Kysely<Database>, file: string) {
    this.#db = db;
    this.#worker = new Worker(new URL('./wal-worker.ts', import.meta.url), { workerData: { file } });
    this.#worker.unref(); // never what keeps a process alive
    this.#worker.on('message', (message: { id: number; error?: string } & WalCheckpoint) => {
      const waiting = this.#waiting.get(message.id);
      this.#waiting.delete(message.id);
      if (message.error !== undefined) waiting?.reject(new Error(message.error));
      else waiting?.resolve({ busy: message.busy, logFrames: message.logFrames, checkpointedFrames: message.checkpointedFrames });
    });
    this.#worker.on('error', (error) => this.#fail(error));
    this.#worker.on('exit', () => this.#fail(new Error('the WAL checkpoint worker exited')));
  }

  /** A checkpointer for `db`'s SQLite file; undefined for a database without one (':memory:'). */
  static async open(db: Kysely<Database>): Promise<WalCheckpointer | undefined> {
    const { rows } = await sql<{ file: string }>`select file from pragma_database_list where name = 'main'`.execute(db);
    const file = rows[0]?.file;
    return file ? new WalCheckpointer(db, file) : undefined;
  }

  /** Both steps; resolves with the tail's report (complete when `logFrames === checkpointedFrames`). */
  async checkpoint(): Promise<WalCheckpoint> {
    await bulkCheckpoint(() => this.#inWorker('passive'));
    return this.#db.connection().execute(() => this.#inWorker('restart'));
  }

  async close(): Promise<void> {
    this.#fail(new Error('the WAL checkpointer is closed'));
    await this.#worker.terminate();
  }

  #inWorker(mode: 'passive' | 'restart'): Promise<WalCheckpoint> {
    if (this.#failed) return Promise.reject(this.#failed);
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject });
      this.#worker.postMessage({ id, mode });
    });
  }

  #fail(error: Error): void {
    this.#failed ??= error;
    for (const waiting of this.#waiting.values()) waiting.reject(error);
    this.#waiting.clear();
  }
}

/**
 * Frames written during a PASSIVE pass below which the bulk ends: about eight of the server's
 * group commits (each writes 8-9 pages, measured under the m2m load at half its peak).
 */
export const quietFrames = 64;

/** Most PASSIVE passes in one bulk: under a write rate that outruns the copy, the tail copies the rest. */
export const maxBulkPasses = 4;

/**
 * The bulk of a checkpoint: PASSIVE passes until one finds fewer than `quietFrames` frames added
 * since the pass before it (or `maxBulkPasses` have run, or the WAL started over). Returns the
 * last pass's report and how many ran.
 *
 * Why more than one: the tail (RESTART, with every write of this process held back) copies what
 * was written while the bulk ran, and syncs both files. After one pass of a round's WAL (6,500
 * frames, 16-29 ms in the worker at 2,400 token requests/s) that was 150-260 frames and the hold
 * lasted 8-13 ms (mostly the tail's fsyncs, which wait for its copy to reach the disk); every
 * commit of the process waited meanwhile, twice a second, a large part of the p99 at half the
 * peak. After a second pass (about 100 frames, 1-2 ms), it is 0-170 frames and the hold mostly
 * 1-2 ms (docs/performance.md, "The WAL checkpoint's hold").
 */
export async function bulkCheckpoint(pass: () => Promise<WalCheckpoint>): Promise<{ last: WalCheckpoint; passes: number }> {
  let last = await pass();
  let passes = 1;
  while (passes < maxBulkPasses) {
    const next = await pass();
    passes++;
    // Fewer frames than before: a write started the WAL over (everything was copied); none: idle.
    const added = next.logFrames - last.logFrames;
    last = next;
    if (added < quietFrames) break;
  }
  return { last, passes };
}
