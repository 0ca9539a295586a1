import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { DatabaseUnavailableError, isDatabaseUnavailable } from './faults.ts';
import { preparedName } from './prepared.ts';

export interface PostgresPoolOptions {
  url: string;
  poolSize: number;
  /** Longest wait for a pooled connection, or to open a new one (ms). */
  acquireTimeoutMs: number;
  /** The server's statement_timeout (ms); 0 = none, and then no deadline and no fail-fast either. */
  statementTimeoutMs: number;
  applicationName: string;
  /** search_path for every connection (tests run each suite in a schema of their own). */
  pgSchema?: string | undefined;
  /** Told about each connection lost or given up. */
  onConnectionError?: ((error: Error) => void) | undefined;
  /** Told when the database stops answering (true) and when it answers again (false). */
  onOutage?: ((down: boolean) => void) | undefined;
  /** Send the statements registered in prepared.ts as named statements (default true). */
  prepare?: boolean;
  /** Told each statement as it is written, and whether it starts a round trip (database.ts onQuery). */
  onStatement?: ((sql: string, roundTrip: boolean) => void) | undefined;
}

/**
 * How long after the statement timeout this process stops waiting for the server's own
 * cancellation and drops the connection: the server (or the network to it) is not answering.
 */
export const unansweredGraceMs = 1000;

/** Pause between two probes of a database that does not answer. */
const probeIntervalMs = 250;

/**
 * A pool whose connections cannot take the process down and cannot hang it (issue 20,
 * docs/operations.md "Failure model"):
 * - every connection, idle or checked out (the audit sealer holds one for as long as it seals),
 *   has an 'error' listener: a connection the server terminates or a proxy resets makes its
 *   queries fail and leaves the pool, where an unhandled 'error' event would exit the process;
 * - the server cancels statements after `statement_timeout` (a startup parameter: no round trip
 *   per request), and a connection that has not answered `unansweredGraceMs` after that is
 *   destroyed, so a database that stops answering fails queries instead of hanging them;
 * - waiting for a connection, or opening one, gives up after the acquire timeout;
 * - once the database is known not to answer (a connection given up, a connect that timed out or
 *   was refused), new connections are refused at once, not after the timeouts, while one probe at
 *   a time checks whether it answers again.
 * Each of these errors is recognised by `isDatabaseUnavailable` (a 503 over HTTP).
 *
 * Connections are in pipeline mode (pg's `pipeline`): a statement is written at once, without
 * waiting for the answers to the ones before it on the same connection, which are read in order.
 * Code that awaits each statement behaves as before; statements issued together — a flight
 * (flight.ts) — share one network round trip. Each statement still has its own Sync: an error
 * fails only that statement, or, inside BEGIN … COMMIT, aborts the transaction as always.
 */
export function postgresPool(options: PostgresPoolOptions): pg.Pool {
  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.poolSize,
    connectionTimeoutMillis: options.acquireTimeoutMs,
    application_name: options.applicationName,
    ...(options.statementTimeoutMs > 0 ? { statement_timeout: options.statementTimeoutMs } : {}),
    // A peer that vanished without a reset (a failed-over host) is noticed by TCP, not only by a query.
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
    pipeline: true,
    // bigint columns hold epoch milliseconds and counters, all well inside 2^53.
    types: { getTypeParser: (oid: number, format?: string) => (oid === 20 ? Number : pg.types.getTypeParser(oid, format as 'text')) },
    ...(options.pgSchema ? { options: `-c search_path=${options.pgSchema}` } : {}),
  });
  const onError = (error: Error) => options.onConnectionError?.(error);
  // An idle client that loses its connection: the pool has already removed it.
  pool.on('error', onError);
  const deadlineMs = options.statementTimeoutMs > 0 ? options.statementTimeoutMs + unansweredGraceMs : 0;
  const connect = pool.connect.bind(pool) as () => Promise<pg.PoolClient>;
  const gate = deadlineMs > 0 ? new OutageGate(() => probe(connect), () => pool.ending || pool.ended, options.onOutage) : undefined;
  pool.on('connect', (client) => {
    if (options.prepare !== false) prepareRegistered(client);
    // A checked-out client has no listener of the pool's: without this one its 'error' would be
    // unhandled. Its queries fail with the error; pg-pool drops it when it is released.
    client.on('error', onError);
    if (deadlineMs > 0) guardQueries(client, deadlineMs, () => gate?.trip());
    if (options.onStatement) countRoundTrips(client, options.onStatement);
  });
  if (gate) {
    (pool as { connect: unknown }).connect = (...args: unknown[]): unknown => {
      // Callback style is pg-pool's own pool.query(), which Clearance does not use.
      if (args.length > 0) return (connect as (...a: unknown[]) => unknown)(...args);
      if (gate.down) return Promise.reject(new DatabaseUnavailableError('the database is not answering (refused at once until it answers again)'));
      return connect().catch((error: unknown) => {
        if (signalsOutage(error)) gate.trip();
        throw error;
      });
    };
  }
  return pool;
}

/**
 * Down or not, for one pool. Down from the first sign that the database does not answer, up again
 * when a probe (`select 1` on a new connection, at most one at a time) gets an answer. A false
 * alarm (a network blip) costs the time of one probe.
 */
class OutageGate {
  #down = false;
  readonly #probe: () => Promise<void>;
  readonly #closed: () => boolean;
  readonly #onOutage: ((down: boolean) => void) | undefined;

  constructor(probe: () => Promise<void>, closed: () => boolean, onOutage: ((down: boolean) => void) | undefined) {
    this.#probe = probe;
    this.#closed = closed;
    this.#onOutage = onOutage;
  }

  get down(): boolean {
    return this.#down;
  }

  trip(): void {
    if (this.#down || this.#closed()) return;
    this.#down = true;
    this.#onOutage?.(true);
    void this.#probeUntilAnswered();
  }

  async #probeUntilAnswered(): Promise<void> {
    while (!this.#closed()) {
      try {
        await this.#probe();
        this.#down = false;
        this.#onOutage?.(false);
        return;
      } catch {
        // still not answering
      }
      await sleep(probeIntervalMs, undefined, { ref: false });
    }
  }
}

async function probe(connect: () => Promise<pg.PoolClient>): Promise<void> {
  const client = await connect();
  try {
    await client.query('select 1');
  } catch (error) {
    client.release(error as Error);
    throw error;
  }
  client.release();
}

/**
 * A failed connect that says the database is not there (refused, unreachable, timed out while
 * connecting, starting up or shutting down). Not the pool being busy ("timeout exceeded when
 * trying to connect": every connection in use), nor a full server (53300): the database answers.
 */
function signalsOutage(error: unknown): boolean {
  if (!isDatabaseUnavailable(error)) return false;
  const { message, code } = error as { message?: string; code?: string };
  return !/^timeout exceeded when trying to connect/.test(message ?? '') && code !== '53300';
}

/**
 * Sends each statement registered in prepared.ts as a named statement: parsed and planned once on
 * this connection. pg remembers which names the connection has parsed (and forgets one whose
 * parse failed, so it is parsed again next time).
 */
function prepareRegistered(client: pg.PoolClient): void {
  const query = client.query as (...args: unknown[]) => unknown;
  (client as { query: unknown }).query = function preparedQuery(this: pg.PoolClient, ...args: unknown[]): unknown {
    const [text, values] = args;
    const name = typeof text === 'string' && args.length <= 2 ? preparedName(text) : undefined;
    return name ? query.call(this, { name, text, values: values ?? [] }) : query.apply(this, args);
  };
}

/**
 * Tells `onStatement` each statement `client` writes, and whether it starts a round trip: true
 * when the connection was waiting for no other answer. A statement written while others are in
 * flight has its answer read with theirs — in pipeline mode only: otherwise pg holds it back
 * until the answer before it has come, and it pays a round trip of its own.
 */
function countRoundTrips(client: pg.PoolClient, onStatement: (sql: string, roundTrip: boolean) => void): void {
  let outstanding = 0;
  const query = client.query as (...args: unknown[]) => unknown;
  (client as { query: unknown }).query = function countedQuery(this: pg.PoolClient, ...args: unknown[]): unknown {
    const first = args[0] as string | { text?: string } | undefined;
    onStatement(typeof first === 'string' ? first : String(first?.text ?? ''), !client.pipeline || outstanding === 0);
    outstanding++;
    const result = query.apply(this, args);
    const done = () => void outstanding--;
    if (result instanceof Promise) result.then(done, done);
    else done();
    return result;
  };
}

/**
 * Makes every query of `client` fail with DatabaseUnavailableError when no answer came within
 * `deadlineMs`, and destroys the connection: its state is unknown (the statement may still run,
 * or the answer may still come), so it is never reused. The deadline only matters when the server
 * does not answer at all; a slow statement is cancelled by the server's statement_timeout first.
 */
function guardQueries(client: pg.PoolClient, deadlineMs: number, unanswered: () => void): void {
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
        unanswered();
        reject(error);
      }, deadlineMs);
    });
    result.catch(() => undefined); // settled by the race below, or abandoned after the deadline
    return Promise.race([result, deadline]).finally(() => clearTimeout(timer));
  };
}
