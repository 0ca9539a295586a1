import type { Kysely } from 'kysely';

/**
 * An index on `refresh_tokens.expires_at`: pruning deletes expired refresh tokens a chunk at a
 * time (src/storage/pruner.ts, `deleteExpired`), and each chunk finds its rows through this index;
 * without it every chunk, and before chunks the one DELETE, read the whole table.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.createIndex('refresh_tokens_expires_at').on('refresh_tokens').column('expires_at').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropIndex('refresh_tokens_expires_at').execute();
}
