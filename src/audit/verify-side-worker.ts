/**
 * Worker thread: runs checkBeside on a read-only connection of its own to a SQLite file
 * (verify.ts). It loads only Kysely and node:sqlite, not the server's storage layer: the worker's
 * start-up is on verification's critical path.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Kysely, SqliteDialect } from 'kysely';
import { adaptStatement } from '../storage/node-sqlite-statement.ts';
import type { Database } from '../storage/schema.ts';
import { checkBeside, openForVerification } from './verify-side.ts';

const { sqliteFile, lastSeq } = workerData as { sqliteFile: string; lastSeq: number };
const conn = openForVerification(sqliteFile);
const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: { close: () => conn.close(), prepare: (text) => adaptStatement(conn.prepare(text)) } }) });
try {
  parentPort!.postMessage({ ok: true, problem: await checkBeside(db, lastSeq, { columns: true }) });
} catch (error) {
  parentPort!.postMessage({ ok: false, error: (error as Error).message });
} finally {
  await db.destroy();
}
