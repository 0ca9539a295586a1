/**
 * A failed sign-in of a known person: a wrong password, or a wrong second factor after a right one.
 * Its event, the consecutive-failure count and — at the policy's threshold — the lockout (the account
 * locked for password logins, its browser sessions and pending sign-ins ended, `user.locked`
 * audited) are one transaction, sent as one flight (src/storage/flight.ts):
 *
 * - nothing of it is written without the rest: a failure is never audited without being counted,
 *   and a lockout never happens without its event (they were two and three transactions before);
 * - one round trip, the same kind of transaction as an unknown username's failure (its event
 *   alone, sent here too): the database's work does not tell which usernames exist, beside the
 *   password hashing both spend (login.ts rule 2).
 *
 * A flight's statements cannot read one another's answers, so the count is written as the caller
 * read it plus one, and whether it locks is decided from that: the increment matches only the count
 * as read, the lock only an active account. When a concurrent sign-in of the same person moved
 * either meanwhile (another failure counted, a success reset it, an administrator locked the
 * account), the transaction is refused, writes nothing, and is sent again from the account read
 * anew — so every failure is counted exactly once, and concurrent failures lock (and audit) once.
 */
import type { AuditEvent } from '../audit/events.ts';
import type { Context } from '../context.ts';
import { refusedFor, type Flight } from '../storage/flight.ts';
import type { Database } from '../storage/schema.ts';
import { endPendingSignInsStatement } from './factors/pending.ts';

type FailureContext = Pick<Context, 'storage' | 'clock' | 'identity' | 'audit'>;

/** What the count and the lockout are decided from: the account as read. */
export type FailureCount = Pick<Database['users'], 'id' | 'failed_logins' | 'status'>;

/** The flight's refusal when the account's count or status moved since it was read. */
const countMoved = 'failure_count_moved';

/**
 * How often the transaction is sent again after a refusal. Each refusal means another sign-in of
 * the same person committed in between, and the login throttle bounds how many run at once
 * (src/identity/login-throttle.ts); past this, the failure is a server error, and the throttle
 * keeps it counted as a guess.
 */
const maxAttempts = 16;

/**
 * Records `failure` (the caller's `user.login_failed` or `user.factor_failed` event) with its count
 * against `account` and the lockout the count reaches, in one transaction with what `also` adds to
 * its flight after them (the value is `also`'s answer from the flight that committed). Without
 * `account` (a username nobody holds, a failure that is not counted) the event alone, in the same
 * kind of transaction. `lockEvent` is what the `user.locked` event carries besides its type,
 * decision and details (request, client, subject).
 */
export async function recordFailedLogin<T = undefined>(
  ctx: FailureContext,
  account: FailureCount | undefined,
  failure: AuditEvent,
  lockEvent: Partial<AuditEvent>,
  sourceAddress: string,
  also?: (flight: Flight) => T,
): Promise<T> {
  let read: FailureCount | undefined = account;
  for (let attempt = 1; ; attempt++) {
    const flight = ctx.storage.flight();
    const events = [failure, ...(read ? countFailure(ctx, flight, read, lockEvent, sourceAddress) : [])];
    // After the lockout's statements: what `also` writes sees what the lockout ended.
    const value = also?.(flight) as T;
    // An answer of a flight that failed is never awaited: its rejection must not go unhandled.
    if (value instanceof Promise) value.catch(() => undefined);
    try {
      await ctx.audit.commit(flight, events);
      return value;
    } catch (error) {
      // Only a count refuses: there is an account.
      if (!refusedFor(error, countMoved) || attempt >= maxAttempts || !account) throw error;
    }
    // Read anew; a person deleted meanwhile has nothing left to count against.
    read = await ctx.storage.db.selectFrom('users').select(['id', 'failed_logins', 'status']).where('id', '=', account.id).executeTakeFirst();
  }
}

/**
 * Adds the count and, at the threshold, the lockout to `flight`; returns the events they add. An
 * automatic lockout stops password logins only: anyone who knows the username can cause it, so it
 * is no sign of compromise and leaves the person's tokens working (src/identity/lifecycle.ts); an
 * administrator's lock ends them.
 */
function countFailure(ctx: FailureContext, flight: Flight, read: FailureCount, lockEvent: Partial<AuditEvent>, sourceAddress: string): AuditEvent[] {
  const db = ctx.storage.db;
  const now = ctx.clock.now();
  const failures = Number(read.failed_logins) + 1;
  void flight.run(
    db
      .updateTable('users')
      // Dated, for the risk engine's `recent_failures` (src/risk/signals/recent-failures.ts).
      .set({ failed_logins: failures, last_failed_login_at: now })
      .where('id', '=', read.id)
      .where('failed_logins', '=', read.failed_logins),
    { rows: 1, otherwise: countMoved },
  );
  if (failures < ctx.identity.policy.lockoutThreshold || read.status !== 'active') return [];
  void flight.run(
    db
      .updateTable('users')
      // last_lockout_at outlives an unlock: the risk engine's `recent_lockout` reads it.
      .set({ status: 'locked', lock_reason: 'failed_logins', locked_at: now, last_lockout_at: now, updated_at: now })
      .where('id', '=', read.id)
      .where('status', '=', 'active'),
    { rows: 1, otherwise: countMoved },
  );
  void flight.run(db.updateTable('sessions').set({ ended_at: now, end_reason: 'locked' }).where('user_id', '=', read.id).where('ended_at', 'is', null));
  void flight.run(endPendingSignInsStatement(db, read.id, now));
  return [
    {
      type: 'user.locked',
      ...lockEvent,
      decision: { allow: false, reasons: ['consecutive_failures'] },
      details: { consecutive_failures: failures, source_address: sourceAddress },
    },
  ];
}
