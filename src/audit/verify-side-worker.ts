/**
 * Worker thread: takes the side checks' tasks (verify-side.ts) one at a time from the list it was
 * given, through a counter it shares with the verifying thread, which takes tasks too once its
 * own scan is done; runs each on a read-only connection of its own to the SQLite file, and posts
 * its answers when none is left. It loads only Kysely and node:sqlite, not the server's storage
 * layer: the worker's start-up is on verification's critical path.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { openVerificationDb, takeSideTasks, type SideTask } from './verify-side.ts';

const { sqliteFile, tasks, next } = workerData as { sqliteFile: string; tasks: SideTask[]; next: Int32Array };
const db = openVerificationDb(sqliteFile);
try {
  parentPort!.postMessage({ ok: true, answers: await takeSideTasks(db, tasks, next) });
} catch (error) {
  parentPort!.postMessage({ ok: false, error: (error as Error).message });
} finally {
  await db.destroy();
}
