import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { sealNow } from '../../src/audit/lifecycle.ts';
import { storedCheckpoint } from '../../src/audit/proofs.ts';
import { main } from '../../src/cli/main.ts';
import { loadConfig } from '../../src/config.ts';
import type { Context } from '../../src/context.ts';
import { resolveMasterKey } from '../../src/keys/master-key.ts';
import { createLogger } from '../../src/log.ts';
import { openContext } from '../../src/server.ts';
import { adminQuery, testDatabaseUrl } from '../helpers/storage.ts';

// Backups and a verified restore (docs/operations.md "Backups and restore"), as an operator runs
// them: `clearance backup` while a server has the database open, the restore put in place, and
// `clearance audit verify --checkpoint` on the restored copy.

async function cli(env: NodeJS.ProcessEnv, ...args: string[]): Promise<{ code: number; out: string }> {
  const lines: string[] = [];
  const code = await main(args, env, { out: (l) => lines.push(l), err: (l) => lines.push(l) });
  return { code, out: lines.join('\n') };
}

function scratch(t: TestContext, prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A running node's context on `env`'s store, with audited work sealed into the log. */
async function runningNode(t: TestContext, env: NodeJS.ProcessEnv): Promise<Context> {
  const ctx = await openContext(loadConfig(env), { log: createLogger('silent'), listenForChanges: false });
  t.after(() => ctx.storage.close());
  return ctx;
}

async function work(ctx: Context, n: number): Promise<void> {
  for (let i = 0; i < n; i++) await ctx.audit.record({ type: 'token.revoked', txn: `trade-${i}`, details: { i } });
  await sealNow(ctx, resolveMasterKey(ctx.config).key);
}

describe('clearance backup on SQLite', () => {
  test('copies the database while a server has it open, and a restore of the copy verifies against the checkpoint it holds', async (t) => {
    const dir = scratch(t, 'clearance-backup-');
    const env = { CLEARANCE_DATA_DIR: dir };
    const node = await runningNode(t, env);
    await work(node, 5);
    const file = join(scratch(t, 'clearance-backups-'), 'clearance-backup.db');

    const made = await cli(env, 'backup', '-o', file);
    assert.equal(made.code, 0, made.out);
    assert.match(made.out, /^backed up .*clearance\.db to .*clearance-backup\.db \(\d+ pages\); latest audit checkpoint: tree size \d+, root \S+ \(.*checkpoint\.json\)$/);
    assert.equal(statSync(file).mode & 0o777, 0o600, 'readable by its owner only');
    // The node goes on after the backup: the live log grows past what the copy holds.
    await work(node, 3);

    // The restore: the copy in place of clearance.db, beside the same master key.
    const restored = scratch(t, 'clearance-restore-');
    copyFileSync(file, join(restored, 'clearance.db'));
    copyFileSync(join(dir, 'master.key'), join(restored, 'master.key'));
    const verified = await cli({ CLEARANCE_DATA_DIR: restored }, 'audit', 'verify', '--checkpoint', `${file}.checkpoint.json`);
    assert.equal(verified.code, 0, verified.out);
    assert.match(verified.out, /^audit log intact/);

    // A restore older than a checkpoint published since is caught: the verification names what is missing.
    const live = join(dir, 'live-checkpoint.json');
    writeFileSync(live, JSON.stringify(await storedCheckpoint(node.storage.db)));
    const stale = await cli({ CLEARANCE_DATA_DIR: restored }, 'audit', 'verify', '--checkpoint', live);
    assert.equal(stale.code, 1, stale.out);
    assert.match(stale.out, /FAILED/);
  });

  test('refuses without -o, and never overwrites a file', async (t) => {
    const dir = scratch(t, 'clearance-backup-');
    const env = { CLEARANCE_DATA_DIR: dir };
    await runningNode(t, env);
    assert.equal((await cli(env, 'backup')).code, 2);
    const file = join(dir, 'exists.db');
    writeFileSync(file, 'keep me');
    const refused = await cli(env, 'backup', '-o', file);
    assert.equal(refused.code, 1);
    assert.match(refused.out, /exists/);
    const nothing = await cli({ CLEARANCE_DATA_DIR: scratch(t, 'clearance-empty-') }, 'backup', '-o', join(dir, 'new.db'));
    assert.equal(nothing.code, 1);
    assert.match(nothing.out, /no SQLite database/);
  });
});

describe('clearance backup on PostgreSQL', { skip: testDatabaseUrl ? false : 'TEST_DATABASE_URL is not set' }, () => {
  test('dumps the schema with pg_dump, and pg_restore into an empty database gives a log that verifies against the checkpoint', async (t) => {
    const schema = `test_backup_${randomBytes(6).toString('hex')}`;
    await adminQuery(testDatabaseUrl!, `create schema ${schema}`);
    t.after(() => adminQuery(testDatabaseUrl!, `drop schema if exists ${schema} cascade`));
    const url = new URL(testDatabaseUrl!);
    url.searchParams.set('options', `-c search_path=${schema}`);
    const dir = scratch(t, 'clearance-backup-');
    const masterKey = randomBytes(32).toString('hex');
    const env = { CLEARANCE_DATA_DIR: dir, DATABASE_URL: url.toString(), CLEARANCE_MASTER_KEY: masterKey };
    const node = await runningNode(t, env);
    await work(node, 5);

    const file = join(dir, 'clearance.dump');
    const made = await cli(env, 'backup', '-o', file);
    assert.equal(made.code, 0, made.out);
    assert.match(made.out, /^backed up the PostgreSQL database to .*clearance\.dump \(pg_dump, custom format\); it holds the audit checkpoint at tree size \d+/);
    await work(node, 2);

    // The restore, as an operator does it: an empty database, pg_restore, then the verification.
    const database = `restore_${randomBytes(6).toString('hex')}`;
    await adminQuery(testDatabaseUrl!, `create database ${database}`);
    t.after(() => adminQuery(testDatabaseUrl!, `drop database if exists ${database} with (force)`));
    const restoreUrl = new URL(url);
    restoreUrl.pathname = `/${database}`;
    const target = new URL(restoreUrl);
    target.searchParams.delete('options');
    const restored = spawnSync('pg_restore', ['--no-owner', '--dbname', target.href, file], { encoding: 'utf8' });
    assert.equal(restored.status, 0, restored.stderr);
    const verified = await cli({ ...env, DATABASE_URL: restoreUrl.toString() }, 'audit', 'verify', '--checkpoint', `${file}.checkpoint.json`);
    assert.equal(verified.code, 0, verified.out);
    assert.match(verified.out, /^audit log intact/);
  });
});
