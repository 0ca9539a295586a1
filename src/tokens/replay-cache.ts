import { CompiledQuery, type Kysely } from 'kysely';
import { isPostgres } from '../audit/dialect.ts';
import type { Clock } from '../clock.ts';
import type { Database } from '../storage/schema.ts';
import type { GroupCommit } from '../storage/group-commit.ts';

/**
 * Remembers single-use identifiers (a client assertion's or a DPoP proof's `jti`) until they
 * expire. Callers scope the key themselves, e.g. `client_assertion:<client_id>:<jti>`, so one
 * client's identifiers never collide with another's or with another kind of token.
 */
export interface ReplayCache {
  /**
   * Records `key` as used until `expiresAt` (ms since the epoch). Resolves `true` when this is the
   * first use, `false` when the key was already used and has not expired: reject the token.
   */
  use(key: string, expiresAt: number): Promise<boolean>;
  /** Deletes entries that expired before `now` (ms); resolves the number deleted. */
  prune(now: number): Promise<number>;
}

/** Longest key accepted: a PostgreSQL B-tree entry must stay well under its ~2.7 kB limit. */
export const maxReplayKeyLength = 512;

/**
 * The replay cache in the database (table `jti_replay`). `use` is one statement, an INSERT whose
 * conflict on the primary key means "seen", so two nodes racing with the same key get exactly
 * one `true` (DESIGN §6: replay caches are enforced by the database's unique constraints). An
 * expired row that was not pruned yet is taken over in the same statement, as a new use.
 */
export class DatabaseReplayCache implements ReplayCache {
  readonly #db: Kysely<Database>;
  readonly #clock: Clock;
  readonly #pruneEveryMs: number;
  #lastPrune: number;
  #pruning: Promise<unknown> | undefined;

  readonly #writer: GroupCommit | undefined;
  readonly #insertText: string;

  /** With `writer`, inserts join its group commit (one commit per burst of requests, DESIGN §9). */
  constructor(db: Kysely<Database>, clock: Clock, options: { pruneEveryMs?: number; writer?: GroupCommit } = {}) {
    this.#db = db;
    this.#writer = options.writer;
    this.#clock = clock;
    this.#pruneEveryMs = options.pruneEveryMs ?? 60_000;
    this.#lastPrune = clock.now();
    const [k, e, n] = isPostgres(db) ? ['$1', '$2', '$3'] : ['?', '?', '?'];
    this.#insertText = `insert into jti_replay (key, expires_at) values (${k}, ${e}) on conflict (key) do update set expires_at = excluded.expires_at where jti_replay.expires_at < ${n}`;
  }

  async use(key: string, expiresAt: number): Promise<boolean> {
    if (key.length === 0 || key.length > maxReplayKeyLength) throw new RangeError('replay key length out of range');
    const now = this.#clock.now();
    this.#maybePrune(now);
    // One prepared statement (no query building per request: this runs on every token request).
    // Only an expired entry may be replaced; a live one leaves the row untouched (0 rows).
    const insert = (db: Kysely<Database>) => db.executeQuery(CompiledQuery.raw(this.#insertText, [key, expiresAt, now]));
    const result = await (this.#writer ? this.#writer.run(insert) : insert(this.#db));
    return Number(result.numAffectedRows ?? 0n) === 1;
  }

  async prune(now: number): Promise<number> {
    const result = await this.#db.deleteFrom('jti_replay').where('expires_at', '<', now).executeTakeFirst();
    return Number(result.numDeletedRows);
  }

  /** Resolves when an opportunistic prune started by `use` has finished (for tests and shutdown). */
  async settled(): Promise<void> {
    await this.#pruning;
  }

  /** Prunes at most once per interval, off the request's path; a failure waits for the next interval. */
  #maybePrune(now: number): void {
    if (this.#pruning || now - this.#lastPrune < this.#pruneEveryMs) return;
    this.#lastPrune = now;
    this.#pruning = this.prune(now)
      .catch(() => undefined)
      .finally(() => (this.#pruning = undefined));
  }
}
