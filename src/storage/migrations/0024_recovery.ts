import type { Kysely } from 'kysely';

/**
 * Recovery of a lost authenticator with independent approval (src/identity/recovery,
 * docs/recovery.md). The request itself is an approval request of kind `recovery` (migration
 * 0021); this migration holds what is the recovery's own:
 * - `recovery_links`: one per recovery request (keyed by its id): the person, who opened it
 *   (`help_desk` or `self`), the credentials declared lost (JSON), and the enrolment link — only
 *   the SHA-256 of its random token is stored (unique: the link is looked up by it). The link is
 *   inert until the request is approved; approval sets `expires_at` (the approval plus apply's
 *   `recovery.enrolment_ttl`). `password_fingerprint` is the SHA-256 of the person's password hash
 *   when the request was opened (a password set after the opening, by anyone, voids the link). `failures`
 *   counts wrong passwords typed on the link's page (the link dies at the limit); `used_at` is
 *   its single use (a conditional update with the passkey's insert);
 * - `recovery_settings`: apply's `recovery` section (`distinct_desks`, `enrolment_ttl`,
 *   `approval_ttl`), one row per setting.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('recovery_links')
    .addColumn('request_id', 'text', (c) => c.primaryKey())
    .addColumn('user_id', 'text', (c) => c.notNull())
    // 'help_desk' | 'self'.
    .addColumn('opened_by', 'text', (c) => c.notNull())
    // JSON array: 'passkeys' and/or 'authenticator'.
    .addColumn('lost', 'text', (c) => c.notNull())
    .addColumn('link_digest', 'text', (c) => c.notNull().unique())
    .addColumn('password_fingerprint', 'text')
    .addColumn('approved_at', 'bigint')
    .addColumn('expires_at', 'bigint')
    .addColumn('failures', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('used_at', 'bigint')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('recovery_links_user_id').on('recovery_links').column('user_id').execute();
  await db.schema
    .createTable('recovery_settings')
    .addColumn('name', 'text', (c) => c.primaryKey())
    .addColumn('value', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('recovery_settings').execute();
  await db.schema.dropTable('recovery_links').execute();
}
