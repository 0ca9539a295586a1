import type { Kysely } from 'kysely';

/**
 * The risk engine's memory (src/risk, docs/risk.md), shared by every node and kept across restarts:
 * - `risk_sightings`: what has been seen for a principal, and when first and last: a person's
 *   devices, a person's or client's networks, the scopes, audiences and resources a client was
 *   issued, the actors in a subject's delegation chains, an administrator's networks. A signal
 *   fires on what is not here (or not seen recently). `last_seen` is refreshed at most once per
 *   hour per sighting (src/risk/sightings.ts), so a steady principal costs no write.
 * - `risk_settings`: apply's `risk` section, one row per setting (JSON value).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('risk_sightings')
    // 'User' | 'Client' | 'Admin'.
    .addColumn('principal_type', 'text', (c) => c.notNull())
    .addColumn('principal_id', 'text', (c) => c.notNull())
    // src/risk/sightings.ts SightingKind.
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('value', 'text', (c) => c.notNull())
    .addColumn('first_seen', 'bigint', (c) => c.notNull())
    .addColumn('last_seen', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('risk_sightings_pk', ['principal_type', 'principal_id', 'kind', 'value'])
    .execute();
  await db.schema.createIndex('risk_sightings_last_seen').on('risk_sightings').column('last_seen').execute();
  await db.schema
    .createTable('risk_settings')
    .addColumn('name', 'text', (c) => c.primaryKey())
    .addColumn('value', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('risk_settings').execute();
  await db.schema.dropTable('risk_sightings').execute();
}
