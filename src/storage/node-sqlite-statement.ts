import type { StatementSync } from 'node:sqlite';
import type { SqliteStatement } from 'kysely';

/**
 * A node:sqlite statement in the shape Kysely's SqliteDialect expects (better-sqlite3's). Apart
 * from node-sqlite-driver.ts so that a worker thread can open a connection of its own without
 * loading the server's storage layer (verify-side-worker.ts).
 */
export function adaptStatement(statement: StatementSync): SqliteStatement {
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
