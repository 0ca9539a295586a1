import type { Kysely } from 'kysely';

/**
 * Leases of the lifecycle schedules (src/lifecycle/lease.ts): one row per scheduled step, naming
 * the node that runs it and until when. A node takes a lease with one conditional upsert, so on
 * every dialect exactly one node at a time runs a step (key rotation, retirement) while every
 * node follows what it wrote.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('lifecycle_leases')
    .addColumn('name', 'text', (c) => c.primaryKey())
    .addColumn('holder', 'text', (c) => c.notNull())
    .addColumn('acquired_at', 'bigint', (c) => c.notNull())
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('lifecycle_leases').execute();
}
