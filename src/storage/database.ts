import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import {
  CompiledQuery,
  Kysely,
  Migrator,
  PostgresDialect,
  PostgresIntrospector,
  SqliteAdapter,
  SqliteDialect,
  SqliteDriver,
  sql,
  type DatabaseConnection,
  type Driver,
  type SqliteDialectConfig,
  type DatabaseIntrospector,
  type DialectAdapter,
  type LogEvent,
  type MigrationResultSet,
  type TableMetadata,
} from 'kysely';
import { registerReadNow } from './fixed-query.ts';
import { Flight, landerFor } from './flight.ts';
import { isSqliteBusy, openNodeSqlite } from './node-sqlite-driver.ts';
import { attachNotices, PostgresChangeListener } from './notices.ts';
import { postgresPool, type PostgresPoolOptions } from './postgres-pool.ts';
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
  /**
   * A new flight: statements sent together and answered together, one round trip on PostgreSQL
   * (flight.ts). Send it with `send()` (independent reads) or `commit()` (one transaction).
   */
  flight(): Flight;
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
  /**
   * PostgreSQL: send the hot path's repeated statements as named statements, prepared once per
   * connection (./prepared.ts; default true). Off behind a pooler that cannot carry them (PgBouncer
   * in transaction mode before 1.21, or without `max_prepared_statements`).
   */
  preparedStatements?: boolean;
  /** SQLite: longest wait for another connection's write lock before "database is locked" (ms). */
  busyTimeoutMs?: number;
  /** PostgreSQL application_name, shown in pg_stat_activity (default `clearance`). */
  applicationName?: string;
  /** Told about each PostgreSQL connection lost or given up (logged by the caller). */
  onConnectionError?: (error: Error) => void;
  /** Told when PostgreSQL stops answering (true: requests are refused at once) and answers again (false). */
  onOutage?: (down: boolean) => void;
  /**
   * Called with each statement's SQL (BEGIN and COMMIT too), and whether it started a round trip
   * of its own: on PostgreSQL, whether its connection was waiting for no other answer when the
   * statement was written (the connections pipeline, so a statement sent behind others shares
   * their round trip); on SQLite (no network), whether it was not a later statement of a flight.
   * Benchmarks count database round trips with it.
   */
  onQuery?: (sql: string, roundTrip: boolean) => void;
  /**
   * PostgreSQL: listen for change notices on a connection of its own (./notices.ts), so caches see
   * another node's change at once rather than at their next poll. For servers, not one-shot commands.
   */
  listenForChanges?: boolean;
  /** Told when change notices start to arrive (true) and when they stop (false: caches poll every second). */
  onListening?: (listening: boolean) => void;
}

/** The storage options a configuration asks for. */
export function storageOptionsFor(
  config: Pick<Config, 'databaseUrl' | 'dataDir' | 'sqliteSynchronous' | 'dbStatementTimeoutMs' | 'dbAcquireTimeoutMs' | 'dbPoolSize' | 'dbPreparedStatements' | 'sqliteBusyTimeoutMs'>,
): StorageOptions {
  return {
    databaseUrl: config.databaseUrl,
    dataDir: config.dataDir,
    sqliteSynchronous: config.sqliteSynchronous,
    statementTimeoutMs: config.dbStatementTimeoutMs,
    acquireTimeoutMs: config.dbAcquireTimeoutMs,
    poolSize: config.dbPoolSize,
    preparedStatements: config.dbPreparedStatements,
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
  const busyTimeoutMs = options.busyTimeoutMs ?? databaseTimeoutDefaults.sqliteBusyMs;
  // A flight's later statements are not round trips of their own (onQuery).
  const flying = { now: false, counted: false };
  const onQuery = options.onQuery;
  const log = onQuery
    ? {
        log: (event: LogEvent) => {
          onQuery(event.query.sql, !(flying.now && flying.counted));
          if (flying.now) flying.counted = true;
        },
      }
    : {};
  const db = new Kysely<Database>({ dialect: new TransactionalSqliteDialect({ database }, busyTimeoutMs), ...log });
  // A read outside any transaction runs at once, as Kysely would run it (it queues a statement
  // only behind a transaction: nothing else holds the connection across an await), and is told to
  // `onQuery` as Kysely tells its own. Inside a transaction it waits its turn through Kysely, so it
  // never reads a transaction's uncommitted rows.
  registerReadNow(db, (text, parameters) => {
    if (database.raw.isTransaction || !database.raw.isOpen) return undefined;
    onQuery?.(text, true);
    return database.prepare(text).all(parameters);
  });
  const land = landerFor(db, 'sqlite', { begin: (connection) => beginPatiently(connection, busyTimeoutMs), start: () => Object.assign(flying, { now: true, counted: false }), end: () => (flying.now = false) });
  return {
    db,
    dialect: 'sqlite',
    location: `sqlite:${path}`,
    unbounded: (work) => work(db),
    flight: () => new Flight('sqlite', land),
    close: () => db.destroy(),
  };
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
  readonly #config: SqliteDialectConfig;
  readonly #busyTimeoutMs: number;
  constructor(config: SqliteDialectConfig, busyTimeoutMs: number) {
    super(config);
    this.#config = config;
    this.#busyTimeoutMs = busyTimeoutMs;
  }
  override createAdapter(): DialectAdapter {
    return new TransactionalSqliteAdapter();
  }
  override createDriver(): Driver {
    return new PatientSqliteDriver(this.#config, this.#busyTimeoutMs);
  }
}

/**
 * Kysely's SQLite driver, waiting for the write lock without blocking the event loop: our BEGIN
 * fails at once with SQLITE_BUSY while another process writes (node-sqlite-driver.ts), and is
 * tried again after 1, 2, 4, 5, 5 … ms, the event loop serving other requests meanwhile, until
 * `busyTimeoutMs` has passed; then the BUSY error stands (503 over HTTP), as with the busy timeout.
 * Other statements of this process wait meanwhile: the connection is held from BEGIN on.
 */
class PatientSqliteDriver extends SqliteDriver {
  readonly #busyTimeoutMs: number;
  constructor(config: SqliteDialectConfig, busyTimeoutMs: number) {
    super(config);
    this.#busyTimeoutMs = busyTimeoutMs;
  }
  override async beginTransaction(connection: DatabaseConnection): Promise<void> {
    await beginPatiently(connection, this.#busyTimeoutMs);
  }
}

/**
 * BEGIN (IMMEDIATE, node-sqlite-driver.ts) on SQLite, tried again after 1, 2, 4, 5, 5 … ms while
 * another process holds the write lock, the event loop serving meanwhile, until `busyTimeoutMs`
 * has passed; then the BUSY error stands (503). Kysely's transactions and flights both begin so.
 */
export async function beginPatiently(connection: DatabaseConnection, busyTimeoutMs: number): Promise<void> {
  const deadline = performance.now() + busyTimeoutMs;
  for (let pause = 1; ; pause = Math.min(pause * 2, 5)) {
    try {
      await connection.executeQuery(CompiledQuery.raw('begin'));
      return;
    } catch (error) {
      if (!isSqliteBusy(error) || performance.now() >= deadline) throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, Math.min(pause, deadline - performance.now()))));
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
  const pool = (overrides: Partial<PostgresPoolOptions>) =>
    postgresPool({
      url,
      poolSize: options.poolSize ?? 10,
      acquireTimeoutMs: options.acquireTimeoutMs ?? databaseTimeoutDefaults.acquireMs,
      statementTimeoutMs,
      applicationName: options.applicationName ?? 'clearance',
      pgSchema: options.pgSchema,
      onConnectionError: options.onConnectionError,
      onOutage: options.onOutage,
      onStatement: options.onQuery,
      prepare: options.preparedStatements ?? true,
      ...overrides,
    });
  const db = new Kysely<Database>({ dialect: new CurrentSchemaPostgresDialect({ pool: pool({}) }) });
  const listener = options.listenForChanges
    ? new PostgresChangeListener({
        url,
        pgSchema: options.pgSchema,
        applicationName: `${options.applicationName ?? 'clearance'}-notices`,
        onConnectionError: options.onConnectionError,
        onListening: options.onListening,
      })
    : undefined;
  if (listener) attachNotices(db, listener);
  const host = safeHost(url);
  const land = landerFor(db, 'postgres');
  return {
    db,
    dialect: 'postgres',
    location: `postgres:${host}`,
    flight: () => new Flight('postgres', land),
    async unbounded(work) {
      if (statementTimeoutMs === 0) return work(db);
      const own = new Kysely<Database>({ dialect: new CurrentSchemaPostgresDialect({ pool: pool({ poolSize: 1, statementTimeoutMs: 0 }) }) });
      try {
        return await work(own);
      } finally {
        await own.destroy();
      }
    },
    async close() {
      await listener?.close();
      await db.destroy();
    },
  };
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
export async function ping(storage: Storage, timeoutMs: number = databaseTimeoutDefaults.readyMs): Promise<boolean> {
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
