import type { Kysely } from 'kysely';

/**
 * The address book of transfer destinations with its change control (issue 24 item 2,
 * docs/transfers.md "Destination control"): destinations per legal entity and account, each
 * version of each with who asked, who approved and when it becomes usable, and the per-entity
 * cool-down. src/transfers/tables.ts says what each column holds.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('transfer_destinations')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('lei', 'text', (c) => c.notNull())
    .addColumn('account', 'text', (c) => c.notNull())
    .addColumn('destination_key', 'text', (c) => c.notNull())
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addUniqueConstraint('transfer_destinations_key', ['lei', 'account', 'destination_key'])
    .execute();
  await db.schema
    .createTable('transfer_destination_versions')
    .addColumn('destination_id', 'text', (c) => c.notNull())
    .addColumn('version', 'integer', (c) => c.notNull())
    .addColumn('destination', 'text', (c) => c.notNull())
    .addColumn('label', 'text')
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('requested_by', 'text', (c) => c.notNull())
    .addColumn('requester_type', 'text', (c) => c.notNull())
    .addColumn('requested_at', 'bigint', (c) => c.notNull())
    .addColumn('via', 'text', (c) => c.notNull())
    .addColumn('approval_request', 'text')
    .addColumn('request_expires_at', 'bigint')
    .addColumn('review_reason', 'text')
    .addColumn('approved_by', 'text')
    .addColumn('approved_at', 'bigint')
    .addColumn('usable_from', 'bigint')
    .addColumn('cooldown_ms', 'bigint')
    .addColumn('decided_at', 'bigint')
    .addColumn('removed_by', 'text')
    .addPrimaryKeyConstraint('transfer_destination_versions_pk', ['destination_id', 'version'])
    .execute();
  await db.schema.createIndex('transfer_destination_versions_request').on('transfer_destination_versions').column('approval_request').execute();
  await db.schema
    .createTable('transfer_destination_settings')
    .addColumn('lei', 'text', (c) => c.primaryKey())
    .addColumn('cooldown_ms', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const table of ['transfer_destination_settings', 'transfer_destination_versions', 'transfer_destinations']) await db.schema.dropTable(table).execute();
}
