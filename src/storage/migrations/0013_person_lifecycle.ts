import { sql, type Kysely } from 'kysely';

/**
 * Person lifecycle (src/identity/lifecycle.ts): why an account is locked (`failed_logins` for the
 * automatic lockout, `admin` for an administrator's lock), and the per-person cut-off before which
 * every token of the person is dead (a password reset, "sign out everywhere", a lock or disable).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('users').addColumn('lock_reason', 'text').execute();
  await db.schema.alterTable('users').addColumn('tokens_valid_after', 'bigint').execute();
  // Accounts locked before this migration: who locked them is unknown, so they count as locked by
  // an administrator, whose lock ends the person's tokens (fail closed).
  await sql`update users set lock_reason = 'admin' where status = 'locked'`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('users').dropColumn('tokens_valid_after').execute();
  await db.schema.alterTable('users').dropColumn('lock_reason').execute();
}
