import type { Kysely, Transaction } from 'kysely';
import type { UserEntry } from '../identity/users.ts';
import type { Database } from '../storage/schema.ts';
import type { Validator } from '../validation.ts';

/**
 * A leaver's way back (docs/lifecycle.md "Re-joining", docs/recovery.md "A leaver who comes back").
 * The leaver operation (./leaver.ts) revokes the person's password with their factors and puts
 * their credentials on hold: one `credential_holds` row. The hold is what stops one administrator
 * from bringing a person back on credentials they chose — offboard (the factors go), re-activate
 * with a password they know, sign in as the person (same `sub`) and enrol a passkey of their own.
 * While it stands:
 * 1. nothing signs the person in — password, second factor, passkey, certificate, upstream
 *    identity: every sign-in commits through a conditional update of the person's row that
 *    requires no hold (src/identity/login.ts `accountAsRead`);
 * 2. no administrator gives them a password or a password hash — the admin API (400), apply (its
 *    users section; refused as a whole, nothing written), SCIM (400) — nor links an upstream
 *    identity to them (400);
 * 3. re-activating them (a rehire) stays possible, and is all an administrator's write does: the
 *    person comes back active, with the same `sub`, holding nothing.
 * Only an approved recovery ends it (src/identity/recovery): the help desk opens one for the
 * re-activated person, a second, independent recovery approver approves, and the person enrols a
 * passkey through the link — the hold goes in that enrolment's transaction. An offboarding again
 * keeps the hold (or puts it back).
 */

/** Why an administrator's password for a held person is refused: names the way back. */
export function heldCredentialsProblem(username: string): string {
  return (
    `${username} was offboarded: the leaver operation revoked their password and factors, and no administrator sets new ones; ` +
    'they come back only through an approved recovery (the help desk opens it once they are active again, a recovery approver approves, ' +
    'they enrol a passkey through its link: docs/recovery.md)'
  );
}

/** Puts person `userId`'s credentials on hold (the leaver, inside its transaction); kept when already held. */
export async function holdCredentialsIn(trx: Transaction<Database>, userId: string, now: number): Promise<void> {
  await trx.insertInto('credential_holds').values({ user_id: userId, held_since: now }).onConflict((c) => c.column('user_id').doNothing()).execute();
}

/** Whether person `userId`'s credentials are on hold. */
export async function credentialsHeld(db: Kysely<Database>, userId: string): Promise<boolean> {
  return (await db.selectFrom('credential_holds').select('user_id').where('user_id', '=', userId).executeTakeFirst()) !== undefined;
}

/** Which of these usernames (as stored) name a person whose credentials are on hold. */
export async function heldUsernames(db: Kysely<Database>, usernames: readonly string[]): Promise<Set<string>> {
  if (usernames.length === 0) return new Set();
  const rows = await db
    .selectFrom('credential_holds')
    .innerJoin('users', 'users.id', 'credential_holds.user_id')
    .select('users.username')
    .where('users.username', 'in', [...usernames])
    .execute();
  return new Set(rows.map((r) => r.username));
}

/**
 * Rule 2 as problems of a `users` section: every entry that gives a held person a `password` or a
 * `password_hash` is a problem at that member (nothing of the document is written). For apply's
 * planning (src/apply/index.ts) and the admin API's writes of people; `upsertUser` refuses the
 * same inside the write's transaction, whatever came before.
 */
export async function heldPasswordProblems(db: Kysely<Database>, v: Validator, entries: readonly { item: UserEntry; at: number }[], section = 'users'): Promise<void> {
  const setting = entries.filter((e) => e.item.password !== undefined || e.item.password_hash !== undefined);
  const held = await heldUsernames(db, setting.map((e) => e.item.username));
  for (const { item, at } of setting) {
    if (held.has(item.username)) v.fail(`${section}[${at}].${item.password !== undefined ? 'password' : 'password_hash'}`, heldCredentialsProblem(item.username));
  }
}
