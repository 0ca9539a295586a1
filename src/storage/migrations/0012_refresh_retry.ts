import type { Kysely } from 'kysely';

/**
 * Refresh-token retries return the successor itself (issue 20 item 3; src/tokens/refresh-tokens.ts):
 * each child carries its token value sealed under its parent's token value (AES-256-GCM with a key
 * derived from the parent token, which the database holds only as a digest), so whoever presents the
 * parent again while the child is unused gets that same child. Tokens rotated before this migration
 * have none; a retry replaces such a child as before (state `superseded`).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('refresh_tokens').addColumn('retry_seal', 'text').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('refresh_tokens').dropColumn('retry_seal').execute();
}
