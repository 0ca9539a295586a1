/**
 * Worker thread: runs `PRAGMA wal_checkpoint(PASSIVE)` or `(RESTART)` on its own connection to a
 * SQLite file whenever asked (wal.ts, WalCheckpointer), so the copy, its fsyncs and any wait for
 * the write lock block this thread, not the server's event loop.
 */
import { DatabaseSync } from 'node:sqlite';
import { parentPort, workerData } from 'node:worker_threads';

const { file } = workerData as { file: string };
const db = new DatabaseSync(file);
// PASSIVE never waits for a lock; opening the file may, for an instant, and RESTART waits for the
// writers of other processes to finish their transaction (then gives up: busy = 1).
db.exec('PRAGMA busy_timeout = 1000');
const checkpoints = { passive: db.prepare('PRAGMA wal_checkpoint(PASSIVE)'), restart: db.prepare('PRAGMA wal_checkpoint(RESTART)') };

parentPort!.on('message', ({ id, mode }: { id: number; mode: 'passive' | 'restart' }) => {
  try {
    const row = checkpoints[mode].get() as { busy: number; log: number; checkpointed: number };
    parentPort!.postMessage({ id, busy: Number(row.busy), logFrames: Number(row.log), checkpointedFrames: Number(row.checkpointed) });
  } catch (error) {
    parentPort!.postMessage({ id, error: (error as Error).message });
  }
});
