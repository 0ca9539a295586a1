import type { Kysely } from 'kysely';

/**
 * SCIM 2.0 provisioning (issue 23 item 3, docs/lifecycle.md "SCIM 2.0"): what SCIM knows of a
 * person beside the person themselves — the provisioning client's `externalId` (RFC 7643 §3.1),
 * and whether the person was deleted through SCIM (offboarded, then hidden from SCIM's view: a
 * regulated firm keeps the person's history). One row per person SCIM has touched; SCIM's own
 * table, so the people side's `users` table stays as it is.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('scim_users')
    .addColumn('user_id', 'text', (c) => c.primaryKey())
    .addColumn('external_id', 'text')
    .addColumn('hidden_at', 'bigint')
    // When SCIM created the person (null: a person apply or the admin API made, that SCIM adopted):
    // only for people it created may SCIM set a password or re-activate them.
    .addColumn('provisioned_at', 'bigint')
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('scim_users_external_id').on('scim_users').column('external_id').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('scim_users').execute();
}
