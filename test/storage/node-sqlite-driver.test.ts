import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { openNodeSqlite, pageCacheKiB } from '../../src/storage/node-sqlite-driver.ts';

// The connection settings of src/storage/node-sqlite-driver.ts, read back from SQLite.

test('opens a file in WAL mode, NORMAL sync, foreign keys on, and a page cache of at most 8 MiB: a larger one makes every COMMIT dearer as it fills', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'clearance-sqlite-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const db = openNodeSqlite(join(dir, 'clearance.db'));
  t.after(() => db.close());
  const pragma = (name: string) => Object.values(db.raw.prepare(`pragma ${name}`).get() as Record<string, unknown>)[0];
  assert.equal(pragma('journal_mode'), 'wal');
  assert.equal(pragma('synchronous'), 1); // NORMAL
  assert.equal(pragma('foreign_keys'), 1);
  assert.ok(pageCacheKiB <= 8192, `a page cache of ${pageCacheKiB} KiB`);
  // Negative: KiB, not pages (docs: PRAGMA cache_size).
  assert.equal(pragma('cache_size'), -pageCacheKiB);
});

test('opens with FULL sync when asked', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'clearance-sqlite-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const db = openNodeSqlite(join(dir, 'clearance.db'), { synchronous: 'full' });
  t.after(() => db.close());
  assert.equal(Object.values(db.raw.prepare('pragma synchronous').get() as Record<string, unknown>)[0], 2);
});
