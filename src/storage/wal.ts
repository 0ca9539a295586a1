import { sql, type Kysely } from 'kysely';
import type { Database } from './schema.ts';

/**
 * SQLite's automatic checkpoint threshold, in WAL pages, for a connection whose WAL nobody else
 * checkpoints (the CLI; the server until its sealer starts). 10,000 pages (~40 MB) instead of
 * SQLite's 1,000 let index pages absorb many inserts between checkpoints (about 2x the audit
 * append rate), but such a checkpoint runs inside whichever COMMIT crosses the threshold, and
 * node:sqlite is synchronous: measured 108-147 ms of blocked event loop each under load
 * (docs/architecture.md, "Writes on the hot path"). The server's sealer turns it off and
 * checkpoints between its rounds instead (`checkpointWal`).
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
