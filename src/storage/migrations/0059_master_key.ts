import { PostgresAdapter, sql, type Kysely } from 'kysely';

/**
 * Master key rotation (issue 26 item 3; src/keys/master-key-state.ts, src/keys/rewrap.ts,
 * docs/keys.md "The master key"): the sealed derivation root, the rewraps and their progress,
 * and master keys wrapped by a PKCS#11 token. The root row is written at the first start on this
 * version (not here: a migration has no master key). Audit keys gain the handover their
 * predecessor signed (src/audit/audit-key.ts rotate), so a bundle signed by a newer key verifies
 * for an auditor who pinned an older one.
 *
 * `audit_keys` stays append-only but for one change: its sealed private part (and the id of the
 * master key that sealed it) may be re-sealed by a rotation. Everything a verifier reads — key
 * id, origin, public key, time, custody reference, handover — still cannot be updated.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('master_key_root')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('sealed_root', 'text', (c) => c.notNull())
    .addColumn('master_key_id', 'text', (c) => c.notNull())
    .addColumn('origin', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema
    .createTable('master_key_rewraps')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('from_key_id', 'text', (c) => c.notNull())
    .addColumn('to_key_id', 'text', (c) => c.notNull())
    .addColumn('started_at', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .addColumn('completed_at', 'bigint')
    .addColumn('progress', 'text', (c) => c.notNull())
    .addColumn('actor', 'text', (c) => c.notNull())
    .execute();
  await db.schema
    .createTable('master_key_wraps')
    .addColumn('token', 'text', (c) => c.notNull())
    .addColumn('label', 'text', (c) => c.notNull())
    .addColumn('wrapped', 'text', (c) => c.notNull())
    .addColumn('key_id', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('master_key_wraps_pk', ['token', 'label'])
    .execute();
  await db.schema.alterTable('audit_keys').addColumn('handover_from', 'text').execute();
  await db.schema.alterTable('audit_keys').addColumn('handover_signature', 'text').execute();
  await allowAuditKeyResealing(db, true);
}

const fixed = ['key_id', 'origin', 'public_key', 'created_at', 'key_ref', 'handover_from', 'handover_signature'];
const refusal = "'the audit log is append-only: % on % is not allowed', tg_op, tg_table_name using errcode = '42501'";

/** The audit_keys triggers of 0002_audit, with (`allow`) or without the re-sealing of the private part. */
async function allowAuditKeyResealing(db: Kysely<unknown>, allow: boolean): Promise<void> {
  if (db.getExecutor().adapter instanceof PostgresAdapter) {
    const unchanged = fixed.map((column) => `new.${column} is not distinct from old.${column}`).join(' and ');
    const reseal = allow ? `if tg_op = 'UPDATE' and ${unchanged} then return new; end if;` : '';
    await sql.raw(`create or replace function audit_keys_append_only() returns trigger language plpgsql as $$\n  begin\n    ${reseal}\n    raise exception ${refusal};\n  end $$`).execute(db);
    return;
  }
  const changed = fixed.map((column) => `new.${column} is not old.${column}`).join(' or ');
  await sql.raw('drop trigger audit_keys_no_update').execute(db);
  await sql.raw(`create trigger audit_keys_no_update before update on audit_keys${allow ? ` when ${changed}` : ''} begin select raise(abort, 'the audit log is append-only: audit_keys'); end`).execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await allowAuditKeyResealing(db, false);
  await db.schema.alterTable('audit_keys').dropColumn('handover_signature').execute();
  await db.schema.alterTable('audit_keys').dropColumn('handover_from').execute();
  await db.schema.dropTable('master_key_wraps').execute();
  await db.schema.dropTable('master_key_rewraps').execute();
  await db.schema.dropTable('master_key_root').execute();
}
