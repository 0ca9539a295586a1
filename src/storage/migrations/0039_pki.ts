import type { Kysely } from 'kysely';

/**
 * The private CA (src/pki, docs/pki.md): software custody keys, the CA's own certificates, the
 * certificate profiles, the issued certificates with their status, issuance waiting for approval,
 * and each issuing authority's latest CRL. See src/pki/tables.ts for what each column holds.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('custody_keys')
    .addColumn('ref', 'text', (c) => c.primaryKey())
    .addColumn('label', 'text', (c) => c.notNull().unique())
    .addColumn('key_type', 'text', (c) => c.notNull())
    .addColumn('public_key', 'text', (c) => c.notNull())
    .addColumn('private_key', 'text', (c) => c.notNull())
    .addColumn('master_key_id', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema
    .createTable('pki_authorities')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('role', 'text', (c) => c.notNull())
    .addColumn('issuer_id', 'text', (c) => c.notNull())
    .addColumn('subject', 'text', (c) => c.notNull())
    .addColumn('certificate', 'text', (c) => c.notNull())
    .addColumn('key_ref', 'text')
    .addColumn('not_before', 'bigint', (c) => c.notNull())
    .addColumn('not_after', 'bigint', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema
    .createTable('pki_profiles')
    .addColumn('name', 'text', (c) => c.primaryKey())
    .addColumn('definition', 'text', (c) => c.notNull())
    .addColumn('version', 'integer', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema
    .createTable('pki_certificates')
    .addColumn('serial', 'text', (c) => c.primaryKey())
    .addColumn('authority_id', 'text', (c) => c.notNull())
    .addColumn('profile', 'text', (c) => c.notNull())
    .addColumn('profile_version', 'integer', (c) => c.notNull())
    .addColumn('holder', 'text', (c) => c.notNull())
    .addColumn('subject', 'text', (c) => c.notNull())
    .addColumn('sans', 'text', (c) => c.notNull())
    .addColumn('thumbprint', 'text', (c) => c.notNull().unique())
    .addColumn('spki_sha256', 'text', (c) => c.notNull())
    .addColumn('certificate', 'text', (c) => c.notNull())
    .addColumn('not_before', 'bigint', (c) => c.notNull())
    .addColumn('not_after', 'bigint', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('revoked_at', 'bigint')
    .addColumn('revocation_reason', 'integer')
    .addColumn('revoked_by', 'text')
    .addColumn('requested_by', 'text', (c) => c.notNull())
    .addColumn('renewed_from', 'text')
    .addColumn('approval_request', 'text')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('pki_certificates_holder').on('pki_certificates').columns(['holder', 'profile']).execute();
  await db.schema.createIndex('pki_certificates_revoked').on('pki_certificates').columns(['authority_id', 'status', 'not_after']).execute();
  await db.schema
    .createTable('pki_requests')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('profile', 'text', (c) => c.notNull())
    .addColumn('holder', 'text', (c) => c.notNull())
    .addColumn('csr', 'text', (c) => c.notNull())
    .addColumn('lifetime_seconds', 'integer', (c) => c.notNull())
    .addColumn('requested_by', 'text', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('serial', 'text')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema
    .createTable('pki_crls')
    .addColumn('authority_id', 'text', (c) => c.primaryKey())
    .addColumn('crl_number', 'bigint', (c) => c.notNull())
    .addColumn('this_update', 'bigint', (c) => c.notNull())
    .addColumn('next_update', 'bigint', (c) => c.notNull())
    .addColumn('crl', 'text', (c) => c.notNull())
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const table of ['pki_crls', 'pki_requests', 'pki_certificates', 'pki_profiles', 'pki_authorities', 'custody_keys']) {
    await db.schema.dropTable(table).execute();
  }
}
