import type { Kysely } from 'kysely';

/** Mandates (src/mandates): the durable, versioned delegation records of DESIGN §3. */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('mandates')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('current_version', 'integer', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('mandate_versions')
    .addColumn('mandate_id', 'text', (c) => c.notNull())
    .addColumn('version', 'integer', (c) => c.notNull())
    .addColumn('grantor_kind', 'text', (c) => c.notNull())
    .addColumn('grantor_id', 'text', (c) => c.notNull())
    .addColumn('grantee_kind', 'text', (c) => c.notNull())
    .addColumn('grantee_id', 'text', (c) => c.notNull())
    .addColumn('scopes', 'text', (c) => c.notNull())
    .addColumn('constraints', 'text', (c) => c.notNull())
    .addColumn('legal_basis_reference', 'text', (c) => c.notNull())
    .addColumn('legal_basis_text', 'text')
    .addColumn('effective_from', 'bigint', (c) => c.notNull())
    .addColumn('effective_to', 'bigint')
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('created_by', 'text', (c) => c.notNull())
    .addColumn('accepted_by', 'text')
    .addColumn('accepted_at', 'bigint')
    .addColumn('superseded_at', 'bigint')
    .addColumn('revoked_at', 'bigint')
    .addColumn('revoked_by', 'text')
    .addColumn('revoke_reason', 'text')
    .addColumn('expired_at', 'bigint')
    // One row per version: two concurrent amendments cannot both write version n+1.
    .addPrimaryKeyConstraint('mandate_versions_pk', ['mandate_id', 'version'])
    .execute();
  await db.schema.createIndex('mandate_versions_grantee').on('mandate_versions').columns(['grantee_kind', 'grantee_id']).execute();
  await db.schema.createIndex('mandate_versions_grantor').on('mandate_versions').columns(['grantor_kind', 'grantor_id']).execute();
  // The expiry sweep looks for live versions whose effective_to has passed.
  await db.schema.createIndex('mandate_versions_status_effective_to').on('mandate_versions').columns(['status', 'effective_to']).execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('mandate_versions').execute();
  await db.schema.dropTable('mandates').execute();
}
