import type { Kysely } from 'kysely';
import { FixedQuery } from '../storage/fixed-query.ts';
import { deleteExpired } from '../storage/pruner.ts';
import type { Database } from '../storage/schema.ts';

export interface RevocationTables {
  /**
   * Access tokens revoked before their expiry (RFC 7009), by jti, and refresh families whose access
   * tokens are, by `familyKey`; a row lives until the last token it revokes would expire.
   */
  revoked_tokens: { jti: string; expires_at: number; revoked_at: number; reason: string };
}

/**
 * The key of a refresh family's row: every access token naming the family (`refresh_family`) is
 * revoked by it. A jti is a UUID (src/tokens/access-token.ts), so no jti is ever such a key.
 */
export function familyKey(familyId: string): string {
  return `refresh_family:${familyId}`;
}

/**
 * Revoked access tokens, by jti or by the refresh family they were issued with. A JWT cannot be
 * recalled, so introspection, token exchange and our protected resources consult this list and
 * answer `active: false` for a revoked token until it expires (RFC 7009 §2, RFC 7662 §2.2).
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

  /**
   * Records the revocation of every access token issued with a refresh family (RFC 7009 §2.1),
   * until `expiresAtMs`, when the last of them has expired; revoking twice is not an error.
   */
  async revokeFamily(familyId: string, expiresAtMs: number, nowMs: number, reason: string): Promise<void> {
    await this.revoke(familyKey(familyId), expiresAtMs, nowMs, reason);
  }

  /**
   * Whether the token `jti` is revoked, or the refresh family it names (`refresh_family`): one
   * statement either way, a fixed text every token exchange and protected-resource request asks. A
   * token without a family (client_credentials) is asked exactly what it always was.
   */
  async isRevoked(jti: string, family?: string): Promise<boolean> {
    if (family === undefined) return (await revokedRead.first(this.#db, [jti])) !== undefined;
    return (await revokedOrFamilyRead.first(this.#db, [jti, familyKey(family)])) !== undefined;
  }

  /** Drops rows of tokens that have expired anyway. */
  async prune(nowMs: number): Promise<number> {
    return deleteExpired(this.#db, { table: 'revoked_tokens', key: 'jti', expiresBy: 'expires_at' }, nowMs);
  }
}

const revokedRead = new FixedQuery<{ one: number }>('select 1 as one from revoked_tokens where jti = ? limit 1');
const revokedOrFamilyRead = new FixedQuery<{ one: number }>('select 1 as one from revoked_tokens where jti in (?, ?) limit 1');
