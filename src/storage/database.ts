import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import {
  Kysely,
  Migrator,
  PostgresDialect,
  PostgresIntrospector,
  SqliteAdapter,
  SqliteDialect,
  sql,
  type DatabaseIntrospector,
  type DialectAdapter,
  type LogEvent,
  type MigrationResultSet,
  type TableMetadata,
} from 'kysely';
import pg from 'pg';
import { openNodeSqlite } from './node-sqlite-driver.ts';
import { migrations } from './migrations/index.ts';
import type { Database } from './schema.ts';
import type { Config } from '../config.ts';

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
  /** SQLite durability: 'normal' (default; survives process crashes) or 'full' (also power loss). */
  sqliteSynchronous?: 'full' | 'normal';
  /** PostgreSQL schema to use (tests run each suite in a fresh one). */
  pgSchema?: string;
  poolSize?: number;
  /** Called with each statement's SQL as it runs (benchmarks count database round trips with it). */
  onQuery?: (sql: string) => void;
}

/** The storage options a configuration asks for. */
export function storageOptionsFor(config: Pick<Config, 'databaseUrl' | 'dataDir' | 'sqliteSynchronous'>): StorageOptions {
  return { databaseUrl: config.databaseUrl, dataDir: config.dataDir, sqliteSynchronous: config.sqliteSynchronous };
}

/** Opens the configured database. Does not migrate: call `migrate` (the server does on start). */
export function openStorage(options: StorageOptions): Storage {
  if (options.databaseUrl) return openPostgres(options.databaseUrl, options);
  const path = options.sqlitePath ?? join(ensureDir(options.dataDir ?? './data'), 'clearance.db');
  const database = openNodeSqlite(path, { synchronous: options.sqliteSynchronous ?? 'normal' });
  const db = new Kysely<Database>({ dialect: new TransactionalSqliteDialect({ database }), ...queryLog(options) });
  return { db, dialect: 'sqlite', location: `sqlite:${path}`, close: () => db.destroy() };
}

/**
 * SQLite runs DDL inside transactions, but Kysely's SQLite adapter says it does not, so its
 * migrator would run each migration outside any transaction and without a lock: two processes
 * migrating at once (server and CLI) would both create the tables and one would fail, and a crash
 * mid-migration would leave half a schema. Declared transactional, the migrator reads its state
 * and applies the pending migrations in one transaction, which our driver opens with BEGIN
 * IMMEDIATE: the second migrator waits for the first, then finds nothing left to do.
 */
class TransactionalSqliteAdapter extends SqliteAdapter {
  override get supportsTransactionalDdl(): boolean {
    return true;
  }
}

class TransactionalSqliteDialect extends SqliteDialect {
  override createAdapter(): DialectAdapter {
    return new TransactionalSqliteAdapter();
  }
}

/**
 * Kysely's migrator asks the introspector whether its tables exist. The stock PostgreSQL
 * introspector reads every table of every schema and resolves each schema by name as it goes, so
 * a schema or table that any other session drops meanwhile fails `migrate` ("schema ... does not
 * exist"), on a database shared with other applications or tenants. Clearance's tables and the
 * migrator's live in the connection's current schema: look only there (names only, no columns).
 */
class CurrentSchemaIntrospector extends PostgresIntrospector {
  readonly #db: Kysely<unknown>;
  constructor(db: Kysely<unknown>) {
    super(db);
    this.#db = db;
  }
  override async getTables(): Promise<TableMetadata[]> {
    const { rows } = await sql<{ name: string; schema: string; kind: string }>`
      select c.relname as name, n.nspname as schema, c.relkind as kind
      from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
      where n.nspname = current_schema() and c.relkind in ('r', 'v', 'p')`.execute(this.#db);
    return rows.map((row) => ({ name: row.name, schema: row.schema, isView: row.kind === 'v', columns: [] }));
  }
}

class CurrentSchemaPostgresDialect extends PostgresDialect {
  override createIntrospector(db: Kysely<unknown>): DatabaseIntrospector {
    return new CurrentSchemaIntrospector(db);
  }
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
  const db = new Kysely<Database>({ dialect: new CurrentSchemaPostgresDialect({ pool }), ...queryLog(options) });
  const host = safeHost(url);
  return { db, dialect: 'postgres', location: `postgres:${host}`, close: () => db.destroy() };
}

function queryLog(options: StorageOptions): { log?: (event: LogEvent) => void } {
  const onQuery = options.onQuery;
  return onQuery ? { log: (event) => onQuery(event.query.sql) } : {};
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
