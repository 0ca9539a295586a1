import type { Kysely } from 'kysely';

/**
 * Per-subject keys of the audit log's personal fields (issue 24 item 4; src/audit/subject-keys.ts,
 * docs/privacy.md "Erasure"): one AES-256 key per data subject and generation, sealed by the master
 * key. Not an audit table: erasure overwrites `sealed_key` with null (crypto-shredding) and keeps
 * the row as its tombstone. The unique (subject, generation) makes two nodes creating the same
 * subject's key agree on one.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('audit_subject_keys')
    .addColumn('kid', 'text', (c) => c.primaryKey())
    .addColumn('subject', 'text', (c) => c.notNull())
    .addColumn('generation', 'integer', (c) => c.notNull())
    .addColumn('sealed_key', 'text')
    .addColumn('master_key_id', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('erased_at', 'bigint')
    .addColumn('erased_by', 'text')
    .addColumn('erase_reason', 'text')
    .addUniqueConstraint('audit_subject_keys_subject_generation', ['subject', 'generation'])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('audit_subject_keys').execute();
}
