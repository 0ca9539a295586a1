import type { Kysely } from 'kysely';

/**
 * The sign-in's risk and the intrusion signals (src/risk, docs/risk.md):
 * - `sessions.risk`: the assessment of the sign-in that started the session (JSON: score, level,
 *   outcome, signals), so the codes and refresh tokens issued from it carry its signals into every
 *   issuance (`Issuance.loginRisk`); null for sessions started before this migration.
 * - `pending_sign_ins.risk`: the assessment made when the password was verified, completed by the
 *   second factor (the second step does not assess again).
 * - `users.last_failed_login_at`, `users.last_lockout_at`: when the account's latest failed sign-in
 *   and latest automatic lockout happened, beside the consecutive-failure count they date
 *   (`recent_failures`, `recent_lockout`). Shared by every node like the count itself; an
 *   administrator's unlock clears the count, not the dates.
 * - `risk_admin_actions`: one row per admin API or CLI write action (who, what, when), so every
 *   node counts an administrator's burst of changes (`admin_burst`); rows older than a day are pruned.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('sessions').addColumn('risk', 'text').execute();
  await db.schema.alterTable('pending_sign_ins').addColumn('risk', 'text').execute();
  await db.schema.alterTable('users').addColumn('last_failed_login_at', 'bigint').execute();
  await db.schema.alterTable('users').addColumn('last_lockout_at', 'bigint').execute();
  await db.schema
    .createTable('risk_admin_actions')
    .addColumn('admin_id', 'text', (c) => c.notNull())
    .addColumn('action', 'text', (c) => c.notNull())
    .addColumn('at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('risk_admin_actions_admin_at').on('risk_admin_actions').columns(['admin_id', 'at']).execute();
  await db.schema.createIndex('risk_admin_actions_at').on('risk_admin_actions').column('at').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('risk_admin_actions').execute();
  await db.schema.alterTable('users').dropColumn('last_lockout_at').execute();
  await db.schema.alterTable('users').dropColumn('last_failed_login_at').execute();
  await db.schema.alterTable('pending_sign_ins').dropColumn('risk').execute();
  await db.schema.alterTable('sessions').dropColumn('risk').execute();
}
