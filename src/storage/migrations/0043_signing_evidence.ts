import type { Kysely } from 'kysely';

/**
 * Signing evidence (src/evidence, docs/transaction-signing.md): each signed request a registered
 * producer (a resource server's guard) reported, as the canonical record Clearance verified and
 * completed (the signer's chain, its OCSP status), with the RFC 3161 time stamp over its digest.
 * Its `evidence.recorded` audit event carries the digest, so the log vouches for the record.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('signing_evidence')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('txn', 'text', (c) => c.notNull())
    .addColumn('record', 'text', (c) => c.notNull())
    .addColumn('record_sha256', 'text', (c) => c.notNull())
    .addColumn('timestamp_token', 'text')
    .addColumn('timestamp_time', 'bigint')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('signing_evidence_txn').on('signing_evidence').column('txn').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('signing_evidence').execute();
}
