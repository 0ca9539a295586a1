import { createHash } from 'node:crypto';
import type { Kysely, Transaction } from 'kysely';
import type { AuditEvent } from '../../audit/events.ts';
import type { Context } from '../../context.ts';
import type { ApprovalRequest } from '../../approvals/requests.ts';
import { alertInsert } from '../../signals/alerts.ts';
import type { Database } from '../../storage/schema.ts';
import { endPersonAccess, lifecycleEvent } from '../lifecycle.ts';
import { holdCredentialsIn } from '../../lifecycle/credential-hold.ts';
import { endLinksOf } from '../../federation/upstream/linking.ts';
import { passwordSetterOf } from '../role-grants.ts';
import { recoveryNoticeIn } from './notices.ts';
import type { LostFactor } from './requests.ts';
import { recoverySettings } from './settings.ts';

/**
 * What an approved recovery does, in the transaction of the approval that settles it
 * (src/approvals/kinds/recovery.ts `onSettled`; docs/recovery.md "What approval does"):
 * 1. the enrolment link wakes: it works from now for apply's `recovery.enrolment_ttl`, and only
 *    with the password the person had when the request was OPENED (its fingerprint is taken there,
 *    requests.ts: a password set while the request waited, or later, by an administrator or
 *    anyone, voids the link — taking it here would bind the link to a password reset made while
 *    the request waited);
 * 2. everything the person holds ends (src/identity/lifecycle.ts, action `recovery`): every
 *    session, refresh token, unredeemed code and pending sign-in, and — by the cut-off — every
 *    access token issued under their consent (`recovery.access_ended`, with the counts);
 * 3. the credentials declared lost are removed: all the person's passkeys, their authenticator
 *    and its recovery codes (`recovery.factors_disabled`, naming each credential id);
 * 4. when what is left signs in at no more than the password — no passkey, no confirmed
 *    authenticator — the person's credentials are put on hold (src/lifecycle/credential-hold.ts)
 *    until the link's enrolment lifts it (enrolment.ts rule 6): else the password alone would sign
 *    them in at the level that may enrol a first factor (src/identity/factor-changes.ts), and
 *    whoever knows it — an administrator who set it while the request waited, or after — would
 *    enrol their own passkey on /account without the link (`recovery.factors_disabled` says
 *    `credentials_held`);
 * 5. every upstream link of the person ends (src/federation/upstream/linking.ts endLinksOf),
 *    however it was made: a recovery follows a suspected takeover, and whoever held the account
 *    could have linked an upstream identity of their own to it (an administrator talked into a
 *    link, or their own sign-in joining the two), which would keep signing them in. Which links
 *    were the person's cannot be told apart, so none stays: the person joins theirs again by
 *    signing in with their recovered factor (`recovery.factors_disabled` names each link ended:
 *    provider, issuer, upstream subject, who made it, when);
 * 6. the `recovery.approved` alert, and the person's notice on /account (./notices.ts).
 * A denial changes nothing here: the link stays inert forever (`approval.denied` is the record).
 * Anything missing (the link row) throws: the whole decision rolls back (fail closed).
 */
export async function settleRecovery(ctx: Pick<Context, 'clock'>, trx: Transaction<Database>, request: ApprovalRequest, outcome: 'approved' | 'denied'): Promise<AuditEvent[]> {
  if (outcome !== 'approved') return [];
  const now = ctx.clock.now();
  const link = await trx.selectFrom('recovery_links').select(['lost']).where('request_id', '=', request.id).executeTakeFirst();
  if (!link) throw new Error(`recovery request ${request.id} has no link row`);
  const lost = JSON.parse(link.lost) as LostFactor[];
  const settings = await recoverySettings(trx);
  const approver = (await trx.selectFrom('approval_decisions').select('approver').where('request_id', '=', request.id).where('role', '=', 'approver').where('decision', '=', 'approve').orderBy('at', 'desc').executeTakeFirst())?.approver ?? 'clearance';
  const expiresAt = now + settings.enrolmentTtlMs;
  await trx
    .updateTable('recovery_links')
    .set({ approved_at: now, expires_at: expiresAt })
    .where('request_id', '=', request.id)
    .execute();

  const { ended, events } = await endPersonAccess(trx, now, request.subject, 'recovery', approver);
  const passkeys = lost.includes('passkeys') ? await trx.deleteFrom('passkeys').where('user_id', '=', request.subject).returning(['id', 'credential_id']).execute() : [];
  const totp = lost.includes('authenticator') ? await trx.deleteFrom('totp_factors').where('user_id', '=', request.subject).returning(['id']).execute() : [];
  const codes = lost.includes('authenticator') ? Number((await trx.deleteFrom('recovery_codes').where('user_id', '=', request.subject).executeTakeFirst()).numDeletedRows) : 0;
  const held = await holdUntilEnrolled(trx, request.subject, now);
  const links = await endLinksOf(trx, request.subject);
  const removed = {
    passkeys: passkeys.map((p) => ({ passkey: p.id, credential: p.credential_id })),
    authenticator: totp.map((t) => t.id),
    recovery_codes_removed: codes,
    ...(held ? { credentials_held: true } : {}),
    upstream_links_ended: links,
  };
  await alertInsert(trx, ctx.clock, {
    type: 'recovery.approved',
    subject: request.subject,
    data: {
      request_id: request.id,
      approver,
      lost,
      passkeys_removed: passkeys.length,
      authenticator_removed: totp.length > 0,
      sessions_ended: ended.sessionsEnded,
      upstream_links_ended: links.length,
      enrolment_expires_at: expiresAt,
    },
  }).execute();
  await recoveryNoticeIn(trx, request.subject, 'recovery_approved', { lost, upstream_links_ended: links.length }, now);
  const accessEnded = lifecycleEvent('recovery', request.subject, approver, ended, { via: 'recovery' });
  return [
    ...events,
    { ...accessEnded, txn: request.id },
    {
      type: 'recovery.factors_disabled',
      txn: request.id,
      actor: approver,
      subject: request.subject,
      decision: { allow: false, reasons: ['declared lost'] },
      details: { request_id: request.id, lost, ...removed, enrolment_expires_at: expiresAt },
    },
  ];
}

/**
 * Why an approver may not decide a recovery of `subject` because they set the subject's password
 * (`users.password_set_by`, read now), or undefined. Whoever set it knows the half of the link only
 * the person should (enrolment.ts rule 3): approving, they would stand behind a recovery they can
 * complete with the link alone — the password step of a role grant, applied to recovery
 * (docs/recovery.md "Who approves").
 */
export async function passwordSetterRefusal(db: Kysely<Database>, subject: string, approver: string): Promise<string | undefined> {
  return (await passwordSetterOf(db, subject))?.by === approver ? "set the person's password" : undefined;
}

/**
 * Rule 4: holds the person's credentials when no factor stronger than the password is left (the
 * link's enrolment lifts the hold); true when they are held now.
 */
async function holdUntilEnrolled(trx: Transaction<Database>, userId: string, now: number): Promise<boolean> {
  const passkey = await trx.selectFrom('passkeys').select('id').where('user_id', '=', userId).executeTakeFirst();
  const authenticator = await trx.selectFrom('totp_factors').select('id').where('user_id', '=', userId).where('confirmed_at', 'is not', null).executeTakeFirst();
  if (passkey || authenticator) return false;
  await holdCredentialsIn(trx, userId, now);
  return true;
}

/** SHA-256 (base64url) of a stored password hash: says "the same password" without holding it. */
export function passwordFingerprint(passwordHash: string): string {
  return createHash('sha256').update(passwordHash, 'utf8').digest('base64url');
}
