import type { Kysely } from 'kysely';

/**
 * Break-glass (src/approvals/break-glass, docs/recovery.md "Break-glass"):
 * - `break_glass_accounts`: the named emergency accounts apply declares. An account is a service
 *   client of the same id (declared under `clients`), disabled by default: its client
 *   authentication works only while one of its activations is in force. The row holds what an
 *   activation may grant (`scopes`, JSON array; one `audience`), how long an activation lasts and
 *   who may approve one (`custodians`: JSON array of usernames, or null for anyone with the
 *   `break-glass-custodian` role).
 * - `break_glass_activations`: one per approved activation request (the id is the approval
 *   request's, so the request, its decisions, the tokens and every event share one txn), what it
 *   grants (copied from the account when requested: a later apply does not widen it), from when to
 *   when, and when and why it ended. `in_force_account` is the account's name while the
 *   activation has not ended and null once it has: its unique index lets one activation at most be
 *   in force per account, whatever several nodes do at once.
 * - `break_glass_reviews`: one per ended activation, open until a person with the `compliance`
 *   role closes it with a note.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('break_glass_accounts')
    .addColumn('name', 'text', (c) => c.primaryKey())
    .addColumn('scopes', 'text', (c) => c.notNull())
    .addColumn('audience', 'text', (c) => c.notNull())
    .addColumn('activation_seconds', 'integer', (c) => c.notNull())
    .addColumn('custodians', 'text')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema
    .createTable('break_glass_activations')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('account', 'text', (c) => c.notNull())
    .addColumn('requester', 'text', (c) => c.notNull())
    .addColumn('reason', 'text', (c) => c.notNull())
    .addColumn('scopes', 'text', (c) => c.notNull())
    .addColumn('audience', 'text', (c) => c.notNull())
    .addColumn('starts_at', 'bigint', (c) => c.notNull())
    .addColumn('ends_at', 'bigint', (c) => c.notNull())
    .addColumn('in_force_account', 'text')
    .addColumn('ended_at', 'bigint')
    // 'expired' (its time ran out) | 'ended' (stood down early).
    .addColumn('end_reason', 'text')
    .execute();
  await db.schema.createIndex('break_glass_one_in_force').on('break_glass_activations').column('in_force_account').unique().execute();
  await db.schema.createIndex('break_glass_activations_due').on('break_glass_activations').columns(['ended_at', 'ends_at']).execute();
  await db.schema
    .createTable('break_glass_reviews')
    .addColumn('activation_id', 'text', (c) => c.primaryKey())
    .addColumn('account', 'text', (c) => c.notNull())
    .addColumn('opened_at', 'bigint', (c) => c.notNull())
    .addColumn('closed_at', 'bigint')
    .addColumn('closed_by', 'text')
    .addColumn('note', 'text')
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('break_glass_reviews').execute();
  await db.schema.dropTable('break_glass_activations').execute();
  await db.schema.dropTable('break_glass_accounts').execute();
}
