import type { Kysely } from 'kysely';

/**
 * Who set a person's password (src/identity/users.ts `upsertUser`, docs/approvals.md "Role
 * grants"): `users.password_set_by`, the token's subject of the admin-API write that set it — an
 * administrator's person id, or a client's own id for a client's token — or `scim:<client>` for a
 * SCIM write; null when the operator set it (`clearance apply`, `clearance users`) or nobody has
 * since this migration. `users.password_set_at` (epoch ms): when it was last set by any of them.
 * Whoever set a password can sign in as the person with it: that administrator neither asks for
 * nor approves a guarded role for them, and the approver of a grant is shown who set it and when.
 *
 * Nothing is filled in for the passwords set before: the audit log's `user.password_reset` events
 * name the client of an admin-API write, not the person behind its token, so who set them is not
 * known (docs/deployment.md says how to review them).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('users').addColumn('password_set_by', 'text').execute();
  await db.schema.alterTable('users').addColumn('password_set_at', 'bigint').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('users').dropColumn('password_set_at').execute();
  await db.schema.alterTable('users').dropColumn('password_set_by').execute();
}
