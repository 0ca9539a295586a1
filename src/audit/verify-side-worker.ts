/** Worker thread: runs checkBeside on its own connection to a SQLite file (verify.ts). */
import { parentPort, workerData } from 'node:worker_threads';
import { openStorage } from '../storage/database.ts';
import { checkBeside } from './verify-side.ts';

const { sqliteFile, lastSeq } = workerData as { sqliteFile: string; lastSeq: number };
const storage = openStorage({ sqlitePath: sqliteFile });
try {
  parentPort!.postMessage({ ok: true, problem: await checkBeside(storage.db, lastSeq, { columns: true }) });
} catch (error) {
  parentPort!.postMessage({ ok: false, error: (error as Error).message });
} finally {
  await storage.close();
}
