import type { CompiledQuery, Kysely, QueryResult, Transaction } from 'kysely';
import type { Database } from './schema.ts';
import { isDatabaseUnavailable } from './faults.ts';
import type { Flight } from './flight.ts';
import { MicroBatcher } from './micro-batcher.ts';
import { Histogram } from 'prom-client';
import { metricsRegistry } from '../metrics.ts';

type Operation<T> = (trx: Transaction<Database>) => Promise<T>;

/**
 * An operation that is statements alone, none depending on another's answer, its result read
 * from their answers afterwards. A batch made only of such operations can be sent as one flight
 * (flight.ts): on PostgreSQL BEGIN, every statement and COMMIT in one round trip, where a
 * transaction awaits each in turn (four round trips for an audit batch, three for a replay batch).
 */
export interface StatementOperation<T> {
  /** Called when the batch starts (again if the operation is retried alone). */
  statements(): CompiledQuery[];
  /** The operation's result from its statements' answers, in order. */
  result(answers: QueryResult<unknown>[]): T;
}

type AnyOperation<T> = Operation<T> | StatementOperation<T>;

interface Queued {
  operation: AnyOperation<unknown>;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

/**
 * Group commit for the small writes a burst of requests produces (assertion jti inserts, audit
 * events): operations submitted in the same event-loop turn, or while the previous batch commits,
 * run in one transaction, so a burst pays for one commit (one fsync) instead of one each
 * (DESIGN §9). Each caller gets its own operation's result once the transaction has committed,
 * so "resolved" always means "durable".
 *
 * Operations must express expected outcomes in their result (e.g. ON CONFLICT DO NOTHING), not by
 * throwing. If one throws anyway, the shared transaction is rolled back and every operation of
 * the batch is retried alone, so one bad operation fails only its own caller. When the database
 * itself is unavailable (faults.ts), the whole batch fails at once instead: retried alone, each
 * operation would wait out the timeouts in turn, and a batch whose COMMIT was lost in flight may
 * have committed after all, so running it again could write it twice.
 */
export class GroupCommit {
  readonly #db: Kysely<Database>;
  readonly #batcher: MicroBatcher<Queued>;
  readonly #flight: (() => Flight) | undefined;

  /**
   * `concurrency`: transactions in flight at once (default 1). Above 1 only where each has a
   * connection of its own (PostgreSQL): a batch then forms while others wait for their commits,
   * instead of the whole process waiting for one commit at a time (`groupCommitConcurrency`).
   * `flight`: where batches of statement operations are sent as one flight (the server gives it
   * on PostgreSQL, where it saves round trips; `groupCommitFlight`).
   */
  constructor(db: Kysely<Database>, options: { maxBatch?: number; concurrency?: number; flight?: () => Flight } = {}) {
    this.#db = db;
    this.#flight = options.flight;
    this.#batcher = new MicroBatcher((batch) => this.#commit(batch), options.maxBatch ?? 1000, { concurrency: options.concurrency ?? 1 });
  }

  /** Runs `operation` in the next shared transaction; resolves with its result after commit. */
  run<T>(operation: AnyOperation<T>): Promise<T> {
    return new Promise<T>((resolve, reject) =>
      this.#batcher.add({ operation, resolve: resolve as (value: unknown) => void, reject }),
    );
  }

  /** Resolves when everything submitted so far has committed or failed. */
  flush(): Promise<void> {
    return this.#batcher.flush();
  }

  async #commit(batch: Queued[]): Promise<void> {
    batchSizes.observe(batch.length);
    let results: unknown[];
    try {
      results = await this.#transaction(batch.map((item) => item.operation));
    } catch (error) {
      if (isDatabaseUnavailable(error)) {
        for (const item of batch) item.reject(error);
        return;
      }
      await this.#runAlone(batch);
      return;
    }
    batch.forEach((item, i) => settle(item, results[i]));
  }

  async #runAlone(batch: Queued[]): Promise<void> {
    let unavailable: unknown;
    for (const item of batch) {
      if (unavailable !== undefined) {
        item.reject(unavailable);
        continue;
      }
      try {
        settle(item, (await this.#transaction([item.operation]))[0]);
      } catch (error) {
        if (isDatabaseUnavailable(error)) unavailable = error;
        item.reject(error);
      }
    }
  }

  /** One transaction running `operations` in order: a flight when every one is statements alone. */
  async #transaction(operations: AnyOperation<unknown>[]): Promise<unknown[]> {
    if (this.#flight && operations.every(isStatementOperation)) {
      const flight = this.#flight();
      const answers = operations.map((operation) => operation.statements().map((statement) => flight.run(statement)));
      await flight.commit();
      // Committed: a result that cannot be read fails its own caller, and nothing runs again.
      return Promise.all(
        answers.map(async (each, i) => {
          const got = await Promise.all(each);
          try {
            return operations[i]!.result(got);
          } catch (error) {
            return new Unreadable(error);
          }
        }),
      );
    }
    return this.#db.transaction().execute(async (trx) => {
      const out: unknown[] = [];
      for (const operation of operations) out.push(await runIn(trx, operation));
      return out;
    });
  }
}

/** The result of a committed statement operation whose `result` threw. */
class Unreadable {
  readonly error: unknown;
  constructor(error: unknown) {
    this.error = error;
  }
}

function settle(item: Queued, result: unknown): void {
  if (result instanceof Unreadable) item.reject(result.error);
  else item.resolve(result);
}

function runIn(trx: Transaction<Database>, operation: AnyOperation<unknown>): Promise<unknown> {
  return isStatementOperation(operation) ? runStatements(trx, operation) : operation(trx);
}

/** Runs a statement operation's statements one after another on `db` (a transaction, or the database itself), then reads its result. */
export async function runStatements<T>(db: Kysely<Database>, operation: StatementOperation<T>): Promise<T> {
  const answers: QueryResult<unknown>[] = [];
  for (const statement of operation.statements()) answers.push(await db.executeQuery(statement));
  return operation.result(answers);
}

function isStatementOperation(operation: AnyOperation<unknown>): operation is StatementOperation<unknown> {
  return typeof operation === 'object';
}

/**
 * Where the group commit sends its batches of statement operations as one flight: on PostgreSQL,
 * where a flight is one round trip instead of one per statement. On SQLite (no network) the
 * transaction it has always used.
 */
export function groupCommitFlight(storage: { dialect: 'sqlite' | 'postgres'; flight(): Flight }): (() => Flight) | undefined {
  return storage.dialect === 'postgres' ? () => storage.flight() : undefined;
}

/**
 * Group-commit transactions in flight at once for a dialect: one on SQLite (one connection, one
 * writer at a time); on PostgreSQL a third of the pool, at most 4, so that reads and the audit
 * sealer keep connections of their own (docs/performance.md).
 */
export function groupCommitConcurrency(dialect: 'sqlite' | 'postgres', poolSize: number): number {
  return dialect === 'postgres' ? Math.max(1, Math.min(4, Math.floor(poolSize / 3))) : 1;
}

/** How many operations each group commit carried (docs/operations.md "Metrics"): the batching the hot path relies on. */
const batchSizes = new Histogram({
  name: 'clearance_group_commit_batch_size',
  help: 'Operations sharing one group-commit transaction (replay records, audit events, other small writes).',
  buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000],
  registers: [metricsRegistry],
});
