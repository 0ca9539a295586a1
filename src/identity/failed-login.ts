/**
 * A failed sign-in of a known person: a wrong password, or a wrong second factor after a right one.
 * Its event, the consecutive-failure count and — at the policy's threshold — the lockout (the account
 * locked for password logins, its browser sessions and pending sign-ins ended, `user.locked`
 * audited) are one transaction:
 *
 * - nothing of it is written without the rest: a failure is never audited without being counted,
 *   and a lockout never happens without its event (they were two and three transactions before);
 * - as a rule one flight (src/storage/flight.ts), one round trip, the same kind of transaction as
 *   an unknown username's failure (its event alone, sent here too): the database's work does not
 *   tell which usernames exist, beside the password hashing both spend (login.ts rule 2).
 *
 * A flight's statements cannot read one another's answers, so the count is written as the caller
 * read it plus one, and whether it locks is decided from that: the increment matches only the count
 * as read, the lock only an active account. When a concurrent sign-in of the same person moved
 * either meanwhile (another failure counted, a success reset it, an administrator locked the
 * account), the flight is refused and writes nothing; the failure then goes through a transaction
 * that counts by increment and decides the lockout from the count it made (`countedLive`), which
 * nothing refuses. So every failure is counted exactly once, and concurrent failures lock (and
 * audit) once.
 *
 * Row order: the account's row first, then the sessions and pending sign-ins, as a password reset
 * or lock (src/identity/lifecycle.ts) and a completed second step (second-step.ts) take them, so
 * that on PostgreSQL they never deadlock over each other's rows.
 */
import type { Compilable, QueryResult } from 'kysely';
import type { AuditEvent } from '../audit/events.ts';
import type { Context } from '../context.ts';
import { refusedFor, type Flight } from '../storage/flight.ts';
import type { Database } from '../storage/schema.ts';
import { endPendingSignInsStatement } from './factors/pending.ts';
import { endSessionsOfStatement } from './sessions.ts';

type FailureContext = Pick<Context, 'storage' | 'clock' | 'identity' | 'audit'>;

/** What the count and the lockout are decided from: the account as read. */
export type FailureCount = Pick<Database['users'], 'id' | 'failed_logins' | 'status'>;

/**
 * Where `also` adds statements to the failure's transaction: a flight (the answer comes once it
 * has landed) or a transaction in progress (once the statement ran). A Flight is one.
 */
export interface FailureStatements {
  run<R>(query: Compilable<R>): Promise<QueryResult<R>>;
}

/** The flight's refusal when the account's count or status moved since it was read. */
const countMoved = 'failure_count_moved';

/** PostgreSQL's deadlock_detected: the flight was rolled back for another transaction's locks. */
const deadlockDetected = '40P01';

/**
 * Records `failure` (the caller's `user.login_failed` or `user.factor_failed` event) with its count
 * against `account` and the lockout the count reaches, in one transaction with what `also` adds
 * after them (the value is `also`'s answer). Without `account` (a username nobody holds, a failure
 * that is not counted) the event alone, in the same kind of transaction. `lockEvent` is what the
 * `user.locked` event carries besides its type, decision and details (request, client, subject).
 */
export async function recordFailedLogin<V = undefined>(
  ctx: FailureContext,
  account: FailureCount | undefined,
  failure: AuditEvent,
  lockEvent: Partial<AuditEvent>,
  sourceAddress: string,
  also?: (statements: FailureStatements) => Promise<V>,
): Promise<V | undefined> {
  const flight = ctx.storage.flight();
  const events = [failure, ...(account ? countAsRead(ctx, flight, account, lockEvent, sourceAddress) : [])];
  // After the lockout's statements: what `also` writes sees what the lockout ended.
  const value = also?.(flight);
  // An answer of a flight that failed is never awaited: its rejection must not go unhandled.
  value?.catch(() => undefined);
  try {
    await ctx.audit.commit(flight, events);
    return await value;
  } catch (error) {
    // Only a count is refused or meets another transaction's locks: there is an account.
    if (!account || !(refusedFor(error, countMoved) || (error as { code?: unknown }).code === deadlockDetected)) throw error;
  }
  return countedLive(ctx, account.id, failure, lockEvent, sourceAddress, also);
}

/**
 * Adds the count as read plus one and, when that reaches the threshold, the lockout to `flight`;
 * returns the events they add. An automatic lockout stops password logins only: anyone who knows
 * the username can cause it, so it is no sign of compromise and leaves the person's tokens working
 * (src/identity/lifecycle.ts); an administrator's lock ends them.
 */
function countAsRead(ctx: FailureContext, flight: Flight, read: FailureCount, lockEvent: Partial<AuditEvent>, sourceAddress: string): AuditEvent[] {
  const now = ctx.clock.now();
  const failures = Number(read.failed_logins) + 1;
  void flight.run(
    ctx.storage.db
      .updateTable('users')
      // Dated, for the risk engine's `recent_failures` (src/risk/signals/recent-failures.ts).
      .set({ failed_logins: failures, last_failed_login_at: now })
      .where('id', '=', read.id)
      .where('failed_logins', '=', read.failed_logins),
    { rows: 1, otherwise: countMoved },
  );
  if (failures < ctx.identity.policy.lockoutThreshold || read.status !== 'active') return [];
  const [lock, ...ends] = lockout(ctx, read.id, now);
  void flight.run(lock, { rows: 1, otherwise: countMoved });
  for (const statement of ends) void flight.run(statement);
  return [lockedEvent(lockEvent, failures, sourceAddress)];
}

/**
 * The failure in a transaction that counts by increment and reads the count it made (on
 * PostgreSQL the UPDATE holds the account's row until the commit, so the count and the status it
 * returns are live): the lockout is decided from them. A few round trips; the way when the flight
 * was refused.
 */
function countedLive<V>(
  ctx: FailureContext,
  userId: string,
  failure: AuditEvent,
  lockEvent: Partial<AuditEvent>,
  sourceAddress: string,
  also?: (statements: FailureStatements) => Promise<V>,
): Promise<V | undefined> {
  return ctx.audit.recordWith(async (trx) => {
    const now = ctx.clock.now();
    const counted = await trx
      .updateTable('users')
      .set((eb) => ({ failed_logins: eb('failed_logins', '+', 1), last_failed_login_at: now }))
      .where('id', '=', userId)
      .returning(['failed_logins', 'status'])
      .executeTakeFirst();
    const events = [failure];
    // A person deleted meanwhile: nothing left to count against, the event alone.
    if (counted && Number(counted.failed_logins) >= ctx.identity.policy.lockoutThreshold && counted.status === 'active') {
      for (const statement of lockout(ctx, userId, now)) await trx.executeQuery(statement.compile());
      events.push(lockedEvent(lockEvent, Number(counted.failed_logins), sourceAddress));
    }
    const value = also ? await also({ run: (query) => trx.executeQuery(query.compile()) }) : undefined;
    return { events, value };
  });
}

/** The automatic lockout's statements: the lock (of an active account), then the sessions and pending sign-ins it ends. */
function lockout(ctx: FailureContext, userId: string, now: number) {
  const db = ctx.storage.db;
  return [
    db
      .updateTable('users')
      // last_lockout_at outlives an unlock: the risk engine's `recent_lockout` reads it.
      .set({ status: 'locked', lock_reason: 'failed_logins', locked_at: now, last_lockout_at: now, updated_at: now })
      .where('id', '=', userId)
      .where('status', '=', 'active'),
    endSessionsOfStatement(db, userId, now, 'locked'),
    endPendingSignInsStatement(db, userId, now),
  ] as const;
}

function lockedEvent(lockEvent: Partial<AuditEvent>, failures: number, sourceAddress: string): AuditEvent {
  return { type: 'user.locked', ...lockEvent, decision: { allow: false, reasons: ['consecutive_failures'] }, details: { consecutive_failures: failures, source_address: sourceAddress } };
}
