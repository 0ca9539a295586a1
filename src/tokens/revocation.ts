import type { Kysely } from 'kysely';
import { FixedQuery } from '../storage/fixed-query.ts';
import { deleteExpired } from '../storage/pruner.ts';
import type { Database } from '../storage/schema.ts';

export interface RevocationTables {
  /** Access tokens revoked before their expiry (RFC 7009); a row lives until the token would expire. */
  revoked_tokens: { jti: string; expires_at: number; revoked_at: number; reason: string };
}

/**
 * Revoked JWT access tokens by jti. A JWT cannot be recalled, so introspection consults this list
 * and answers `active: false` for a revoked token until it expires (RFC 7009 §2, RFC 7662 §2.2).
 */
export class RevocationList {
  readonly #db: Kysely<Database>;

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  /** Records a revocation; revoking twice is not an error (RFC 7009 §2.2: the same 200). */
  async revoke(jti: string, expiresAtMs: number, nowMs: number, reason: string): Promise<void> {
    await this.#db
      .insertInto('revoked_tokens')
      .values({ jti, expires_at: expiresAtMs, revoked_at: nowMs, reason })
      .onConflict((oc) => oc.column('jti').doNothing())
      .execute();
  }

  /** A fixed text: every token exchange and protected-resource request asks it. */
  async isRevoked(jti: string): Promise<boolean> {
    return (await revokedRead.first(this.#db, [jti])) !== undefined;
  }

  /** Drops rows of tokens that have expired anyway. */
  async prune(nowMs: number): Promise<number> {
    return deleteExpired(this.#db, { table: 'revoked_tokens', key: 'jti', expiresBy: 'expires_at' }, nowMs);
  }
}

const revokedRead = new FixedQuery<{ one: number }>('select 1 as one from revoked_tokens where jti = ? limit 1');
