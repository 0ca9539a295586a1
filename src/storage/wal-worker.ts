/**
 * Worker thread: runs `PRAGMA wal_checkpoint(PASSIVE)` on its own connection to a SQLite file
 * whenever asked (wal.ts, WalCheckpointer), so the copy and its fsyncs block this thread, not the
 * server's event loop.
 */
import { DatabaseSync } from 'node:sqlite';
import { parentPort, workerData } from 'node:worker_threads';

const { file } = workerData as { file: string };
const db = new DatabaseSync(file);
// PASSIVE never waits for a lock; opening the file may, for an instant.
db.exec('PRAGMA busy_timeout = 1000');
const checkpoint = db.prepare('PRAGMA wal_checkpoint(PASSIVE)');

parentPort!.on('message', (id: number) => {
  try {
    const row = checkpoint.get() as { busy: number; log: number; checkpointed: number };
    parentPort!.postMessage({ id, busy: Number(row.busy), logFrames: Number(row.log), checkpointedFrames: Number(row.checkpointed) });
  } catch (error) {
    parentPort!.postMessage({ id, error: (error as Error).message });
  }
});
