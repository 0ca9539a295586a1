/**
 * The people of the recovery tests: alice (the person recovering: password, desks fx-spot and
 * rates), helen of the help desk (desk service-desk), and approvers — rita (risk), fiona (on
 * alice's desk rates), sam (on the help desk's desk), hank (help desk; given recovery-approver
 * too by `holdBothRoles`, as a person could hold both before apply refused it), bob (no role) —
 * with what deciding needs.
 */
import type { Approver } from '../../../src/approvals/independence.ts';
import type { ApproverProof } from '../../../src/approvals/requests.ts';
import type { Context } from '../../../src/context.ts';
import { acr } from '../../../src/identity/acr.ts';
import { findUserByUsername, type User } from '../../../src/identity/users.ts';

export const recoveryPeople = [
  { username: 'helen', password: 'helen-help-desk-2024', name: 'Helen Desk', desks: ['service-desk'], roles: ['help-desk'] },
  { username: 'rita', password: 'rita-approver-2024!', name: 'Rita Risk', desks: ['risk'], roles: ['recovery-approver'] },
  { username: 'fiona', password: 'fiona-approver-2024', name: 'Fiona Rates', desks: ['rates'], roles: ['recovery-approver'] },
  { username: 'sam', password: 'sam-approver-2024!!', name: 'Sam Service', desks: ['service-desk'], roles: ['recovery-approver'] },
  { username: 'hank', password: 'hank-both-roles-2024', name: 'Hank Both', desks: ['ops-2'], roles: ['help-desk'] },
];

/** A phishing-resistant admin-API proof, as the approvals app would pass it. */
export const strongProof: ApproverProof = { method: 'token', acr: acr.phishingResistant, amr: ['hwk', 'user', 'mfa'], authTime: 0, jti: 'approver-jti', clientId: 'approvals-app' };
export const weakProof: ApproverProof = { ...strongProof, acr: acr.multiFactor, amr: ['pwd', 'otp', 'mfa'] };

/** The Approver of a stored person (what the approver page builds from their session). */
export async function approverOf(ctx: Context, username: string): Promise<Approver> {
  const user = (await findUserByUsername(ctx, username))!;
  return { userId: user.id, username: user.username, roles: user.roles, desks: user.desks };
}

/**
 * Gives a person both help-desk and recovery-approver behind apply's back: no write of a person
 * gives both any more (src/identity/roles.ts roleConflict), but someone may hold them from before.
 */
export async function holdBothRoles(ctx: Context, username: string): Promise<void> {
  await ctx.storage.db.updateTable('users').set({ roles: JSON.stringify(['help-desk', 'recovery-approver']) }).where('username', '=', username).execute();
}

export async function person(ctx: Context, username: string): Promise<User> {
  return (await findUserByUsername(ctx, username))!;
}

/** Stores a passkey row for a person directly (the storage tests need one to be removed). */
export async function storedPasskey(ctx: Context, userId: string, credentialId: string): Promise<void> {
  await ctx.storage.db
    .insertInto('passkeys')
    .values({
      id: crypto.randomUUID(),
      credential_id: credentialId,
      user_id: userId,
      name: 'Lost laptop',
      public_key: 'AAAA',
      sign_count: 0,
      transports: '[]',
      backup_eligible: 0,
      backed_up: 0,
      aaguid: '00000000-0000-0000-0000-000000000000',
      attestation_format: 'none',
      attested: 0,
      created_at: ctx.clock.now(),
      last_used_at: null,
    })
    .execute();
}
