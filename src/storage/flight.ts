import { CompiledQuery, type Compilable, type DatabaseConnection, type Kysely, type QueryResult } from 'kysely';
import type { Dialect } from './database.ts';
import type { Database } from './schema.ts';

/**
 * A flight: statements sent to the database together and answered together. On PostgreSQL the
 * pool's connections are in pipeline mode (postgres-pool.ts): every statement of a flight is
 * written before the first answer is read, so the flight costs ONE network round trip however
 * many statements it holds. On SQLite (no network) the same statements run one after another.
 *
 * A request collects its statements — each component adds its own with `run`, which returns the
 * promise of that statement's result, settled once the flight has landed — and then sends them:
 * `send()` for independent statements (reads), `commit()` for one transaction (BEGIN, the
 * statements, COMMIT: all or nothing). The statements of a flight cannot depend on one another's
 * answers; that is the price of the single round trip. A condition the rest of a transaction
 * depends on — the row was still pending, the code not yet redeemed — is an expectation: with
 * `{ rows: n, otherwise: reason }` the whole transaction fails with `FlightRefused(reason)`,
 * and writes nothing, unless that statement changed exactly n rows. PostgreSQL checks it itself
 * (`clearance_expect_rows`, migration 0015): the transaction is aborted before COMMIT arrives,
 * and a COMMIT of an aborted transaction rolls it back. SQLite checks it between statements.
 *
 * Statements that must see another's answer first (a read that decides what to write) use an
 * ordinary Kysely transaction, or a second flight. A transaction that bets on a condition (a row
 * it inserts does not exist yet) makes it an expectation and commits with a retry: when the bet
 * lost, nothing was written, and the flight is sent once more as amended (`commit(retry)`).
 */
export class Flight {
  readonly dialect: Dialect;
  readonly #land: Lander;
  readonly #queued: Queued[] = [];
  #sent = false;

  constructor(dialect: Dialect, land: Lander) {
    this.dialect = dialect;
    this.#land = land;
  }

  /** How many statements were added. */
  get size(): number {
    return this.#queued.length;
  }

  /** True once `send` or `commit` was called. */
  get sent(): boolean {
    return this.#sent;
  }

  /**
   * Adds a statement; the promise settles with its result once the flight has landed (for a
   * failed transaction: with the flight's error, for every statement). Statements are sent in the
   * order they were added. Awaiting the promise before the flight is sent waits forever: add
   * everything first, then `send` or `commit`.
   */
  run<R>(query: Compilable<R> | CompiledQuery<R>, expect?: Expectation): Promise<QueryResult<R>> {
    if (this.#sent) throw new Error('a statement was added to a flight that was already sent');
    if (expect && !/^[a-z][a-z0-9_]*$/.test(expect.otherwise)) throw new Error(`an expectation's reason is a snake_case word, not ${expect.otherwise}`);
    const compiled = isCompiled(query) ? query : query.compile();
    let settle!: Queued['settle'];
    const answer = new Promise<QueryResult<R>>((resolve, reject) => {
      settle = (outcome) => (outcome.status === 'fulfilled' ? resolve(outcome.value as QueryResult<R>) : reject(outcome.reason));
    });
    // A caller that reads only some answers must not leave the others' rejections unhandled.
    answer.catch(() => undefined);
    this.#queued.push({ statement: { query: compiled, ...(expect ? { expect } : {}) }, settle, answer });
    return answer;
  }

  /**
   * Sends the statements, each on its own (no transaction: for reads). Resolves once every answer
   * is in; each statement's own promise carries its result or its error.
   */
  async send(): Promise<void> {
    if (this.#queued.some((q) => q.statement?.expect)) throw new Error('an expectation needs a transaction: commit() the flight');
    await this.#fly(false);
  }

  /**
   * Sends the statements as one transaction. Resolves once it has committed; rejects with
   * FlightRefused when an expectation failed, or with the database's error — and then nothing of
   * the flight was written. With `retry`, a transaction refused for `retry.reason` is sent once
   * more after `retry.amend` has replaced statements (a bet that lost: nothing was written, so
   * the statements' answers are those of the second sending).
   */
  async commit(retry?: FlightRetry): Promise<void> {
    if (this.#sent) throw new Error('a flight is sent once');
    this.#sent = true;
    let outcomes: Outcome[] = [];
    let failure: unknown;
    try {
      outcomes = await this.#landQueued(true);
      failure = firstFailure(this.#queued, outcomes);
      if (retry && failure instanceof FlightRefused && failure.reason === retry.reason) {
        const first = outcomes;
        await retry.amend(
          (answer, query, expect) => this.#replace(answer, query, expect),
          (answer) => {
            const outcome = first[this.#queued.findIndex((q) => q.answer === answer)];
            return outcome?.status === 'fulfilled' ? outcome.value : undefined;
          },
        );
        outcomes = await this.#landQueued(true);
        failure = firstFailure(this.#queued, outcomes);
      }
    } catch (error) {
      failure = error;
    }
    this.#settle(outcomes, failure);
    if (failure !== undefined) throw failure;
  }

  async #fly(transaction: boolean): Promise<unknown> {
    if (this.#sent) throw new Error('a flight is sent once');
    this.#sent = true;
    const outcomes = await this.#landQueued(transaction);
    const failure = transaction ? firstFailure(this.#queued, outcomes) : undefined;
    this.#settle(outcomes, failure);
    return failure;
  }

  async #landQueued(transaction: boolean): Promise<Outcome[]> {
    const statements = this.#queued.flatMap((q) => (q.statement ? [q.statement] : []));
    if (statements.length === 0) return this.#queued.map(() => dropped);
    const landed = await this.#land(statements, transaction);
    let next = 0;
    return this.#queued.map((q) => (q.statement ? landed[next++]! : dropped));
  }

  #settle(outcomes: Outcome[], failure: unknown): void {
    this.#queued.forEach((q, i) => q.settle(failure === undefined ? outcomes[i]! : { status: 'rejected', reason: failure }));
  }

  /**
   * In a retry's `amend`: the statement whose answer is `answer` becomes `query` (with `expect`, a
   * condition the second sending bets on in turn), or is dropped (answered with no rows).
   */
  #replace(answer: Promise<unknown>, query: CompiledQuery | undefined, expect?: Expectation): void {
    const queued = this.#queued.find((q) => q.answer === answer);
    if (!queued) throw new Error('a flight can only replace its own statements');
    if (query && queued.statement?.expect) throw new Error('a statement with an expectation is replaced by dropping it');
    if (expect && !query) throw new Error('an expectation needs a statement');
    queued.statement = query ? { query, ...(expect ? { expect } : {}) } : undefined;
  }
}

/** A second sending of a flight's transaction refused for `reason` (Flight.commit). */
export interface FlightRetry {
  reason: string;
  /**
   * Replaces statements, each named by the answer `run` returned: a query (with an expectation of
   * its own, checked in the second sending: a refusal then is not retried), or undefined to drop it.
   * `firstAnswer` tells what a statement answered in the refused sending (undefined when it failed
   * or did not run): what it read before the refusal, rolled back with the rest.
   */
  amend(replace: (answer: Promise<unknown>, query: CompiledQuery | undefined, expect?: Expectation) => void, firstAnswer: (answer: Promise<unknown>) => QueryResult<unknown> | undefined): Promise<void>;
}

type Outcome = PromiseSettledResult<QueryResult<unknown>>;
/** The answer of a statement dropped by a retry: no rows, nothing changed. */
const dropped: Outcome = { status: 'fulfilled', value: { rows: [] } };

/** A condition on the rows a statement changed, checked by the database, that its transaction needs. */
export interface Expectation {
  /** How many rows the statement must change. */
  rows: number;
  /** Why the transaction cannot go on otherwise (snake_case): FlightRefused's reason. */
  otherwise: string;
}

/** A transaction of a flight refused by one of its expectations; nothing of it was written. */
export class FlightRefused extends Error {
  override name = 'FlightRefused';
  readonly reason: string;
  constructor(reason: string) {
    super(`the flight's transaction was refused: ${reason}`);
    this.reason = reason;
  }
}

/** True when `error` is a flight refused for `reason`. */
export function refusedFor(error: unknown, reason: string): boolean {
  return error instanceof FlightRefused && error.reason === reason;
}

/** The rows of `query`: at once on its own, or with the other statements of `flight` when given. */
export async function rowsOf<R>(query: Compilable<R> & { execute(): Promise<R[]> }, flight?: Flight): Promise<R[]> {
  return flight ? (await flight.run(query)).rows : query.execute();
}

interface Statement {
  query: CompiledQuery;
  expect?: Expectation;
}

interface Queued {
  /** Undefined once a retry dropped it. */
  statement: Statement | undefined;
  settle: (outcome: PromiseSettledResult<QueryResult<unknown>>) => void;
  answer: Promise<unknown>;
}

/** Runs a flight's statements (as one transaction or not); one outcome per statement, in order. */
export type Lander = (statements: Statement[], transaction: boolean) => Promise<PromiseSettledResult<QueryResult<unknown>>[]>;

/** The SQLSTATE `clearance_expect_rows` raises (migration 0015). */
export const expectationSqlState = 'CLR01';

/**
 * The lander of a dialect. PostgreSQL: every statement is written at once on one connection (in
 * pipeline mode), the transaction's BEGIN and COMMIT too, and the answers are read together.
 * SQLite: one statement after another on its one connection; a failure (an error or an unmet
 * expectation) rolls the transaction back and leaves the rest unsent.
 */
export function landerFor(
  db: Kysely<Database>,
  dialect: Dialect,
  hooks: { start?: () => void; end?: () => void; begin?: (connection: DatabaseConnection) => Promise<void> } = {},
): Lander {
  return (statements, transaction) =>
    db.getExecutor().provideConnection(async (connection) => {
      if (dialect === 'postgres') {
        const queries = statements.map((s) => (s.expect ? guarded(s.query, s.expect) : s.query));
        const sent = (transaction ? [CompiledQuery.raw('begin'), ...queries, CompiledQuery.raw('commit')] : queries).map((q) => connection.executeQuery(q));
        const outcomes = await Promise.allSettled(sent);
        const answers = transaction ? outcomes.slice(1, -1) : outcomes;
        if (transaction) {
          // BEGIN failed: nothing ran. COMMIT failed: nothing is known to be written.
          const edge = [outcomes[0]!, outcomes.at(-1)!].find((o) => o.status === 'rejected');
          if (edge && answers.every((o) => o.status === 'fulfilled')) return answers.map(() => edge);
        }
        return answers.map((o, i) => (o.status === 'fulfilled' && statements[i]!.expect ? { status: 'fulfilled' as const, value: expectedAnswer(o.value) } : o));
      }
      hooks.start?.();
      try {
        return transaction ? await inSqliteTransaction(connection, statements, hooks.begin) : await oneByOne(connection, statements);
      } finally {
        hooks.end?.();
      }
    });
}

async function oneByOne(connection: DatabaseConnection, statements: Statement[]): Promise<PromiseSettledResult<QueryResult<unknown>>[]> {
  const outcomes: PromiseSettledResult<QueryResult<unknown>>[] = [];
  for (const s of statements) {
    try {
      outcomes.push({ status: 'fulfilled', value: await connection.executeQuery(s.query) });
    } catch (reason) {
      outcomes.push({ status: 'rejected', reason });
    }
  }
  return outcomes;
}

async function inSqliteTransaction(
  connection: DatabaseConnection,
  statements: Statement[],
  begin: (connection: DatabaseConnection) => Promise<void> = (c) => c.executeQuery(CompiledQuery.raw('begin')).then(() => undefined),
): Promise<PromiseSettledResult<QueryResult<unknown>>[]> {
  const outcomes: PromiseSettledResult<QueryResult<unknown>>[] = [];
  // BEGIN IMMEDIATE (node-sqlite-driver.ts), waiting for another process's write lock on a timer
  // as Kysely's transactions do (database.ts beginPatiently).
  await begin(connection);
  let failure: unknown;
  for (const s of statements) {
    try {
      const value = await connection.executeQuery(s.query);
      if (s.expect && Number(value.numAffectedRows ?? 0n) !== s.expect.rows) {
        failure = new FlightRefused(s.expect.otherwise);
        outcomes.push({ status: 'rejected', reason: failure });
        break;
      }
      outcomes.push({ status: 'fulfilled', value });
    } catch (reason) {
      failure = reason;
      outcomes.push({ status: 'rejected', reason });
      break;
    }
  }
  if (failure !== undefined) {
    await connection.executeQuery(CompiledQuery.raw('rollback'));
    while (outcomes.length < statements.length) outcomes.push({ status: 'rejected', reason: failure });
    return outcomes;
  }
  try {
    await connection.executeQuery(CompiledQuery.raw('commit'));
  } catch (error) {
    // A failed COMMIT leaves the transaction open on this connection: end it, as Kysely would.
    await connection.executeQuery(CompiledQuery.raw('rollback')).catch(() => undefined);
    throw error;
  }
  return outcomes;
}

/**
 * PostgreSQL: the statement wrapped so that the database raises CLR01 unless it changed exactly
 * `expect.rows` rows — inside the transaction, which is then aborted and cannot commit.
 */
function guarded(query: CompiledQuery, expect: Expectation): CompiledQuery {
  if (/\breturning\b/i.test(query.sql)) throw new Error('a statement with an expectation has no returning clause of its own');
  const n = query.parameters.length;
  return CompiledQuery.raw(`with changed as (${query.sql} returning 1) select clearance_expect_rows(count(*), $${n + 1}, $${n + 2}) as changed from changed`, [
    ...query.parameters,
    expect.rows,
    expect.otherwise,
  ]);
}

/** What a guarded statement answers, as the statement itself would have. */
function expectedAnswer(result: QueryResult<unknown>): QueryResult<unknown> {
  const changed = (result.rows[0] as { changed?: number | string | bigint } | undefined)?.changed ?? 0;
  return { rows: [], numAffectedRows: BigInt(changed) };
}

/** The transaction's failure: its first failing statement's, an unmet expectation as FlightRefused. */
function firstFailure(queued: Queued[], outcomes: PromiseSettledResult<QueryResult<unknown>>[]): unknown {
  for (let i = 0; i < outcomes.length; i++) {
    const outcome = outcomes[i]!;
    if (outcome.status === 'fulfilled') continue;
    const reason = outcome.reason as { code?: unknown } | undefined;
    const expect = queued[i]!.statement?.expect;
    if (expect && reason?.code === expectationSqlState) return new FlightRefused(expect.otherwise);
    return outcome.reason;
  }
  return undefined;
}

function isCompiled<R>(query: Compilable<R> | CompiledQuery<R>): query is CompiledQuery<R> {
  return typeof (query as CompiledQuery<R>).sql === 'string' && Array.isArray((query as CompiledQuery<R>).parameters);
}
