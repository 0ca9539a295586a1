import type { Kysely } from 'kysely';

/**
 * The roles a person holds (`trader`, `approver`, …): a JSON array, sorted. A role may ask a
 * minimum authentication level (src/identity/acr.ts) and decides who recovers only through an
 * independent approval. Existing people hold none.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('users').addColumn('roles', 'text', (c) => c.notNull().defaultTo('[]')).execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('users').dropColumn('roles').execute();
}
