/**
 * Databases and contexts for tests, on every dialect.
 *
 * Storage contract tests — one suite, every dialect (SQLite always; PostgreSQL too when
 * TEST_DATABASE_URL is set, each database a fresh randomly named schema, dropped afterwards):
 *
 *   import { testDialects } from './storage.ts';
 *
 *   for (const dialect of testDialects()) {
 *     describe(`the client store on ${dialect.name}`, () => {
 *       test('round trips a client', async (t) => {
 *         const database = await dialect.create(t);   // empty, not migrated; dropped after the test
 *         await migrate(database.storage);
 *         const other = database.connect();           // a second handle: another "process"
 *         ...
 *       });
 *     });
 *   }
 *
 * Everything else — a full Context, as the server builds it (migrated, with a signing key, the
 * built-in resource servers, and whatever components openContext wires), on a temp data dir with a
 * ManualClock and a silent logger:
 *
 *   import { testContext } from './storage.ts';
 *
 *   test('issues a token', async (t) => {
 *     const { ctx, clock } = await testContext({ t });               // cleaned up after the test
 *     const app = buildApp(ctx);
 *     clock.advance(60_000);
 *     ...
 *   });
 *
 * Options: `env` (extra environment for loadConfig, e.g. { CLEARANCE_SIGNING_ALG: 'EdDSA' }),
 * `dialect` (one of testDialects(); default SQLite), `clock`, `log`. Without `t`, call
 * `cleanup()` yourself (e.g. in an `after` hook when a suite shares one context).
 *
 * Run the PostgreSQL half with: TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test npm test
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { Migrator } from 'kysely';
import pg from 'pg';
import type { Logger } from 'pino';
import { riskEngineOff } from './risk.ts';
import { ManualClock } from '../../src/clock.ts';
import { loadConfig, type Config } from '../../src/config.ts';
import type { Context } from '../../src/context.ts';
import { createLogger } from '../../src/log.ts';
import { openContext } from '../../src/server.ts';
import { openStorage, type Dialect, type Storage, type StorageOptions } from '../../src/storage/database.ts';
import { migrations } from '../../src/storage/migrations/index.ts';

/** A dialect the suites run on; `create` makes a new, empty database for one test or suite. */
export interface TestDialect {
  name: Dialect;
  /** A fresh empty database (not migrated). With `t`, it is removed when the test ends. */
  create(t?: Pick<TestContext, 'after'>): Promise<TestDatabase>;
}

/** One isolated database and the handles opened on it. */
export interface TestDatabase {
  dialect: Dialect;
  /** The first handle, opened by `create`. */
  storage: Storage;
  /** What `openStorage` needs to open this database (a worker thread or child process can use it too). */
  options: StorageOptions;
  /** Opens another handle on the same database, as a second process would. Closed by `cleanup`. */
  connect(): Storage;
  /** Closes every handle (closing twice is fine) and removes the database. */
  cleanup(): Promise<void>;
}

/** The PostgreSQL server to test against, if any. */
export const testDatabaseUrl: string | undefined = process.env.TEST_DATABASE_URL || undefined;

const sqlite: TestDialect = {
  name: 'sqlite',
  async create(t) {
    const dir = mkdtempSync(join(tmpdir(), 'clearance-test-db-'));
    const options: StorageOptions = { dataDir: dir };
    const database = trackHandles('sqlite', options, async () => rmSync(dir, { recursive: true, force: true }));
    t?.after(() => database.cleanup());
    return database;
  },
};

function postgres(url: string): TestDialect {
  return {
    name: 'postgres',
    async create(t) {
      // Random, so concurrent test files and concurrent runs never share tables.
      const schema = `test_${randomBytes(8).toString('hex')}`;
      await adminQuery(url, `create schema ${schema}`);
      const options: StorageOptions = { databaseUrl: url, pgSchema: schema, poolSize: 4 };
      const database = trackHandles('postgres', options, () => adminQuery(url, `drop schema if exists ${schema} cascade`));
      t?.after(() => database.cleanup());
      return database;
    },
  };
}

/** SQLite always; PostgreSQL as well when TEST_DATABASE_URL is set. */
export function testDialects(): TestDialect[] {
  return testDatabaseUrl ? [sqlite, postgres(testDatabaseUrl)] : [sqlite];
}

function trackHandles(dialect: Dialect, options: StorageOptions, drop: () => Promise<void>): TestDatabase {
  const handles: Storage[] = [];
  const connect = (): Storage => {
    const storage = closeOnce(openStorage(options));
    handles.push(storage);
    return storage;
  };
  let cleaned: Promise<void> | undefined;
  return {
    dialect,
    options,
    storage: connect(),
    connect,
    cleanup: () =>
      (cleaned ??= (async () => {
        await Promise.all(handles.map((h) => h.close()));
        await drop();
      })()),
  };
}

/** A storage whose `close` may be called again (tests close on purpose, then clean up). */
function closeOnce(storage: Storage): Storage {
  let closing: Promise<void> | undefined;
  return { ...storage, close: () => (closing ??= storage.close()) };
}

/** One statement on a fresh PostgreSQL connection (create or drop a test's or benchmark's own schema). */
export async function adminQuery(url: string, text: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
}

export interface TestContextOptions {
  /** Registers `cleanup` to run when this test ends. */
  t?: Pick<TestContext, 'after'>;
  /** Environment for loadConfig, on top of a temp CLEARANCE_DATA_DIR (which it may override). */
  env?: NodeJS.ProcessEnv;
  /** Which database; default SQLite. */
  dialect?: TestDialect;
  clock?: ManualClock;
  /** Default: silent. Pass `createLogger('info', stream)` to capture log lines. */
  log?: Logger;
  /**
   * The risk engine (src/risk): `on` by default, with the settings the Context was built with
   * (apply's `risk` section); `off` switches it off, for a test of sign-ins or admin changes that is
   * not about risk and must not depend on the hour the suite runs at (off_hours, admin_off_hours)
   * or on what its earlier requests taught the signals. A risk test may set its own settings
   * (test/risk/fixture.ts useRiskSettings).
   */
  risk?: 'on' | 'off';
}

export interface TestServerContext {
  ctx: Context;
  config: Config;
  clock: ManualClock;
  database: TestDatabase;
  /** The temp data directory (development master key, anything written to disk). */
  dataDir: string;
  cleanup(): Promise<void>;
}

/** A full Context as `openContext` builds it for the server, isolated in temp storage. */
export async function testContext(options: TestContextOptions = {}): Promise<TestServerContext> {
  const dataDir = mkdtempSync(join(tmpdir(), 'clearance-test-data-'));
  const removeDataDir = () => rmSync(dataDir, { recursive: true, force: true });
  let database: TestDatabase | undefined;
  try {
    const config = loadConfig({ CLEARANCE_DATA_DIR: dataDir, ...options.env });
    const clock = options.clock ?? new ManualClock();
    database = await (options.dialect ?? sqlite).create();
    const ctx = await openContext(config, { clock, log: options.log ?? createLogger('silent'), storage: database.storage });
    if (options.risk === 'off') ctx.risk.settings = riskEngineOff;
    const db = database;
    let cleaned: Promise<void> | undefined;
    const cleanup = () =>
      (cleaned ??= (async () => {
        // Components with a write queue (the activity counter, the audit recorder) finish writing before the database closes.
        await ctx.risk.activity.close();
        await (ctx.audit as { close?: () => Promise<void> } | undefined)?.close?.();
        await db.cleanup();
        removeDataDir();
      })());
    options.t?.after(cleanup);
    return { ctx, config, clock, database, dataDir, cleanup };
  } catch (error) {
    await database?.cleanup();
    removeDataDir();
    throw error;
  }
}

/**
 * Migrates `storage` up to the migration just before `name`, for a test of what `name` does to the
 * rows an earlier schema held. As `migrate` does, without the statement timeout: PostgreSQL's
 * migration lock is one for the whole database, and another test's migration (another schema) may
 * hold it for a while.
 */
export async function migrateToBefore(storage: Storage, name: string): Promise<void> {
  const names = Object.keys(migrations);
  const before = names[names.indexOf(name) - 1];
  if (names.indexOf(name) < 1 || before === undefined) throw new Error(`no migration before ${name}`);
  const result = await storage.unbounded((db) => new Migrator({ db, provider: { getMigrations: async () => migrations } }).migrateTo(before));
  if (result.error) throw result.error;
}
