import type { Kysely } from 'kysely';

/**
 * Reference access tokens (RFC 7662; src/tokens/reference-tokens.ts, docs/lifecycle.md): for a
 * resource server registered with `access_token_format: reference`, the token endpoint answers an
 * opaque handle and keeps here what the JWT would have carried.
 * - `digest`: base64url SHA-256 of the handle (the handle itself is never stored);
 * - `claims`: the access token's claims (JSON), exactly as the issuance path built them;
 * - `expires_at`: the token's `exp`, in ms; a row past it is dead and pruned.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('reference_tokens')
    .addColumn('digest', 'text', (c) => c.primaryKey())
    .addColumn('claims', 'text', (c) => c.notNull())
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('reference_tokens_expires_at').on('reference_tokens').column('expires_at').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('reference_tokens').execute();
}
