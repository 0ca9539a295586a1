import { DatabaseSync, type StatementSync } from 'node:sqlite';
import type { SqliteDatabase, SqliteStatement } from 'kysely';

/**
 * Adapts Node's built-in `node:sqlite` DatabaseSync to the interface Kysely's SqliteDialect
 * expects (the better-sqlite3 shape), so no native addon is needed.
 */
export function openNodeSqlite(path: string): SqliteDatabase & { raw: DatabaseSync } {
  const db = new DatabaseSync(path);
  // WAL lets the CLI and the server share the file; the busy timeout makes a writer wait its turn
  // instead of failing; FULL sync makes a committed audit event survive power loss, not only a crash.
  db.exec('PRAGMA journal_mode = WAL');
  db.exec('PRAGMA busy_timeout = 10000');
  db.exec('PRAGMA synchronous = FULL');
  db.exec('PRAGMA foreign_keys = ON');
  const statements = new Map<string, SqliteStatement>();
  return {
    raw: db,
    close: () => {
      statements.clear();
      if (db.isOpen) db.close();
    },
    prepare(sql: string): SqliteStatement {
      // A deferred BEGIN can fail with SQLITE_BUSY when it later upgrades to a write lock while
      // another process writes; BEGIN IMMEDIATE takes the write lock up front and honours busy_timeout.
      const text = /^begin$/i.test(sql.trim()) ? 'begin immediate' : sql;
      let statement = statements.get(text);
      if (!statement) {
        statement = adapt(db.prepare(text));
        if (statements.size > 500) statements.clear();
        statements.set(text, statement);
      }
      return statement;
    },
  };
}

function adapt(statement: StatementSync): SqliteStatement {
  return {
    reader: statement.columns().length > 0,
    all: (parameters) => statement.all(...bind(parameters)) as unknown[],
    run: (parameters) => statement.run(...bind(parameters)),
    iterate: (parameters) => statement.iterate(...bind(parameters)) as IterableIterator<unknown>,
  };
}

type Bindable = null | number | bigint | string | NodeJS.ArrayBufferView;

function bind(parameters: ReadonlyArray<unknown>): Bindable[] {
  return parameters.map((value) => {
    if (value === undefined) return null;
    if (typeof value === 'boolean') return value ? 1 : 0;
    return value as Bindable;
  });
}
