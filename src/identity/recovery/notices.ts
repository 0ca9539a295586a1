import { randomUUID } from 'node:crypto';
import type { Transaction } from 'kysely';
import type { AccountNotice, NoticeKind } from '../factors/notices.ts';
import type { Database } from '../../storage/schema.ts';

/**
 * The person's own word of a recovery of their account (docs/recovery.md "Telling the person"):
 * besides the alerts, which go to the firm's people, each step leaves a notice on their /account
 * page (src/identity/factors/notices.ts) — the opening (who opened it), the approval (what it
 * removed, the upstream links it ended) and the link's use (from which address). They are shown at
 * the person's next visit and kept until a session of their own authenticator or passkey has shown
 * them: an opening someone else made, behind their back, is seen by them.
 */
export type RecoveryNoticeKind = Extract<NoticeKind, 'recovery_opened' | 'recovery_approved' | 'recovery_used'>;

/** Stores a recovery notice for `userId` in `trx`, the transaction of the step it tells of. */
export async function recoveryNoticeIn(trx: Transaction<Database>, userId: string, kind: RecoveryNoticeKind, details: AccountNotice['details'], now: number): Promise<void> {
  await trx.insertInto('account_notices').values({ id: randomUUID(), user_id: userId, kind, details: JSON.stringify(details), created_at: now, seen_at: null }).execute();
}
