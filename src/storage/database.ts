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
import { DatabaseUnavailableError } from './faults.ts';
import { openNodeSqlite } from './node-sqlite-driver.ts';
import { migrations } from './migrations/index.ts';
import type { Database } from './schema.ts';
import { databaseTimeoutDefaults, type Config } from '../config.ts';

export type Dialect = 'sqlite' | 'postgres';

/** The database handle every component receives. */
export interface Storage {
  db: Kysely<Database>;
  dialect: Dialect;
  /** A human description of where the data lives (no credentials). */
  location: string;
  /**
   * Runs `work` without the statement timeout, on a connection of its own (PostgreSQL) or the
   * same handle (SQLite): for migrations, which may rebuild large tables.
   */
  unbounded<T>(work: (db: Kysely<Database>) => Promise<T>): Promise<T>;
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
  /**
   * PostgreSQL: the server cancels a statement running longer than this (ms; 0 = never), and this
   * process drops a connection that has not answered a moment after it (docs/operations.md).
   */
  statementTimeoutMs?: number;
  /** PostgreSQL: longest wait for a pooled connection, or to open a new one (ms). */
  acquireTimeoutMs?: number;
  /** SQLite: longest wait for another connection's write lock before "database is locked" (ms). */
  busyTimeoutMs?: number;
  /** PostgreSQL application_name, shown in pg_stat_activity (default `clearance`). */
  applicationName?: string;
  /** Told about each PostgreSQL connection lost or given up (logged by the caller). */
  onConnectionError?: (error: Error) => void;
  /** Called with each statement's SQL as it runs (benchmarks count database round trips with it). */
  onQuery?: (sql: string) => void;
}

/**
 * How long after the statement timeout this process stops waiting for the server's own
 * cancellation and drops the connection: the server (or the network to it) is not answering.
 */
const unansweredGraceMs = 1000;

/** The storage options a configuration asks for. */
export function storageOptionsFor(
  config: Pick<Config, 'databaseUrl' | 'dataDir' | 'sqliteSynchronous' | 'dbStatementTimeoutMs' | 'dbAcquireTimeoutMs' | 'dbPoolSize' | 'sqliteBusyTimeoutMs'>,
): StorageOptions {
  return {
    databaseUrl: config.databaseUrl,
    dataDir: config.dataDir,
    sqliteSynchronous: config.sqliteSynchronous,
    statementTimeoutMs: config.dbStatementTimeoutMs,
    acquireTimeoutMs: config.dbAcquireTimeoutMs,
    poolSize: config.dbPoolSize,
    busyTimeoutMs: config.sqliteBusyTimeoutMs,
  };
}

/** Opens the configured database. Does not migrate: call `migrate` (the server does on start). */
export function openStorage(options: StorageOptions): Storage {
  if (options.databaseUrl) return openPostgres(options.databaseUrl, options);
  const path = options.sqlitePath ?? join(ensureDir(options.dataDir ?? './data'), 'clearance.db');
  const database = openNodeSqlite(path, {
    synchronous: options.sqliteSynchronous ?? 'normal',
    busyTimeoutMs: options.busyTimeoutMs ?? databaseTimeoutDefaults.sqliteBusyMs,
  });
  const db = new Kysely<Database>({ dialect: new TransactionalSqliteDialect({ database }), ...queryLog(options) });
  return { db, dialect: 'sqlite', location: `sqlite:${path}`, unbounded: (work) => work(db), close: () => db.destroy() };
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
  const statementTimeoutMs = options.statementTimeoutMs ?? databaseTimeoutDefaults.statementMs;
  const db = new Kysely<Database>({ dialect: new CurrentSchemaPostgresDialect({ pool: postgresPool(url, options, statementTimeoutMs) }), ...queryLog(options) });
  const host = safeHost(url);
  return {
    db,
    dialect: 'postgres',
    location: `postgres:${host}`,
    async unbounded(work) {
      if (statementTimeoutMs === 0) return work(db);
      const own = new Kysely<Database>({ dialect: new CurrentSchemaPostgresDialect({ pool: postgresPool(url, { ...options, poolSize: 1 }, 0) }), ...queryLog(options) });
      try {
        return await work(own);
      } finally {
        await own.destroy();
      }
    },
    close: () => db.destroy(),
  };
}

/**
 * A pool whose connections cannot take the process down and cannot hang it (issue 20):
 * - every connection, idle or checked out (the audit sealer holds one for as long as it seals),
 *   has an 'error' listener: a connection the server terminates or a proxy resets makes its
 *   queries fail and leaves the pool, where an unhandled 'error' event would exit the process;
 * - the server cancels statements after `statement_timeout` (a startup parameter: no round trip
 *   per request), and a connection that has not answered `unansweredGraceMs` after that is
 *   destroyed, so a database that stops answering fails queries instead of hanging them;
 * - waiting for a connection, or opening one, gives up after the acquire timeout.
 * Each of these errors is recognised by `isDatabaseUnavailable` (a 503 over HTTP).
 */
function postgresPool(url: string, options: StorageOptions, statementTimeoutMs: number): pg.Pool {
  const pool = new pg.Pool({
    connectionString: url,
    max: options.poolSize ?? 10,
    connectionTimeoutMillis: options.acquireTimeoutMs ?? databaseTimeoutDefaults.acquireMs,
    application_name: options.applicationName ?? 'clearance',
    ...(statementTimeoutMs > 0 ? { statement_timeout: statementTimeoutMs } : {}),
    // A peer that vanished without a reset (a failed-over host) is noticed by TCP, not only by a query.
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
    // bigint columns hold epoch milliseconds and counters, all well inside 2^53.
    types: { getTypeParser: (oid: number, format?: string) => (oid === 20 ? Number : pg.types.getTypeParser(oid, format as 'text')) },
    ...(options.pgSchema ? { options: `-c search_path=${options.pgSchema}` } : {}),
  });
  const onError = (error: Error) => options.onConnectionError?.(error);
  // An idle client that loses its connection: the pool has already removed it.
  pool.on('error', onError);
  pool.on('connect', (client) => {
    // A checked-out client has no listener of the pool's: without this one its 'error' would be
    // unhandled. Its queries fail with the error; pg-pool drops it when it is released.
    client.on('error', onError);
    if (statementTimeoutMs > 0) guardQueries(client, statementTimeoutMs + unansweredGraceMs);
  });
  return pool;
}

/**
 * Makes every query of `client` fail with DatabaseUnavailableError when no answer came within
 * `deadlineMs`, and destroys the connection: its state is unknown (the statement may still run,
 * or the answer may still come), so it is never reused. The deadline only matters when the server
 * does not answer at all; a slow statement is cancelled by the server's statement_timeout first.
 */
function guardQueries(client: pg.PoolClient, deadlineMs: number): void {
  const query = client.query as (...args: unknown[]) => unknown;
  (client as { query: unknown }).query = function guardedQuery(this: pg.PoolClient, ...args: unknown[]): unknown {
    const result = query.apply(this, args);
    if (!(result instanceof Promise)) return result; // callback style: not used by Kysely
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const error = new DatabaseUnavailableError(`the database did not answer within ${deadlineMs} ms`);
        // pg marks the client unusable and fails its queued queries; the pool drops it on release.
        (this as unknown as { connection: { stream: { destroy(error?: Error): void } } }).connection.stream.destroy(error);
        reject(error);
      }, deadlineMs);
    });
    result.catch(() => undefined); // settled by the race below, or abandoned after the deadline
    return Promise.race([result, deadline]).finally(() => clearTimeout(timer));
  };
}

function queryLog(options: StorageOptions): { log?: (event: LogEvent) => void } {
  const onQuery = options.onQuery;
  return onQuery ? { log: (event) => onQuery(event.query.sql) } : {};
}

/** Applies every pending migration; safe to run from several processes at once. */
export async function migrate(storage: Storage): Promise<MigrationResultSet> {
  // Without the statement timeout: a migration may rebuild a large table.
  const result = await storage.unbounded((db) => new Migrator({ db, provider: { getMigrations: async () => migrations } }).migrateToLatest());
  if (result.error) throw result.error;
  return result;
}

/**
 * True when the database answers a trivial query within `timeoutMs` (readiness: a database that
 * does not answer is not ready, however long it would take to say so).
 */
export async function ping(storage: Storage, timeoutMs = 1000): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const answered = sql`select 1`.execute(storage.db).then(
    () => true,
    () => false,
  );
  const late = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)));
  try {
    return await Promise.race([answered, late]);
  } finally {
    clearTimeout(timer);
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
