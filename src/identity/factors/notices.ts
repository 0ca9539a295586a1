import { randomUUID } from 'node:crypto';
import type { Authentication } from '../../authorization/contract.ts';
import type { Context } from '../../context.ts';
import type { Flight } from '../../storage/flight.ts';
import { acr, acrSatisfies } from '../acr.ts';
import { madeThroughUpstream, madeWithRecoveryCode, madeWithSmartCard } from '../factor-changes.ts';

/**
 * Notices a person sees on /account, kept until they open it signed in with their authenticator
 * or a passkey (not a smart card): how Clearance "alerts the person" that a recovery code was used to sign in as them
 * (AMENDMENTS "Strong authentication"), and that a recovery of theirs was opened, approved or
 * used (src/identity/recovery/notices.ts). Delivery by e-mail is a later issue; the audit event is
 * written either way.
 */

export type NoticeKind = 'recovery_code_used' | 'recovery_opened' | 'recovery_approved' | 'recovery_used';

export interface AccountNotice {
  id: string;
  kind: NoticeKind;
  createdAt: number;
  /**
   * recovery_code_used: the address it came from and how many codes are left. The recovery of a
   * lost authenticator (src/identity/recovery/notices.ts): who opened it, what it removed, how many
   * upstream links it ended, the address its link was used from.
   */
  details: { source_address?: string; remaining?: number; opened_by?: string; lost?: string[]; upstream_links_ended?: number };
}

/** Adds to `flight` the statement that stores a notice for the person. */
export function addNotice(ctx: Pick<Context, 'storage'>, flight: Flight, userId: string, kind: NoticeKind, details: AccountNotice['details'], now: number): void {
  void flight.run(ctx.storage.db.insertInto('account_notices').values({ id: randomUUID(), user_id: userId, kind, details: JSON.stringify(details), created_at: now, seen_at: null }));
}

/**
 * Whether the person of `session` has seen a notice when this session shows it: only when the
 * session was made with their authenticator app or a passkey (`mfa` or above, no recovery code,
 * not through an upstream identity provider, whose level is another organisation's sign-in, nor
 * with a smart card, which a certificate authority issues and revokes: not a factor of the
 * person's, src/identity/factor-changes.ts rule 5). A session made with a recovery code shows the
 * notices and keeps them — whoever used the code (perhaps not the person) cannot make the alert
 * go away by opening the account page — and so do a password-only one, an upstream's and a
 * smart card's (whoever holds a stolen card and its PIN must not hide a recovery of the account).
 */
export function marksNoticesSeen(session: Pick<Authentication, 'acr' | 'amr'> & Partial<Pick<Authentication, 'assurance'>>): boolean {
  return acrSatisfies(session.acr, acr.multiFactor) && !madeWithRecoveryCode(session) && !madeThroughUpstream(session) && !madeWithSmartCard(session);
}

/**
 * The person's unseen notices for the account page of `session`, oldest first: marked seen as
 * they are shown when marksNoticesSeen(session) — then shown once — else kept for the next visit.
 * Seen notices are deleted after 90 days.
 */
export async function takeNotices(ctx: Pick<Context, 'storage' | 'clock'>, session: Pick<Authentication, 'userId' | 'acr' | 'amr'> & Partial<Pick<Authentication, 'assurance'>>): Promise<AccountNotice[]> {
  const db = ctx.storage.db;
  const now = ctx.clock.now();
  const userId = session.userId;
  const rows = await db.selectFrom('account_notices').selectAll().where('user_id', '=', userId).where('seen_at', 'is', null).orderBy('created_at').limit(20).execute();
  if (rows.length === 0) return [];
  const shown = rows.map((row) => ({ id: row.id, kind: row.kind as NoticeKind, createdAt: Number(row.created_at), details: JSON.parse(row.details) as AccountNotice['details'] }));
  if (!marksNoticesSeen(session)) return shown;
  await db
    .updateTable('account_notices')
    .set({ seen_at: now })
    .where('id', 'in', rows.map((row) => row.id))
    .where('seen_at', 'is', null)
    .execute();
  await db.deleteFrom('account_notices').where('user_id', '=', userId).where('seen_at', '<', now - 90 * 24 * 3600_000).execute();
  return shown;
}
