import type { Kysely } from 'kysely';

/**
 * Transfer enforcement at issuance (issue 24, src/transfers/enforce.ts, docs/transfers.md):
 * - `transfer_controls`: apply's `transfer_controls` section, one JSON row (`controls`): thresholds,
 *   daily limits, cool-down and first-use hold per legal entity, account and asset;
 * - `transfer_ledger`: the rolling 24-hour totals when no Redis is configured — one row per
 *   reservation (scope = legal entity, account and asset; id = the transfer's; amount in
 *   micro-units), deleted once out of the window;
 * - `transfer_destination_uses`: when each source account first used each destination (by its
 *   address-book key), for the risk holds on a first use. Kept for 400 days after the last use.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('transfer_controls')
    .addColumn('name', 'text', (c) => c.primaryKey())
    .addColumn('value', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema
    .createTable('transfer_ledger')
    .addColumn('scope', 'text', (c) => c.notNull())
    .addColumn('id', 'text', (c) => c.notNull())
    .addColumn('amount', 'bigint', (c) => c.notNull())
    .addColumn('reserved_at', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('transfer_ledger_pk', ['scope', 'id'])
    .execute();
  await db.schema.createIndex('transfer_ledger_scope_time').on('transfer_ledger').columns(['scope', 'reserved_at']).execute();
  await db.schema
    .createTable('transfer_destination_uses')
    .addColumn('account', 'text', (c) => c.notNull())
    .addColumn('destination_key', 'text', (c) => c.notNull())
    .addColumn('first_used_at', 'bigint', (c) => c.notNull())
    .addColumn('last_used_at', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('transfer_destination_uses_pk', ['account', 'destination_key'])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('transfer_destination_uses').execute();
  await db.schema.dropTable('transfer_ledger').execute();
  await db.schema.dropTable('transfer_controls').execute();
}
