import type { Kysely } from 'kysely';

/** The replay cache of single-use JWT identifiers (src/tokens/replay-cache.ts). */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('jti_replay')
    .addColumn('key', 'text', (c) => c.primaryKey())
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('jti_replay_expires_at').on('jti_replay').column('expires_at').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('jti_replay').execute();
}
