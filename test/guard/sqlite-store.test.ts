import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { test, type TestContext } from 'node:test';
import { SqliteReplayStore } from 'clearance/guard';

// The SQLite store of used jtis (src/guard/sqlite-store.ts): what the guard's SSF receiver and DPoP
// checks remember across a restart, and what several processes on one file agree on.

function file(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'clearance-replay-store-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, 'guard.db');
}

test('a key is used once until it expires, and is new again after', (t) => {
  const clock = { now: 1_800_000_000_000 };
  const store = new SqliteReplayStore(file(t), { now: () => clock.now });
  t.after(() => store.close());
  assert.equal(store.use('a', clock.now + 1000), true);
  assert.equal(store.use('a', clock.now + 1000), false, 'a second use before it expires');
  assert.equal(store.use('b', clock.now + 1000), true, 'another key');
  clock.now += 1000;
  assert.equal(store.use('a', clock.now + 1000), false, 'still at its expiry');
  clock.now += 1;
  assert.equal(store.use('a', clock.now + 1000), true, 'expired: a first use again');
  assert.equal(store.use('a', clock.now + 1000), false);
});

test('two stores on one file — two processes, or one restarted — agree: one use of a key is first', (t) => {
  const path = file(t);
  const now = 1_800_000_000_000;
  const one = new SqliteReplayStore(path, { now: () => now });
  const two = new SqliteReplayStore(path, { now: () => now });
  t.after(() => {
    one.close();
    two.close();
  });
  assert.deepEqual([one.use('k', now + 60_000), two.use('k', now + 60_000)], [true, false]);
  one.close();
  const reopened = new SqliteReplayStore(path, { now: () => now });
  t.after(() => reopened.close());
  assert.equal(reopened.use('k', now + 60_000), false, 'kept across a restart');
});

test('expired rows are swept, at most once a minute', (t) => {
  const path = file(t);
  const clock = { now: 1_800_000_000_000 };
  const store = new SqliteReplayStore(path, { now: () => clock.now });
  t.after(() => store.close());
  for (let i = 0; i < 10; i++) store.use(`old-${i}`, clock.now + 1000);
  clock.now += 61_000;
  store.use('new', clock.now + 1000);
  const db = new DatabaseSync(path);
  t.after(() => db.close());
  assert.deepEqual(db.prepare('SELECT key FROM guard_used_jtis').all().map((row) => row.key), ['new']);
});
