import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { eventually } from '../helpers/eventually.ts';
import { describe, test, type TestContext } from 'node:test';
import { migrate, openStorage, type Storage } from '../../src/storage/database.ts';
import { bumpGeneration, GenerationCache } from '../../src/storage/generations.ts';
import { attachNotices, noticesFor, type ChangeNotices } from '../../src/storage/notices.ts';
import { ManualClock } from '../../src/clock.ts';
import { adminQuery, testDatabaseUrl, testDialects } from '../helpers/storage.ts';

// Change notices (src/storage/notices.ts). The caches here run on a clock that never moves: their
// poll interval never passes, so whatever they see of another handle's change, they saw through a
// notice (or the reconnection that stands for the notices it missed).

const postgres = testDialects().find((d) => d.name === 'postgres');

/** How long a change notice may take: 5 s, looked for every 5 ms. */
const promptly = { withinMs: 5000, everyMs: 5 };

function listening(t: TestContext, options: Parameters<typeof openStorage>[0], applicationName: string): Storage {
  const storage = openStorage({ ...options, listenForChanges: true, applicationName });
  t.after(() => storage.close());
  return storage;
}

/** A cache of the number of loads it made, over `name`. */
function countingCache(storage: Storage, name: string) {
  let loads = 0;
  const cache = new GenerationCache(storage.db, name, async () => ++loads, new ManualClock(0));
  return cache;
}

describe('change notices on PostgreSQL', { skip: postgres ? false : 'needs TEST_DATABASE_URL' }, () => {
  test('a change committed through one handle marks another handle’s cache stale, with no poll', async (t) => {
    const database = await postgres!.create(t);
    await migrate(database.storage);
    const node = listening(t, database.options, 'notices-a');
    await eventually(async () => noticesFor(node.db)!.listening, 'the listener listens', promptly);
    const cache = countingCache(node, 'clients');
    assert.equal(await cache.get(), 1);
    await bumpGeneration(database.storage.db, 'clients');
    const tookMs = await eventually(async () => (await cache.get()) === 2, 'the change is seen', promptly);
    t.diagnostic(`seen ${tookMs.toFixed(1)} ms after the commit`);
    assert.equal(await cache.get(), 2, 'and loaded once');
  });

  test('a rolled-back change sends no notice, and a change to another name or another schema leaves the cache alone', async (t) => {
    const database = await postgres!.create(t);
    await migrate(database.storage);
    const other = await postgres!.create(t);
    await migrate(other.storage);
    const node = listening(t, database.options, 'notices-b');
    await eventually(async () => noticesFor(node.db)!.listening, 'the listener listens', promptly);
    const cache = countingCache(node, 'clients');
    assert.equal(await cache.get(), 1);
    await database.storage.db
      .transaction()
      .execute(async (trx) => {
        await bumpGeneration(trx, 'clients');
        throw new Error('rolled back');
      })
      .catch(() => undefined);
    await bumpGeneration(database.storage.db, 'policies');
    await bumpGeneration(other.storage.db, 'clients');
    // A change to `clients` after them: once it is seen, the others would have been too.
    const marker = countingCache(node, 'keys');
    assert.equal(await marker.get(), 1);
    await bumpGeneration(database.storage.db, 'keys');
    await eventually(async () => (await marker.get()) === 2, 'the later change is seen', promptly);
    assert.equal(await cache.get(), 1, 'the cache of clients did not reload');
  });

  test('a lost listening connection is reconnected, and the change made while it was gone is seen after', async (t) => {
    const database = await postgres!.create(t);
    await migrate(database.storage);
    const states: boolean[] = [];
    const node = openStorage({ ...database.options, listenForChanges: true, applicationName: 'notices-c', onListening: (l) => states.push(l), onConnectionError: () => undefined });
    t.after(() => node.close());
    const notices = noticesFor(node.db)!;
    await eventually(async () => notices.listening, 'the listener listens', promptly);
    const cache = countingCache(node, 'clients');
    assert.equal(await cache.get(), 1);
    // The notices connection is killed by the server, and the change is made before it is back.
    await adminQuery(testDatabaseUrl!, `select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'notices-c-notices' and pid <> pg_backend_pid()`);
    await eventually(async () => !notices.listening, 'the loss is noticed', promptly);
    await bumpGeneration(database.storage.db, 'clients');
    await eventually(async () => notices.listening, 'the listener is back', promptly);
    assert.equal(await cache.get(), 2, 'the change made while nobody listened is seen once the listener is back');
    assert.deepEqual(states, [true, false, true]);
  });
});

describe('a generation cache told of a change while it reads', () => {
  test('checks again, so a caller that came after the notice never gets the value from before it', async (t) => {
    const database = await testDialects()[0]!.create(t);
    await migrate(database.storage);
    let stale = (): void => undefined;
    const notices: ChangeNotices = {
      listening: true,
      subscribe: (_name, onStale) => {
        stale = onStale;
        return () => undefined;
      },
    };
    attachNotices(database.storage.db, notices);
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let loads = 0;
    const cache = new GenerationCache(
      database.storage.db,
      'clients',
      async () => {
        loads++;
        if (loads === 1) await held;
        return loads;
      },
      new ManualClock(0),
    );
    const first = cache.get();
    await sleep(10);
    // The change commits and its notice arrives while the first load still runs.
    await bumpGeneration(database.storage.db, 'clients');
    stale();
    const second = cache.get();
    release();
    assert.equal(await first, 2, 'the read in progress checked again after the notice');
    assert.equal(await second, 2);
    assert.equal(await cache.get(), 2, 'and the value is then fresh: no further load');
    assert.equal(loads, 2);
  });

  test('while notices arrive, polls only as a safety net; when they stop, every second again', async (t) => {
    const database = await testDialects()[0]!.create(t);
    await migrate(database.storage);
    const notices = { listening: true, subscribe: () => () => undefined };
    attachNotices(database.storage.db, notices);
    const clock = new ManualClock(0);
    let loads = 0;
    const cache = new GenerationCache(database.storage.db, 'clients', async () => ++loads, clock);
    assert.equal(await cache.get(), 1);
    await bumpGeneration(database.storage.db, 'clients');
    clock.advance(5000);
    assert.equal(await cache.get(), 1, 'listening: five seconds are within the safety-net interval');
    notices.listening = false;
    assert.equal(await cache.get(), 2, 'not listening: the one-second poll applies');
  });
});
