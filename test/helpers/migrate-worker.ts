/**
 * A worker thread that migrates the databases it is sent: a second "process" with its own event
 * loop and its own connection, as the server and the CLI are (see test/storage/contract.test.ts).
 * Message in: StorageOptions. Message out: { ok, applied } or { ok: false, error }.
 */
import { parentPort } from 'node:worker_threads';
import { migrate, openStorage, type StorageOptions } from '../../src/storage/database.ts';

const port = parentPort!;
port.on('message', async (options: StorageOptions) => {
  const storage = openStorage(options);
  try {
    const result = await migrate(storage);
    port.postMessage({ ok: true, applied: result.results?.filter((r) => r.status === 'Success').map((r) => r.migrationName) ?? [] });
  } catch (error) {
    port.postMessage({ ok: false, error: String(error) });
  } finally {
    await storage.close();
  }
});
