import { createHash, randomBytes } from 'node:crypto';
import type { Kysely, Transaction } from 'kysely';
import type { Database } from '../../storage/schema.ts';

/** Digest under which registration tokens are stored (256-bit random tokens: a fast hash suffices). */
export function tokenDigest(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

export function newRegistrationToken(): string {
  return randomBytes(32).toString('base64url');
}

/** Initial access tokens (RFC 7591 §3): issued by an admin, consumed by registrations. */
export class InitialAccessTokens {
  readonly #db: Kysely<Database>;

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  /** Issues a token; only its digest is stored, the token itself is returned once. */
  async issue(options: { allowedScope: string; uses: number; ttlSeconds: number; createdBy: string; now: number }): Promise<string> {
    const token = newRegistrationToken();
    await this.#db
      .insertInto('initial_access_tokens')
      .values({
        token_hash: tokenDigest(token),
        allowed_scope: options.allowedScope,
        uses_left: options.uses,
        expires_at: options.now + options.ttlSeconds * 1000,
        created_at: options.now,
        created_by: options.createdBy,
      })
      .execute();
    return token;
  }

  /** The scopes a usable token allows, without using it; undefined when unknown, expired or used up. */
  async peek(token: string, now: number): Promise<string[] | undefined> {
    const row = await this.#db
      .selectFrom('initial_access_tokens')
      .select('allowed_scope')
      .where('token_hash', '=', tokenDigest(token))
      .where('uses_left', '>', 0)
      .where('expires_at', '>', now)
      .executeTakeFirst();
    return row?.allowed_scope.split(' ').filter(Boolean);
  }

  /**
   * Uses a token once inside the registration's transaction: one conditional update, so parallel
   * registrations can never exceed its uses. False when it is no longer usable.
   */
  async consume(trx: Transaction<Database>, token: string, now: number): Promise<boolean> {
    const updated = await trx
      .updateTable('initial_access_tokens')
      .set((eb) => ({ uses_left: eb('uses_left', '-', 1) }))
      .where('token_hash', '=', tokenDigest(token))
      .where('uses_left', '>', 0)
      .where('expires_at', '>', now)
      .executeTakeFirst();
    return Number(updated.numUpdatedRows) === 1;
  }
}
