import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Kysely, Migrator, PostgresDialect, SqliteDialect, sql, type MigrationResultSet } from 'kysely';
import pg from 'pg';
import { openNodeSqlite } from './node-sqlite-driver.ts';
import { migrations } from './migrations/index.ts';
import type { Database } from './schema.ts';

export type Dialect = 'sqlite' | 'postgres';

/** The database handle every component receives. */
export interface Storage {
  db: Kysely<Database>;
  dialect: Dialect;
  /** A human description of where the data lives (no credentials). */
  location: string;
  close(): Promise<void>;
}

export interface StorageOptions {
  /** PostgreSQL connection string; when absent, SQLite under `dataDir`. */
  databaseUrl?: string | undefined;
  dataDir?: string;
  /** SQLite file path (overrides dataDir), or ':memory:'. */
  sqlitePath?: string;
  /** PostgreSQL schema to use (tests run each suite in a fresh one). */
  pgSchema?: string;
  poolSize?: number;
}

/** Opens the configured database. Does not migrate: call `migrate` (the server does on start). */
export function openStorage(options: StorageOptions): Storage {
  if (options.databaseUrl) return openPostgres(options.databaseUrl, options);
  const path = options.sqlitePath ?? join(ensureDir(options.dataDir ?? './data'), 'clearance.db');
  const database = openNodeSqlite(path);
  const db = new Kysely<Database>({ dialect: new SqliteDialect({ database }) });
  return { db, dialect: 'sqlite', location: `sqlite:${path}`, close: () => db.destroy() };
}

function openPostgres(url: string, options: StorageOptions): Storage {
  const pool = new pg.Pool({
    connectionString: url,
    max: options.poolSize ?? 10,
    // bigint columns hold epoch milliseconds and counters, all well inside 2^53.
    types: { getTypeParser: (oid: number, format?: string) => (oid === 20 ? Number : pg.types.getTypeParser(oid, format as 'text')) },
    ...(options.pgSchema ? { options: `-c search_path=${options.pgSchema}` } : {}),
  });
  // An idle client that loses its connection emits 'error'; without a listener it would crash the process.
  pool.on('error', () => {});
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  const host = safeHost(url);
  return { db, dialect: 'postgres', location: `postgres:${host}`, close: () => db.destroy() };
}

/** Applies every pending migration; safe to run from several processes at once. */
export async function migrate(storage: Storage): Promise<MigrationResultSet> {
  const migrator = new Migrator({
    db: storage.db,
    provider: { getMigrations: async () => migrations },
  });
  const result = await migrator.migrateToLatest();
  if (result.error) throw result.error;
  return result;
}

/** True when the database answers a trivial query. */
export async function ping(storage: Storage): Promise<boolean> {
  try {
    await sql`select 1`.execute(storage.db);
    return true;
  } catch {
    return false;
  }
}

function ensureDir(dir: string): string {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return dir;
}

function safeHost(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.hostname}:${parsed.port || 5432}${parsed.pathname}`;
  } catch {
    return 'postgres';
  }
}
