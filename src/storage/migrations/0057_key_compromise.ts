import type { Kysely } from 'kysely';

/**
 * A compromised signing key (issue 26 item 1; src/keys/compromise.ts, docs/keys.md "Token-signing
 * keys: compromise"):
 * - `signing_keys.compromised_at`: when the key was revoked as compromised (ms). Such a key is also
 *   retired (`retired_at`, the same instant): out of the JWKS, never a verification key, never
 *   signing again — and nothing ever clears either column;
 * - `refresh_tokens.access_kid`: the kid of the key that signed the tokens issued with this refresh
 *   token (its access token, else its ID token; '' when nothing was signed: a reference access
 *   token without an ID token), so revoking a key revokes the families whose latest tokens it
 *   signed. Null on rows written before this migration: those are matched by the key's signing
 *   window instead.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('signing_keys').addColumn('compromised_at', 'bigint').execute();
  await db.schema.alterTable('refresh_tokens').addColumn('access_kid', 'text').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('refresh_tokens').dropColumn('access_kid').execute();
  await db.schema.alterTable('signing_keys').dropColumn('compromised_at').execute();
}
