import type { Kysely } from 'kysely';

/**
 * An audit key may be kept in the PKCS#11 token (CLEARANCE_AUDIT_KEY_CUSTODY=pkcs11, docs/pki.md
 * "Key custody"): `key_ref` names it there, and its `private_key` and `master_key_id` are empty —
 * the private key never leaves the token.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('audit_keys').addColumn('key_ref', 'text').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('audit_keys').dropColumn('key_ref').execute();
}
