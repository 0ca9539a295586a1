import { createHash, randomBytes } from 'node:crypto';
import type { Kysely, Transaction } from 'kysely';
import type { Clock } from '../clock.ts';
import { deleteExpired, IntervalPruner } from '../storage/pruner.ts';
import { epochSeconds } from '../clock.ts';
import type { Context } from '../context.ts';
import { FixedQuery } from '../storage/fixed-query.ts';
import type { GroupCommit } from '../storage/group-commit.ts';
import type { Database } from '../storage/schema.ts';
import { verifyAccessToken, type VerifyResult } from './access-token.ts';
import type { AccessTokenClaims } from './claims.ts';

/**
 * Reference access tokens (RFC 7662 §1: "a reference token"): for a resource server registered
 * with `access_token_format: reference`, the token endpoint answers an opaque handle instead of a
 * JWT, and keeps the claims the JWT would have carried here. The resource server learns them only
 * by introspection, so nothing about the subject, its scopes or its mandate travels with the token.
 *
 * The handle is `clr_at_` and 32 random bytes (256 bits, base64url): recognisable at a glance (and
 * by secret scanners) and never confused with a JWT, which always holds two dots. Only its SHA-256
 * is stored (DESIGN §7: store digests, not secrets), so a copy of the database lets no one present
 * a token.
 */

/** What every handle starts with. */
export const referenceTokenPrefix = 'clr_at_';
const handlePattern = /^clr_at_[A-Za-z0-9_-]{43}$/;

export interface ReferenceTokenTables {
  /** Reference access tokens by the SHA-256 of their handle (migration 0051): the claims, until `expires_at` (ms). */
  reference_tokens: { digest: string; claims: string; expires_at: number };
}

/** The claims a reference token stands for: those the issuance path built (src/tokens/issue.ts). */
export type ReferenceClaims = AccessTokenClaims & { origin_iss?: string };

/** True when `token` has the shape of a handle (no database read): a quick, total test. */
export function isReferenceHandle(token: string): boolean {
  return token.length === 50 && handlePattern.test(token);
}

/** base64url SHA-256 of a handle: the row's key. */
export function handleDigest(handle: string): string {
  return createHash('sha256').update(handle).digest('base64url');
}

/** One handle waiting for the statement that stores it. */
interface PendingRow {
  digest: string;
  claims: string;
  expires_at: number;
}

// Rows per INSERT: 3 parameters each, far below SQLite's and PostgreSQL's limits.
const rowsPerStatement = 500;

/**
 * The reference tokens in the database. `store` writes through the group commit when it has one
 * (src/storage/group-commit.ts): the handles minted in one event-loop turn are one multi-row INSERT
 * in the writer's next transaction — the one the burst's audit events and replay-cache uses share —
 * and each caller gets its handle once that transaction has committed, so a handle is never
 * answered before it resolves on every node. The JWT path never comes here.
 */
export class ReferenceTokenStore {
  readonly #db: Kysely<Database>;
  readonly #clock: Clock;
  readonly #writer: GroupCommit | undefined;
  readonly #pruner: IntervalPruner;
  /** The batch still taking rows: its statement has not started. */
  #open: { rows: PendingRow[]; stored: Promise<void> } | undefined;

  constructor(db: Kysely<Database>, clock: Clock, options: { writer?: GroupCommit; pruneEveryMs?: number } = {}) {
    this.#db = db;
    this.#clock = clock;
    this.#writer = options.writer;
    this.#pruner = new IntervalPruner(clock, options.pruneEveryMs ?? 60_000, (now) => this.prune(now));
  }

  /** Mints a handle for `claims` and stores them until `claims.exp`; resolves with the handle once durable. */
  async store(claims: ReferenceClaims): Promise<string> {
    const handle = referenceTokenPrefix + randomBytes(32).toString('base64url');
    const row = { digest: handleDigest(handle), claims: JSON.stringify(claims), expires_at: claims.exp * 1000 };
    this.#pruner.maybe(this.#clock.now());
    if (!this.#writer) {
      await this.#insert(this.#db, [row]);
      return handle;
    }
    let batch = this.#open;
    if (!batch) {
      const rows: PendingRow[] = [];
      const stored = this.#writer.run((trx) => {
        // From here on, new handles go to the next batch.
        if (this.#open?.rows === rows) this.#open = undefined;
        return this.#insert(trx, rows);
      });
      batch = this.#open = { rows, stored };
      // A batch whose write never ran (the database unavailable at BEGIN, or an earlier item of the
      // group failed) must not stay open: every later handle would join its rejection.
      const close = () => {
        if (this.#open?.rows === rows) this.#open = undefined;
      };
      stored.then(close, close);
    }
    batch.rows.push(row);
    await batch.stored;
    return handle;
  }

  /**
   * The claims of an unexpired handle (`exp` after `nowSeconds`, as for a JWT: RFC 7519 §4.1.4),
   * else undefined — for a string that is not a handle, without asking the database. Liveness
   * (revocation, grant, mandate) is the caller's: src/tokens/liveness.ts, as for every token.
   */
  async resolve(handle: string, nowSeconds: number): Promise<ReferenceClaims | undefined> {
    if (!isReferenceHandle(handle)) return undefined;
    const row = await claimsRead.first(this.#db, [handleDigest(handle)]);
    if (!row) return undefined;
    const claims = JSON.parse(row.claims) as ReferenceClaims;
    if (!(typeof claims.exp === 'number' && claims.exp > nowSeconds)) return undefined;
    return claims;
  }

  /** Deletes rows of tokens that have expired (they resolve to nothing anyway); resolves the number deleted. */
  async prune(nowMs: number): Promise<number> {
    return deleteExpired(this.#db, { table: 'reference_tokens', key: 'digest', expiresBy: 'expires_at' }, nowMs, { inclusive: true });
  }

  /** Resolves when an opportunistic prune started by `store` has finished (tests and shutdown). */
  async settled(): Promise<void> {
    await this.#pruner.settled();
  }

  async #insert(db: Kysely<Database> | Transaction<Database>, rows: PendingRow[]): Promise<void> {
    for (let i = 0; i < rows.length; i += rowsPerStatement) {
      await db.insertInto('reference_tokens').values(rows.slice(i, i + rowsPerStatement)).execute();
    }
  }

}

const claimsRead = new FixedQuery<{ claims: string }>('select claims from reference_tokens where digest = ?');

/**
 * Reads an access token of ours, whichever its format: a handle resolves to its stored claims, any
 * other string is verified as our JWT (src/tokens/access-token.ts). Introspection, revocation and
 * token exchange read tokens through this one function; liveness is then src/tokens/liveness.ts
 * for both. `now` (epoch seconds, default the clock's): the time it must have been unexpired at —
 * signed-request evidence reads a token as of when the request was signed. Never throws for bad input.
 */
export async function readAccessToken(ctx: Pick<Context, 'keys' | 'config' | 'clock' | 'referenceTokens'>, token: string, now: number = epochSeconds(ctx.clock)): Promise<VerifyResult> {
  if (!token.startsWith(referenceTokenPrefix)) return verifyAccessToken(ctx.keys, ctx.config.issuer, token, now);
  const claims = await ctx.referenceTokens.resolve(token, now);
  return claims ? { ok: true, claims } : { ok: false, reason: 'unknown or expired reference token' };
}
