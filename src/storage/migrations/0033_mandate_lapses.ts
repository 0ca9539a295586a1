import type { Kysely } from 'kysely';

/**
 * Lapses in flight (src/mandates/lapses.ts, docs/mandates.md "Lapses in flight"): one row per
 * mandate version whose lapse was looked at for transactions in flight, inserted by the node that
 * raises the version's `mandate.lapsed_in_flight` events in the same transaction — the primary key
 * makes a second node's (or a rerun's) insert a no-op, so each lapse is raised once.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('mandate_lapses')
    .addColumn('mandate_id', 'text', (c) => c.notNull())
    .addColumn('version', 'integer', (c) => c.notNull())
    .addColumn('lapse', 'text', (c) => c.notNull())
    .addColumn('lapsed_at', 'bigint', (c) => c.notNull())
    .addColumn('txns', 'integer', (c) => c.notNull())
    .addColumn('raised_at', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('mandate_lapses_pk', ['mandate_id', 'version'])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('mandate_lapses').execute();
}
