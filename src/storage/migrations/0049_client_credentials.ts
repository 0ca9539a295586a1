import { sql, type Kysely } from 'kysely';

/**
 * The client credential lifecycle (issue 23 item 4, docs/lifecycle.md "Client credential
 * lifecycle"): when a client's secret was made and when it expires (RFC 7591 §3.2.1
 * client_secret_expires_at), the previous secret's digest and the end of its rollover window
 * during a rotation, and the expiry warnings already given (one per credential and threshold).
 * Secrets made before this migration keep no expiry (they are dated from the client's creation).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('clients').addColumn('secret_created_at', 'bigint').execute();
  await db.schema.alterTable('clients').addColumn('secret_expires_at', 'bigint').execute();
  await db.schema.alterTable('clients').addColumn('previous_secret_hash', 'text').execute();
  await db.schema.alterTable('clients').addColumn('previous_secret_valid_until', 'bigint').execute();
  await sql`update clients set secret_created_at = created_at where secret_hash is not null`.execute(db);
  await db.schema
    .createTable('client_credential_warnings')
    .addColumn('client_id', 'text', (c) => c.notNull())
    // `secret:<created_at>` or `certificate:<SHA-256 of the DER>`: a new credential warns afresh.
    .addColumn('credential', 'text', (c) => c.notNull())
    .addColumn('threshold_days', 'integer', (c) => c.notNull())
    .addColumn('warned_at', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('client_credential_warnings_pk', ['client_id', 'credential', 'threshold_days'])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('client_credential_warnings').execute();
  for (const column of ['previous_secret_valid_until', 'previous_secret_hash', 'secret_expires_at', 'secret_created_at']) {
    await db.schema.alterTable('clients').dropColumn(column).execute();
  }
}
