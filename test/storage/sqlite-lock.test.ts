import assert from 'node:assert/strict';
import { DatabaseSync } from 'node:sqlite';
import { performance } from 'node:perf_hooks';
import { test, type TestContext } from 'node:test';
import { sqliteFileOf } from '../../src/audit/verify.ts';
import { migrate, openStorage, type Storage } from '../../src/storage/database.ts';
import { isDatabaseUnavailable } from '../../src/storage/faults.ts';
import { testDialects } from '../helpers/storage.ts';

const sqlite = testDialects().find((d) => d.name === 'sqlite')!;

/** Counts the turns of a 5 ms timer: how often the event loop ran while something waited. */
function ticker(): { stop(): number } {
  let ticks = 0;
  const timer = setInterval(() => ticks++, 5);
  return {
    stop() {
      clearInterval(timer);
      return ticks;
    },
  };
}

/** Another connection (another process, to SQLite) holding the write lock until `release()`. */
function holdWriteLock(file: string): { release(): void } {
  const other = new DatabaseSync(file);
  other.exec('BEGIN IMMEDIATE');
  return {
    release() {
      other.exec('COMMIT');
      other.close();
    },
  };
}

/**
 * Runs `write` (which inserts generation `name` = 1) while another connection holds the write
 * lock for 300 ms, and checks that it began only after the release, that the event loop kept
 * turning while it waited, and that its row is written.
 */
async function waitsForTheLock(t: TestContext, name: string, write: (storage: Storage) => Promise<unknown>): Promise<void> {
  const database = await sqlite.create(t);
  await migrate(database.storage);
  const lock = holdWriteLock(sqliteFileOf(database.storage)!);
  setTimeout(() => lock.release(), 300);
  const ticks = ticker();
  const started = performance.now();
  await write(database.storage);
  const waited = performance.now() - started;
  const turns = ticks.stop();
  assert.ok(waited >= 250, `began after the lock was released (${Math.round(waited)} ms)`);
  // node:sqlite is synchronous: waiting in SQLite's busy handler, the loop would not turn at all.
  assert.ok(turns >= 20, `the event loop turned ${turns} times while the write waited ${Math.round(waited)} ms`);
  const row = await database.storage.db.selectFrom('generations').select('value').where('name', '=', name).executeTakeFirst();
  assert.equal(row?.value, 1);
}

test('a SQLite transaction waits for another process’s write lock without blocking the event loop', (t) =>
  waitsForTheLock(t, 'waited', (storage) => storage.db.transaction().execute((trx) => trx.insertInto('generations').values({ name: 'waited', value: 1 }).execute())));

test('a SQLite transaction gives up with a database-unavailable error once the busy timeout has passed', async (t) => {
  const database = await sqlite.create(t);
  await migrate(database.storage);
  const file = sqliteFileOf(database.storage)!;
  const storage = openStorage({ sqlitePath: file, busyTimeoutMs: 200 });
  t.after(() => storage.close());
  const lock = holdWriteLock(file);
  t.after(() => lock.release());
  const ticks = ticker();
  const started = performance.now();
  const error = await storage.db
    .transaction()
    .execute((trx) => trx.insertInto('generations').values({ name: 'never', value: 1 }).execute())
    .then(
      () => undefined,
      (e: unknown) => e,
    );
  const waited = performance.now() - started;
  const turns = ticks.stop();
  assert.ok(isDatabaseUnavailable(error), `a 503 fault, not ${String(error)}`);
  assert.ok(waited >= 190 && waited < 1000, `gave up after the busy timeout (${Math.round(waited)} ms)`);
  assert.ok(turns >= 10, `the event loop turned ${turns} times meanwhile`);
});

test('a flight’s transaction waits for another process’s write lock the same way, and writes once it has it', (t) =>
  waitsForTheLock(t, 'flown', async (storage) => {
    const flight = storage.flight();
    const inserted = flight.run(storage.db.insertInto('generations').values({ name: 'flown', value: 1 }));
    await flight.commit();
    await inserted;
  }));
