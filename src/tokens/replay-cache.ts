import { CompiledQuery, type Kysely } from 'kysely';
import { isPostgres } from '../audit/dialect.ts';
import type { Clock } from '../clock.ts';
import { preparedBatchRows, preparedOnPostgres } from '../storage/prepared.ts';
import { deleteExpired, IntervalPruner } from '../storage/pruner.ts';
import type { Database } from '../storage/schema.ts';
import { runStatements, type GroupCommit, type StatementOperation } from '../storage/group-commit.ts';

/**
 * Remembers single-use identifiers (a client assertion's or a DPoP proof's `jti`) until they
 * expire. Callers scope the key themselves, e.g. `client_assertion:<client_id>:<jti>`, so one
 * client's identifiers never collide with another's or with another kind of token.
 */
export interface ReplayCache {
  /**
   * Records `key` as used until `expiresAt` (ms since the epoch), rounded up to a whole second
   * (`heldUntil`). Resolves `true` when this is the first use, `false` when the key was already
   * used and has not expired: reject the token.
   */
  use(key: string, expiresAt: number): Promise<boolean>;
  /** Deletes entries that expired before `now` (ms); resolves the number deleted. */
  prune(now: number): Promise<number>;
}

/**
 * When a use recorded until `expiresAt` (ms) is let go: the end of the second it falls in. A JWT's
 * `exp` may have a fraction (RFC 7519 §2: a NumericDate), and the checks that admit a token compare
 * it with whole seconds of the clock (`epochSeconds`, as jose does): an assertion with `exp` N + 0.5
 * passes them until second N + 1 + skew begins, so a use held only until N + 0.5 + skew could be
 * replayed in the half second between. Whole milliseconds are also what the bigint column takes.
 * Throws RangeError for a time that is not a safe integer of milliseconds once rounded.
 */
export function heldUntil(expiresAt: number): number {
  const until = Math.ceil(expiresAt / 1000) * 1000;
  if (!Number.isSafeInteger(until)) throw new RangeError('replay expiry out of range');
  return until;
}

/** Longest key accepted: a PostgreSQL B-tree entry must stay well under its ~2.7 kB limit. */
export const maxReplayKeyLength = 512;

/** One use waiting for the statement that records it. */
interface PendingUse {
  key: string;
  expiresAt: number;
}

/** The uses gathered for one statement; `fresh` resolves, in their order, whether each was the first. */
interface UseBatch {
  uses: PendingUse[];
  fresh: Promise<boolean[]>;
}

// Rows per PostgreSQL INSERT: 2 parameters each, far below its limit of 65535.
const rowsPerStatement = 500;

/**
 * The replay cache in the database (table `jti_replay`). A use is an INSERT whose conflict on the
 * primary key means "seen", so two nodes racing with the same key get exactly one `true` (DESIGN
 * §6: replay caches are enforced by the database's unique constraints). An expired row that was
 * not pruned yet is taken over in the same statement, as a new use.
 *
 * With a group-commit writer, the uses of one event-loop turn are one operation of the writer's
 * next transaction — on PostgreSQL one multi-row INSERT … ON CONFLICT … RETURNING, sent with the
 * batch's other statements, BEGIN and COMMIT in one flight: one round trip for a burst of token
 * requests instead of one each (issue 13); each caller learns its own answer once that
 * transaction has committed. A key repeated within the batch is fresh the first time only.
 */
export class DatabaseReplayCache implements ReplayCache {
  readonly #db: Kysely<Database>;
  readonly #clock: Clock;
  readonly #pruner: IntervalPruner;
  readonly #postgres: boolean;
  readonly #writer: GroupCommit | undefined;
  /** The batch still taking uses: its statement has not started. */
  #open: UseBatch | undefined;

  /** With `writer`, uses join its group commit (one commit per burst of requests, DESIGN §9). */
  constructor(db: Kysely<Database>, clock: Clock, options: { pruneEveryMs?: number; writer?: GroupCommit } = {}) {
    this.#db = db;
    this.#writer = options.writer;
    this.#clock = clock;
    this.#pruner = new IntervalPruner(clock, options.pruneEveryMs ?? 60_000, (now) => this.prune(now));
    this.#postgres = isPostgres(db);
  }

  async use(key: string, expiresAt: number): Promise<boolean> {
    if (key.length === 0 || key.length > maxReplayKeyLength) throw new RangeError('replay key length out of range');
    expiresAt = heldUntil(expiresAt);
    this.#pruner.maybe(this.#clock.now());
    if (!this.#writer) return (await runStatements(this.#db, this.#recording([{ key, expiresAt }])))[0]!;
    let batch = this.#open;
    if (!batch) {
      const uses: PendingUse[] = [];
      let recording: StatementOperation<boolean[]> | undefined;
      // Statements alone: on PostgreSQL the writer sends them in one flight with the batch's others.
      const fresh = this.#writer.run({
        statements: () => {
          // From here on, new uses go to the next batch.
          if (this.#open?.uses === uses) this.#open = undefined;
          recording = this.#recording(uses);
          return recording.statements();
        },
        result: (answers) => recording!.result(answers),
      });
      batch = this.#open = { uses, fresh };
    }
    const index = batch.uses.push({ key, expiresAt }) - 1;
    return (await batch.fresh)[index]!;
  }

  /** The statements that record `uses`, and how their answers tell, for each use, whether it was the first of its key. */
  #recording(uses: PendingUse[]): StatementOperation<boolean[]> {
    const now = this.#clock.now();
    // PostgreSQL refuses a statement that would upsert one row twice: a repeat in the batch is
    // a replay of its first occurrence, answered without asking the database.
    const first = new Map<string, number>();
    uses.forEach((use, i) => {
      if (!first.has(use.key)) first.set(use.key, i);
    });
    const distinct = [...first.entries()];
    const answered = () => new Array<boolean>(uses.length).fill(false);
    if (!this.#postgres) {
      // SQLite: no round trips to save, and a multi-row upsert costs more per row than one
      // prepared statement per key (measured), so each key is its own statement in the batch.
      const statements = distinct.map(([key, at]) => CompiledQuery.raw(singleInsertText, [key, uses[at]!.expiresAt, now]));
      return {
        statements: () => statements,
        result: (answers) => {
          const fresh = answered();
          distinct.forEach(([, at], i) => (fresh[at] = Number(answers[i]!.numAffectedRows ?? 0n) === 1));
          return fresh;
        },
      };
    }
    // In key order: two batches in flight at once (PostgreSQL) then lock their rows in the same
    // order and cannot deadlock, whatever order the (client-chosen) jtis arrived in.
    distinct.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const statements: CompiledQuery[] = [];
    for (let i = 0; i < distinct.length; i += rowsPerStatement) {
      const chunk = distinct.slice(i, i + rowsPerStatement);
      const parameters: unknown[] = [];
      for (const [key, at] of chunk) parameters.push(key, uses[at]!.expiresAt);
      parameters.push(now);
      statements.push(CompiledQuery.raw(multiInsertText(chunk.length), parameters));
    }
    return {
      statements: () => statements,
      result: (answers) => {
        const fresh = answered();
        for (const answer of answers) for (const row of answer.rows as { key: string }[]) fresh[first.get(row.key)!] = true;
        return fresh;
      },
    };
  }

  async prune(now: number): Promise<number> {
    return deleteExpired(this.#db, { table: 'jti_replay', key: 'key', expiresBy: 'expires_at' }, now);
  }

  /** Resolves when an opportunistic prune started by `use` has finished (for tests and shutdown). */
  async settled(): Promise<void> {
    await this.#pruner.settled();
  }

}

// Only an expired entry may be replaced: a live one leaves its row untouched (no row changed,
// none returned), so a use is fresh exactly when its row was written.
const upsert = 'on conflict (key) do update set expires_at = excluded.expires_at where jti_replay.expires_at <';
const singleInsertText = `insert into jti_replay (key, expires_at) values (?, ?) ${upsert} ?`;
const multiInsertTexts = new Map<number, string>();

/** PostgreSQL's multi-row upsert for `rows` uses (cached per size): one round trip for a batch. */
function multiInsertText(rows: number): string {
  let text = multiInsertTexts.get(rows);
  if (!text) {
    let n = 0;
    const values = Array.from({ length: rows }, () => `($${++n}, $${++n})`).join(', ');
    text = `insert into jti_replay (key, expires_at) values ${values} ${upsert} $${++n} returning key`;
    // The sizes a busy server's batches mostly have: parsed once per connection (prepared.ts).
    if (rows <= preparedBatchRows) preparedOnPostgres(text);
    multiInsertTexts.set(rows, text);
  }
  return text;
}
