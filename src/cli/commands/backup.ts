import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { backup, DatabaseSync } from 'node:sqlite';
import { storedCheckpoint } from '../../audit/proofs.ts';
import type { Config } from '../../config.ts';
import { openStorage } from '../../storage/database.ts';
import { exit, type Output } from '../output.ts';
import type { Rule } from '../usage.ts';

export const backupHelp = `Usage: clearance backup -o FILE

Backs up the database while the server runs, and writes FILE.checkpoint.json: the latest signed
audit checkpoint the backup holds (none while the log has no checkpoint). -o, --output FILE is
required and must not exist: a backup never overwrites (exit 1). Both files are readable by their
owner only.
  SQLite      FILE is a copy of the database file (SQLite's online backup: one consistent moment,
              other processes writing meanwhile). Restore: stop Clearance, put FILE in place of
              <CLEARANCE_DATA_DIR>/clearance.db.
  PostgreSQL  FILE is a pg_dump archive (custom format; pg_dump must be on the PATH). Restore with
              pg_restore into an empty database (docs/operations.md "Backups and restore").
Verify a restore before you trust it, on the restored database:
  clearance audit verify --checkpoint FILE.checkpoint.json
(intact, and holding everything up to that checkpoint). The master key is not in the backup:
keep it apart, in your secret store; one without the other is useless.`;

/** What `backup` takes (src/cli/usage.ts). */
export const backupUsage = { options: ['output'], args: [] } as const satisfies Rule;

/** `clearance backup -o FILE` (SQLite). */
export async function backupCommand(config: Config, args: { output: string | undefined }, output: Output): Promise<number> {
  if (!args.output) {
    output.err(backupHelp);
    return exit.usage;
  }
  if (existsSync(args.output)) {
    output.err(`${args.output} exists: choose a new file (a backup never overwrites)`);
    return exit.failed;
  }
  if (config.databaseUrl) return backupPostgres(config.databaseUrl, args.output, output);
  // The file the server writes (src/storage/database.ts), not opened as a store: nothing is created.
  const file = join(config.dataDir, 'clearance.db');
  if (!existsSync(file)) {
    output.err(`no SQLite database at ${file}`);
    return exit.failed;
  }
  let source: DatabaseSync | undefined;
  try {
    source = new DatabaseSync(file, { readOnly: true });
    const pages = await backup(source, args.output);
    // Personal data, secrets' digests and sealed keys: readable by the owner only, as the database.
    chmodSync(args.output, 0o600);
    source.close();
    source = undefined;
    // What the copy holds, read from the copy itself: the checkpoint a restore must reach.
    const copy = openStorage({ sqlitePath: args.output });
    try {
      const checkpoint = await storedCheckpoint(copy.db);
      if (checkpoint) writeFileSync(`${args.output}.checkpoint.json`, `${JSON.stringify(checkpoint, null, 2)}\n`, { mode: 0o600 });
      output.out(
        `backed up ${file} to ${args.output} (${pages} pages)` +
          (checkpoint ? `; latest audit checkpoint: tree size ${checkpoint.treeSize}, root ${checkpoint.rootHash} (${args.output}.checkpoint.json)` : '; the audit log has no checkpoint yet'),
      );
    } finally {
      await copy.close();
    }
    return exit.ok;
  } finally {
    source?.close();
  }
}

/**
 * PostgreSQL: the checkpoint is read first, then pg_dump takes its snapshot: the dump holds at
 * least that checkpoint (the log only grows), so verifying a restore against it is sound.
 */
async function backupPostgres(url: string, file: string, output: Output): Promise<number> {
  const storage = openStorage({ databaseUrl: url, statementTimeoutMs: 0 });
  let checkpoint;
  try {
    checkpoint = await storedCheckpoint(storage.db);
  } finally {
    await storage.close();
  }
  // The password goes to pg_dump in its environment, not on its command line (visible to `ps`);
  // a search_path in the URL's options (a schema of Clearance's own) is the schema dumped.
  const target = new URL(url);
  const password = decodeURIComponent(target.password);
  target.password = '';
  const schema = /search_path=([A-Za-z_][A-Za-z0-9_]*)/.exec(target.searchParams.get('options') ?? '')?.[1];
  // libpq reads `%20`, not the `+` URLSearchParams writes for a space (a real `+` is `%2B`).
  const connection = target.href.replace(/\+/g, '%20');
  const dumped = spawnSync('pg_dump', ['--format=custom', '--no-owner', ...(schema ? [`--schema=${schema}`] : []), '--file', file, connection], {
    encoding: 'utf8',
    env: { ...process.env, ...(password ? { PGPASSWORD: password } : {}) },
  });
  if (dumped.error || dumped.status !== 0) {
    output.err(`pg_dump failed: ${dumped.error?.message ?? dumped.stderr.trim()}`);
    return exit.failed;
  }
  chmodSync(file, 0o600);
  if (checkpoint) writeFileSync(`${file}.checkpoint.json`, `${JSON.stringify(checkpoint, null, 2)}\n`, { mode: 0o600 });
  output.out(`backed up the PostgreSQL database to ${file} (pg_dump, custom format)` + (checkpoint ? `; it holds the audit checkpoint at tree size ${checkpoint.treeSize}, root ${checkpoint.rootHash} (${file}.checkpoint.json)` : '; the audit log has no checkpoint yet'));
  return exit.ok;
}
