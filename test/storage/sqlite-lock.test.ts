import assert from 'node:assert/strict';
import { DatabaseSync } from 'node:sqlite';
import { performance } from 'node:perf_hooks';
import { test } from 'node:test';
import { sqliteFileOf } from '../../src/audit/verify.ts';
import { migrate, openStorage } from '../../src/storage/database.ts';
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

test('a SQLite transaction waits for another process’s write lock without blocking the event loop', async (t) => {
  const database = await sqlite.create(t);
  await migrate(database.storage);
  const lock = holdWriteLock(sqliteFileOf(database.storage)!);
  setTimeout(() => lock.release(), 300);
  const ticks = ticker();
  const started = performance.now();
  await database.storage.db.transaction().execute((trx) => trx.insertInto('generations').values({ name: 'waited', value: 1 }).execute());
  const waited = performance.now() - started;
  const turns = ticks.stop();
  assert.ok(waited >= 250, `began after the lock was released (${Math.round(waited)} ms)`);
  // node:sqlite is synchronous: waiting in SQLite's busy handler, the loop would not turn at all.
  assert.ok(turns >= 20, `the event loop turned ${turns} times while the transaction waited ${Math.round(waited)} ms`);
  const row = await database.storage.db.selectFrom('generations').select('value').where('name', '=', 'waited').executeTakeFirst();
  assert.equal(row?.value, 1);
});

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

test('a flight’s transaction waits for another process’s write lock the same way, and writes once it has it', async (t) => {
  const database = await sqlite.create(t);
  await migrate(database.storage);
  const lock = holdWriteLock(sqliteFileOf(database.storage)!);
  setTimeout(() => lock.release(), 300);
  const ticks = ticker();
  const started = performance.now();
  const flight = database.storage.flight();
  const inserted = flight.run(database.storage.db.insertInto('generations').values({ name: 'flown', value: 1 }));
  await flight.commit();
  await inserted;
  const waited = performance.now() - started;
  const turns = ticks.stop();
  assert.ok(waited >= 250, `began after the lock was released (${Math.round(waited)} ms)`);
  assert.ok(turns >= 20, `the event loop turned ${turns} times while the flight waited ${Math.round(waited)} ms`);
  const row = await database.storage.db.selectFrom('generations').select('value').where('name', '=', 'flown').executeTakeFirst();
  assert.equal(row?.value, 1);
});
