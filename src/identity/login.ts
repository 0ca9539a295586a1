import type { AuditEvent } from '../audit/events.ts';
import { acr as acrLevels, amr as amrValues } from './acr.ts';
import type { Context } from '../context.ts';
import { refusedFor, type Flight } from '../storage/flight.ts';
import type { Database } from '../storage/schema.ts';
import { hashPassword, maxPasswordLength, needsRehash, verifyAgainstDummy, verifyPassword } from './passwords.ts';
import { normalizeUsername, userFromRow, userRowByUsername, type User } from './users.ts';


export interface LoginAttempt {
  username: string;
  password: string;
  /** The request's source address (throttling, audit). */
  sourceAddress: string;
  requestId?: string;
  /** The client the person is logging in for, when known (audit). */
  clientId?: string;
}

export type LoginOutcome<T = undefined> =
  | { ok: true; user: User; acr: string; amr: string[]; /** What `onSuccess` returned. */ value: T }
  | { ok: false; reason: 'invalid_credentials' }
  | { ok: false; reason: 'throttled'; retryAfterSeconds: number };

/** A verified login, as `onSuccess` gets it. */
export interface VerifiedLogin {
  user: User;
  acr: string;
  amr: string[];
}

type LoginContext = Pick<Context, 'storage' | 'clock' | 'identity' | 'audit'>;

/**
 * The account a login attempt names, read ahead of `verifyLogin` — with the request's other reads
 * when `flight` is given (the sign-in form reads it with its interaction: one round trip).
 */
export interface LoginAccount {
  username: string;
  row: Promise<Database['users'] | undefined>;
}

/** Reads the account `username` names, for `verifyLogin`; with `flight`'s statements when given. */
export function readLoginAccount(ctx: Pick<Context, 'storage'>, username: string, flight?: Flight): LoginAccount {
  const normalized = normalizeUsername(username).slice(0, 256);
  const row = userRowByUsername(ctx.storage.db, normalized, flight);
  row.catch(() => undefined); // settled by verifyLogin, or abandoned with the request
  return { username: normalized, row };
}

/** Why a login failed, for the audit trail only: the person is told the same thing in every case. */
type FailureReason = 'unknown_user' | 'no_password' | 'wrong_password' | 'locked' | 'throttled';

/**
 * Verifies a username and password. Its rules, in order:
 * 1. the attempt is counted against the account and the source address before any password work
 *    (`LoginThrottle.reserve`), or refused as `throttled` when either is at its failure limit — so
 *    parallel guesses cannot all pass the check while the first is still being verified, and no
 *    password work is done for a throttled attempt;
 * 2. the password is verified against the stored Argon2id hash, or, for an unknown username or an
 *    account without a password, against a dummy hash: the same work, so timing does not tell
 *    which usernames exist;
 * 3. a locked or disabled account fails even with the right password — also when the lock lands while the
 *    password is being verified: the success is written only if the account is still active;
 * 4. every failure keeps its count against the account (when it exists) and the address, and is
 *    audited as `user.login_failed` with its reason; the `lockoutThreshold`-th consecutive failure
 *    locks the account (`user.locked`) for password logins only: the person's tokens keep working
 *    (src/identity/lifecycle.ts);
 * 5. a success refunds its throttle count, resets the consecutive-failure count, upgrades a hash
 *    made with older parameters, and is audited as `user.login_succeeded` before the caller
 *    responds — in one transaction with what `onSuccess` adds to its flight (the caller's
 *    consequences of the login: the new session, the interaction's record of it), so they commit
 *    together or not at all, in one round trip. `onSuccess` adds statements and must not wait for
 *    their answers: they come once the transaction has committed.
 * Unknown user, wrong password and locked account give the same outcome, `invalid_credentials`.
 * `account`: the account, read ahead (`readLoginAccount`); else it is read here.
 */
export async function verifyLogin<T = undefined>(
  ctx: LoginContext,
  attempt: LoginAttempt,
  onSuccess?: (flight: Flight, login: VerifiedLogin) => T | Promise<T>,
  account?: LoginAccount,
): Promise<LoginOutcome<T>> {
  const username = normalizeUsername(attempt.username).slice(0, 256);
  const db = ctx.storage.db;
  const row = account && account.username === username ? await account.row : await userRowByUsername(db, username);
  const base = {
    requestId: attempt.requestId,
    ...(attempt.clientId ? { client: attempt.clientId } : {}),
    ...(row ? { subject: row.id } : {}),
  };
  const invalid: LoginOutcome<T> = { ok: false, reason: 'invalid_credentials' };
  const fail = async (reason: FailureReason): Promise<LoginOutcome<T>> => {
    await ctx.audit.record(failureEvent(base, reason, attempt.sourceAddress));
    return invalid;
  };

  const reservation = await ctx.identity.throttle.reserve(username, attempt.sourceAddress);
  if (!reservation.granted) {
    await fail('throttled');
    return { ok: false, reason: 'throttled', retryAfterSeconds: Math.max(1, Math.ceil(reservation.retryAfterMs / 1000)) };
  }
  // The attempt counts as a failure unless it is judged a success (or is never judged: an error
  // before the password was checked is not a guess).
  let judged: 'failure' | 'success' | undefined;
  try {
    if (!row || row.password_hash === null) {
      await verifyAgainstDummy(attempt.password);
      judged = 'failure';
      return await fail(!row ? 'unknown_user' : 'no_password');
    }
    // A password longer than any accepted one cannot match; it costs the same work all the same.
    const matches =
      attempt.password.length > maxPasswordLength ? await verifyAgainstDummy(attempt.password) : await verifyPassword(attempt.password, row.password_hash);
    if (row.status !== 'active') {
      judged = 'failure';
      return await fail('locked');
    }
    if (!matches) {
      judged = 'failure';
      const outcome = await fail('wrong_password');
      await countFailure(ctx, row.id, base, attempt.sourceAddress);
      return outcome;
    }
    judged = 'success';

    const now = ctx.clock.now();
    const upgrade = needsRehash(row.password_hash) ? await hashPassword(attempt.password) : undefined;
    const storedHash = row.password_hash;
    // What the update below makes of the row (the user as the caller gets it, without reading it again).
    const user = userFromRow({ ...row, failed_logins: 0, last_login_at: now });
    const amr: string[] = [amrValues.password]; // RFC 8176 §2
    const acr = acrLevels.password; // src/identity/acr.ts: the ladder's lowest rung
    const flight = ctx.storage.flight();
    // Conditional on the account still being active: a lockout that committed while the password
    // was being verified wins over the right password (and then nothing of the flight is written).
    void flight.run(
      db
        .updateTable('users')
        .set((eb) => ({
          failed_logins: 0,
          last_login_at: now,
          // The upgraded hash only if nobody changed the password meanwhile: it is for the same password.
          ...(upgrade ? { password_hash: eb.case().when('password_hash', '=', storedHash).then(upgrade).else(eb.ref('password_hash')).end() } : {}),
        }))
        .where('id', '=', row.id)
        .where('status', '=', 'active'),
      { rows: 1, otherwise: 'account_not_active' },
    );
    const value = onSuccess ? await onSuccess(flight, { user, acr, amr }) : (undefined as T);
    const event: AuditEvent = {
      type: 'user.login_succeeded',
      ...base,
      actor: row.id,
      decision: { allow: true, reasons: ['password'] },
      details: { source_address: attempt.sourceAddress, amr, acr, ...(upgrade ? { rehashed: true } : {}) },
    };
    try {
      await ctx.audit.commit(flight, [event]);
    } catch (error) {
      if (!refusedFor(error, 'account_not_active')) throw error;
      judged = 'failure';
      return await fail('locked');
    }
    return { ok: true, user, acr, amr, value };
  } finally {
    if (judged !== 'failure') await reservation.refund();
  }
}

function failureEvent(base: Partial<AuditEvent>, reason: FailureReason, sourceAddress: string): AuditEvent {
  // The attempted username is not recorded for unknown users: people type passwords into the
  // username field, and the audit log is permanent.
  return { type: 'user.login_failed', ...base, decision: { allow: false, reasons: [reason] }, details: { source_address: sourceAddress } };
}

/**
 * Counts a wrong password; the threshold-th consecutive one locks the account (`lock_reason`
 * `failed_logins`) and ends its browser sessions, but not its tokens.
 */
async function countFailure(ctx: LoginContext, userId: string, base: Partial<AuditEvent>, sourceAddress: string): Promise<void> {
  const db = ctx.storage.db;
  const counted = await db
    .updateTable('users')
    .set((eb) => ({ failed_logins: eb('failed_logins', '+', 1) }))
    .where('id', '=', userId)
    .returning(['failed_logins'])
    .executeTakeFirst();
  const failures = Number(counted?.failed_logins ?? 0);
  if (failures < ctx.identity.policy.lockoutThreshold) return;
  const now = ctx.clock.now();
  const locked = await db.transaction().execute(async (trx) => {
    // Conditional, so concurrent failures lock (and audit) once. An automatic lockout stops password
    // logins only: anyone who knows the username can cause it, so it is no sign of compromise and
    // leaves the person's tokens working (src/identity/lifecycle.ts); an administrator's lock ends them.
    const result = await trx
      .updateTable('users')
      .set({ status: 'locked', lock_reason: 'failed_logins', locked_at: now, updated_at: now })
      .where('id', '=', userId)
      .where('status', '=', 'active')
      .executeTakeFirst();
    if (Number(result.numUpdatedRows) === 0) return false;
    await trx.updateTable('sessions').set({ ended_at: now, end_reason: 'locked' }).where('user_id', '=', userId).where('ended_at', 'is', null).execute();
    return true;
  });
  if (locked) {
    await ctx.audit.record({
      type: 'user.locked',
      ...base,
      decision: { allow: false, reasons: ['consecutive_failures'] },
      details: { consecutive_failures: failures, source_address: sourceAddress },
    });
  }
}
