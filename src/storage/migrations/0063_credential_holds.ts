import { sql, type Kysely } from 'kysely';

/**
 * A leaver's way back (src/lifecycle/credential-hold.ts, docs/lifecycle.md "Re-joining"): one row
 * per person whose credentials the leaver operation revoked and who has not come back through an
 * approved recovery since. While a person has a row, nothing signs them in (every sign-in's
 * conditional update, src/identity/login.ts `accountAsRead`, requires there is none), no
 * administrator may give them a password, and only an enrolment through an approved recovery's
 * link (src/identity/recovery/enrolment.ts) removes it. Its own table, so the people side's `users`
 * table stays as it is.
 *
 * The people offboarded before this migration are held too (`offboarded_at` set: not re-activated
 * since), and their password is revoked now as the leaver operation revokes it: re-activating them
 * must not bring it back, and a held person's right password must open nothing, not even a
 * different refusal than a wrong one's.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('credential_holds')
    .addColumn('user_id', 'text', (c) => c.primaryKey())
    // Epoch ms: when the leaver operation revoked the credentials.
    .addColumn('held_since', 'bigint', (c) => c.notNull())
    .execute();
  await sql`insert into credential_holds (user_id, held_since) select id, offboarded_at from users where offboarded_at is not null`.execute(db);
  await sql`update users set password_hash = null where offboarded_at is not null`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('credential_holds').execute();
}
