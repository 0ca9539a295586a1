/** Worker thread: runs checkBeside on its own connection to a SQLite file (verify.ts). */
import { parentPort, workerData } from 'node:worker_threads';
import { sql } from 'kysely';
import { openStorage } from '../storage/database.ts';
import { checkBeside, verificationMmapBytes } from './verify-side.ts';

const { sqliteFile, lastSeq } = workerData as { sqliteFile: string; lastSeq: number };
const storage = openStorage({ sqlitePath: sqliteFile });
try {
  // Memory-mapped (verify-side.ts): the query index's probes are random reads of its pages.
  await sql.raw(`PRAGMA mmap_size = ${verificationMmapBytes}`).execute(storage.db);
  parentPort!.postMessage({ ok: true, problem: await checkBeside(storage.db, lastSeq, { columns: true }) });
} catch (error) {
  parentPort!.postMessage({ ok: false, error: (error as Error).message });
} finally {
  await storage.close();
}
