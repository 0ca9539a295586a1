import type { Kysely } from 'kysely';

/**
 * Legal holds on the audit log (src/audit/holds.ts, docs/audit.md "Legal hold"): what compliance
 * placed a hold on — a txn, a subject, a client (`value`) or a time range (`from_time`, `to_time`,
 * epoch ms, to exclusive) — under which matter, by whom and when. Pruning never removes an event
 * an active hold covers. `released_at` stays null until a release (not built yet: a hold is kept).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('audit_holds')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('value', 'text')
    .addColumn('from_time', 'bigint')
    .addColumn('to_time', 'bigint')
    .addColumn('matter_ref', 'text', (c) => c.notNull())
    .addColumn('placed_by', 'text', (c) => c.notNull())
    .addColumn('placed_at', 'bigint', (c) => c.notNull())
    .addColumn('released_at', 'bigint')
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('audit_holds').execute();
}
