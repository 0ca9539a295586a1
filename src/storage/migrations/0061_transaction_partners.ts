import type { Kysely } from 'kysely';

/**
 * `transaction_partners` (issue 26 item 5, review; src/transactions/partner-txn.ts): the partners a
 * txn is shared with — the partner it was started here through (`started`: its grant or token named
 * a txn we had never seen), or a partner we sent it to in a JWT authorization grant (`sent`). A
 * partner's `txn` is taken only when this table pairs it with that partner, or when the txn is new
 * here; any other txn belongs to a trade the partner is no party to. One row per txn and partner;
 * never pruned (the audit log outlives tokens, as `transactions` does).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('transaction_partners')
    .addColumn('txn', 'text', (c) => c.notNull())
    .addColumn('partner_id', 'text', (c) => c.notNull())
    .addColumn('how', 'text', (c) => c.notNull())
    .addColumn('at', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('transaction_partners_pk', ['txn', 'partner_id'])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('transaction_partners').execute();
}
