import type { Kysely } from 'kysely';

/**
 * Apply's `rate_limits` section (src/risk/limits/settings.ts, docs/apply.md), one row per limit:
 * `address`, `endpoint`, `client`, `person`, and `route:<path>` for an endpoint route's own limit.
 * `value` is JSON: `{"quota": n, "window": seconds}`, or `"off"`. Stored in the database so every
 * node limits alike; each node caches it (generation `rate_limits`). The buckets themselves are
 * not here: they live in Redis or in each node's memory.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('rate_limits')
    .addColumn('name', 'text', (c) => c.primaryKey())
    .addColumn('value', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('rate_limits').execute();
}
