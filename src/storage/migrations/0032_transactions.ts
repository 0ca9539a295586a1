import type { Kysely } from 'kysely';

/**
 * `transactions`: each txn a client started at its first token (src/transactions/txn.ts). The
 * primary key makes a second start fail on every node at once; the row names the client, so its
 * own reuse and another client's attempt are told apart in the refusal.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('transactions')
    .addColumn('txn', 'text', (c) => c.primaryKey())
    .addColumn('client_id', 'text', (c) => c.notNull())
    .addColumn('started_at', 'bigint', (c) => c.notNull())
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('transactions').execute();
}
