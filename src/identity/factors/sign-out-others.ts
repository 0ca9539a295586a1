import type { Transaction } from 'kysely';
import type { AuditEvent } from '../../audit/events.ts';
import type { Context } from '../../context.ts';
import type { Database } from '../../storage/schema.ts';
import { endPersonAccess, lifecycleEvent } from '../lifecycle.ts';
import { continueSessionIn, type ContinuedSession } from '../sessions.ts';

/**
 * What removing a sign-in factor ends (docs/authentication.md "Removing a factor"). A passkey is
 * usually removed because its device was lost or stolen: the sessions made with it last up to 12
 * hours, and one made in the last 15 minutes may even add a passkey of its own. So the removal
 * signs the person out everywhere — as "sign out everywhere" does (src/identity/lifecycle.ts
 * `endPersonAccess`: every session, refresh token and unredeemed code, and the cut-off that kills
 * every access token issued until now; RFC 9700 §4.14.2) — except in the browser that removed it.
 *
 * endPersonAccess cannot spare one session, and no refresh or access token records the session it
 * was issued on (only the code does), so which tokens came from the thief's session cannot be told
 * apart: every one of the person's tokens ends, their applications ask them to sign in again (the
 * remover's own silently, from the session that goes on). The remover's session is continued under
 * a new id (src/identity/sessions.ts `continueSessionIn`: the same sign-in, no fresher, no longer).
 */

/** What a removal ended, for its audit event. */
export interface OthersSignedOut {
  /** The sessions ended besides the remover's, which goes on. */
  sessions_ended: number;
  refresh_tokens_revoked: number;
  codes_discarded: number;
  /** Whether the remover's session goes on (false: there was none to continue, all ended). */
  session_continued: boolean;
}

/**
 * Signs person `userId` out everywhere but in session `keep` (the one removing a factor), inside
 * the removal's transaction: what ended (for the removal's event), the continued session (its
 * cookie for the answer), and `user.signed_out_everywhere` (via `factor-removed`) to record with
 * it, which is what Shared Signals receivers hear as a session-revoked (src/signals/ssf).
 */
export async function signOutOthersIn(
  ctx: Pick<Context, 'clock' | 'config'>,
  trx: Transaction<Database>,
  userId: string,
  keep: string | undefined,
  requestId: string | undefined,
): Promise<{ ended: OthersSignedOut; continued: ContinuedSession | undefined; events: AuditEvent[] }> {
  const now = ctx.clock.now();
  // Only a live session of this person goes on: never one that ended before, nor another's.
  const live = keep === undefined ? undefined : await trx.selectFrom('sessions').select('id').where('id', '=', keep).where('user_id', '=', userId).where('ended_at', 'is', null).executeTakeFirst();
  const { ended, events } = await endPersonAccess(trx, now, userId, 'signed_out_everywhere', userId);
  const continued = live ? await continueSessionIn(ctx, trx, live.id, now) : undefined;
  // The remover's session was among those ended; it goes on, so it is not counted.
  const others = { ...ended, sessionsEnded: Math.max(0, ended.sessionsEnded - (continued ? 1 : 0)) };
  const signedOut = lifecycleEvent('signed_out_everywhere', userId, userId, others, { ...(requestId ? { requestId } : {}), via: 'factor-removed' });
  return {
    ended: {
      sessions_ended: others.sessionsEnded,
      refresh_tokens_revoked: others.refreshTokensRevoked,
      codes_discarded: others.codesDiscarded,
      session_continued: continued !== undefined,
    },
    continued,
    events: [...events, signedOut],
  };
}
