import type { AuditEvent } from '../audit/events.ts';
import { acr as acrLevels, amr as amrValues } from './acr.ts';
import type { Context } from '../context.ts';
import { refusedFor, type Flight } from '../storage/flight.ts';
import type { Database } from '../storage/schema.ts';
import { hashPassword, maxPasswordLength, needsRehash, verifyAgainstDummy, verifyPassword } from './passwords.ts';
import { normalizeUsername, userFromRow, userRowByUsername, type User } from './users.ts';
import { secondFactorsByUsername, secondFactorsOf, type SecondFactor } from './factors/index.ts';
import { recordFailedLogin } from './failed-login.ts';
import { screenPerson } from '../risk/screening/screen.ts';

import { listPasskeys } from './passkeys/store.ts';
import { riskDenied, type RiskRefusal, type SignInRisk } from './login-risk.ts';
import { riskAuditDetail, type RiskAssessment } from '../risk/assessment.ts';

export interface LoginAttempt {
  username: string;
  password: string;
  /** The request's source address (throttling, audit). */
  sourceAddress: string;
  requestId?: string;
  /** The client the person is logging in for, when known (audit). */
  clientId?: string;
  /** The sign-in's risk (src/identity/login-risk.ts): assessed once the password verified. Without it, none is assessed. */
  risk?: SignInRisk;
  /** The managed device the browser presented (src/pki/devices.ts): named in the event, never a factor. */
  device?: string;
}

export type LoginOutcome<T = undefined, P = undefined> =
  | { ok: true; user: User; acr: string; amr: string[]; /** What `onSuccess` returned. */ value: T }
  /**
   * The password was right, but the person has a second factor: they are not signed in (no
   * `onSuccess`); `onSecondFactor` opened what the second step continues from, and returned `value`.
   */
  | { ok: false; reason: 'second_factor_required'; user: User; factors: SecondFactor[]; value: P }
  | { ok: false; reason: 'invalid_credentials' }
  /**
   * The password was right, but the sign-in's risk asks for a stronger factor and the person has
   * no second factor to follow it, only a passkey: not signed in; they sign in with the passkey.
   */
  | { ok: false; reason: 'passkey_required' }
  | { ok: false; reason: 'throttled'; retryAfterSeconds: number };

/** A correct password of a person who has a second factor, as `onSecondFactor` gets it. */
export interface PasswordVerified {
  user: User;
  factors: SecondFactor[];
  /** The sign-in's risk assessment, for the second step to complete with (pending_sign_ins.risk). */
  risk?: RiskAssessment;
}

/** A verified login, as `onSuccess` gets it. */
export interface VerifiedLogin {
  user: User;
  acr: string;
  amr: string[];
  /** The sign-in's risk assessment, kept with the session (sessions.risk). */
  risk?: RiskAssessment;
}

type LoginContext = Pick<Context, 'storage' | 'clock' | 'identity' | 'audit' | 'risk'>;

/**
 * The account a login attempt names, read ahead of `verifyLogin` — with the request's other reads
 * when `flight` is given (the sign-in form reads it with its interaction: one round trip).
 */
export interface LoginAccount {
  username: string;
  row: Promise<Database['users'] | undefined>;
  /** The account's second factors (src/identity/factors). */
  factors: Promise<SecondFactor[]>;
}

/** Reads the account `username` names, and its second factors, for `verifyLogin`; with `flight`'s statements when given. */
export function readLoginAccount(ctx: Pick<Context, 'storage'>, username: string, flight?: Flight): LoginAccount {
  const normalized = normalizeUsername(username).slice(0, 256);
  const row = userRowByUsername(ctx.storage.db, normalized, flight);
  const factors = secondFactorsByUsername(ctx, normalized, flight);
  // Settled by verifyLogin, or abandoned with the request.
  row.catch(() => undefined);
  factors.catch(() => undefined);
  return { username: normalized, row, factors };
}

/** Why a login failed, for the audit trail only: the person is told the same thing in every case. */
type FailureReason = 'unknown_user' | 'no_password' | 'wrong_password' | 'locked' | 'account_changed' | 'suspended' | 'throttled' | RiskRefusal | 'risk_step_up';

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
 *    password is being verified: the success is written only if the account is still active; so
 *    does an account suspended pending review by an anomaly's reaction (src/risk/anomalies);
 * 3a. the right password of an active account: the sign-in's risk is assessed (`attempt.risk`,
 *    src/identity/login-risk.ts). `deny` refuses it as a wrong password is refused
 *    (`invalid_credentials`; its throttle count kept, so the throttle does not tell a right
 *    password from a wrong one; not counted toward the lockout), audited as `user.login_failed`
 *    (reason `risk_denied`, `details.risk`) and `risk.denied`, with a `risk.denied` alert, in one
 *    transaction. `step_up` asks for a second factor: a person who has one goes on to it (5.);
 *    one with only a passkey is not signed in (`passkey_required`, audited with reason
 *    `risk_step_up`; its throttle count kept, though the answer tells the password was right);
 *    one with neither is refused as for `deny` (reason `risk_step_up_unavailable`);
 * 4. every failure keeps its count against the account (when it exists) and the address, and is
 *    audited as `user.login_failed` with its reason; the `lockoutThreshold`-th consecutive failure
 *    locks the account (`user.locked`) for password logins only: the person's tokens keep working
 *    (src/identity/lifecycle.ts). A wrong password's event, count and lockout are one transaction,
 *    one round trip, as an unknown username's event is (src/identity/failed-login.ts);
 * 5. a person with a second factor (src/identity/factors) is never signed in by the password
 *    alone: the right password refunds its throttle count but leaves the consecutive-failure count
 *    as it is (only a completed sign-in resets it, so wrong second factors after a right password
 *    still add up to a lockout), is audited as `user.factor_succeeded` (factor `password`), and
 *    `onSecondFactor` adds to that transaction what the second step continues from (a pending
 *    sign-in, src/identity/factors/pending.ts, with the risk assessment, which the second step
 *    completes: it meets a step-up); the outcome is `second_factor_required`, and
 *    `onSuccess` is not called. Without `onSecondFactor` nothing is opened: fail closed;
 * 6. otherwise a success refunds its throttle count, resets the consecutive-failure count, upgrades a hash
 *    made with older parameters, and is audited as `user.login_succeeded` before the caller
 *    responds — in one transaction with what `onSuccess` adds to its flight (the caller's
 *    consequences of the login: the new session, the interaction's record of it), so they commit
 *    together or not at all, in one round trip. `onSuccess` adds statements and must not wait for
 *    their answers: they come once the transaction has committed. The event carries the risk
 *    assessment (`details.risk`), `onSuccess` gets it for the session, and once committed the
 *    risk signals remember this sign-in's device and network.
 * Unknown user, wrong password and locked account give the same outcome, `invalid_credentials`
 * (an unknown user never reaches a second factor: their password is never right).
 * `account`: the account, read ahead (`readLoginAccount`); else it is read here.
 */
export async function verifyLogin<T = undefined, P = undefined>(
  ctx: LoginContext,
  attempt: LoginAttempt,
  onSuccess?: (flight: Flight, login: VerifiedLogin) => T | Promise<T>,
  account?: LoginAccount,
  onSecondFactor?: (flight: Flight, login: PasswordVerified) => P | Promise<P>,
): Promise<LoginOutcome<T, P>> {
  const username = normalizeUsername(attempt.username).slice(0, 256);
  const db = ctx.storage.db;
  const row = account && account.username === username ? await account.row : await userRowByUsername(db, username);
  const base = {
    requestId: attempt.requestId,
    ...(attempt.clientId ? { client: attempt.clientId } : {}),
    ...(row ? { subject: row.id } : {}),
  };
  const invalid: LoginOutcome<T, P> = { ok: false, reason: 'invalid_credentials' };
  // A failure's event in a transaction of its own, as a wrong password's is with its count
  // (failed-login.ts): the database's work does not tell an unknown username from a known one.
  const fail = async (reason: FailureReason): Promise<LoginOutcome<T, P>> => {
    await recordFailedLogin(ctx, undefined, failureEvent(base, reason, attempt.sourceAddress), base, attempt.sourceAddress);
    return invalid;
  };
  /** A right password refused for the sign-in's risk (3a.): `user.login_failed` with the assessment, and `risk.denied` with its alert when refused outright. */
  const refuse = async (reason: RiskRefusal | 'risk_step_up', userId: string, assessment: RiskAssessment): Promise<void> => {
    const failed = failureEvent(base, reason, attempt.sourceAddress, { risk: riskAuditDetail(assessment) });
    const flight = ctx.storage.flight();
    const events = reason === 'risk_step_up' ? [failed] : [failed, riskDenied(ctx, flight, { reason, assessment, userId, method: 'password', sourceAddress: attempt.sourceAddress, base })];
    await ctx.audit.commit(flight, events);
  };

  const reservation = await ctx.identity.throttle.reserve(username, attempt.sourceAddress);
  if (!reservation.granted) {
    // Refused before any password work, and said so: the group commit batches a flood of these.
    await ctx.audit.record(failureEvent(base, 'throttled', attempt.sourceAddress));
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
      // Counted with its event in one transaction (failed-login.ts): one round trip, as `fail` takes.
      await recordFailedLogin(ctx, row, failureEvent(base, 'wrong_password', attempt.sourceAddress), base, attempt.sourceAddress);
      return invalid;
    }
    // Suspended pending review by an anomaly's reaction (src/risk/anomalies), until reinstated.
    if (await ctx.risk.reactions.suspended({ type: 'User', id: row.id })) {
      judged = 'failure';
      return await fail('suspended');
    }
    judged = 'success';

    // 3a. The first factor verified: the sign-in's risk, before anything is opened or upgraded.
    const risk = attempt.risk ? await attempt.risk.assess(row) : undefined;
    if (risk?.outcome === 'deny') {
      judged = 'failure';
      await refuse('risk_denied', row.id, risk);
      return invalid;
    }
    const upgrade = needsRehash(row.password_hash) ? { from: row.password_hash, to: await hashPassword(attempt.password) } : undefined;
    const factors = await (account && account.username === username ? account.factors : secondFactorsOf(ctx, row.id));
    if (factors.length > 0) {
      // The first of two factors: no session, no reset of the failure count (see 5. above). The
      // second factor meets a step-up the risk asks.
      const user = userFromRow(row);
      if (!onSecondFactor) return { ok: false, reason: 'second_factor_required', user, factors, value: undefined as P };
      const flight = ctx.storage.flight();
      // Opened only for the account as it was read: a reset committed meanwhile refuses it.
      void flight.run(accountAsRead(ctx, row, true).set((eb) => ({ failed_logins: eb.ref('failed_logins') })), { rows: 1, otherwise: accountChanged });
      if (upgrade) void flight.run(rehash(ctx, row.id, upgrade));
      const value = await onSecondFactor(flight, { user, factors, ...(risk ? { risk } : {}) });
      const opened = ctx.audit.commit(flight, [
        {
          type: 'user.factor_succeeded',
          ...base,
          actor: row.id,
          decision: { allow: true, reasons: ['password'] },
          details: {
            factor: 'password',
            next: factors.map((f) => f.kind),
            source_address: attempt.sourceAddress,
            ...(upgrade ? { rehashed: true } : {}),
            ...(risk ? { risk: riskAuditDetail(risk) } : {}),
          },
        },
      ]);
      try {
        await opened;
      } catch (error) {
        if (!refusedFor(error, accountChanged)) throw error;
        judged = 'failure';
        return await fail(await refusalOf(ctx, row.id));
      }
      return { ok: false, reason: 'second_factor_required', user, factors, value };
    }
    if (risk?.outcome === 'step_up') {
      // A password alone never meets a step-up: the person's passkey does, else nothing they have.
      // Either way the count stays: asking for the passkey says the password was right (the
      // trade-off the second-factor page makes), so it must be no free guess.
      judged = 'failure';
      if ((await listPasskeys(ctx, row.id)).length > 0) {
        await refuse('risk_step_up', row.id, risk);
        return { ok: false, reason: 'passkey_required' };
      }
      await refuse('risk_step_up_unavailable', row.id, risk);
      return invalid;
    }

    const amr: string[] = [amrValues.password]; // RFC 8176 §2
    const acr = acrLevels.password; // src/identity/acr.ts: the ladder's lowest rung
    const flight = ctx.storage.flight();
    const completed = await completeLogin(
      ctx,
      row,
      { acr, amr, methods: ['password'], sourceAddress: attempt.sourceAddress, base, ...(upgrade ? { upgrade } : {}), ...(risk ? { risk } : {}), ...(attempt.device ? { device: attempt.device } : {}), signInRisk: attempt.risk },
      flight,
      [],
      onSuccess,
    );
    if ('refused' in completed) {
      judged = 'failure';
      return await fail(completed.refused);
    }
    return { ok: true, user: completed.user, acr, amr, value: completed.value };
  } finally {
    if (judged !== 'failure') await reservation.refund();
  }
}

/** How a completed login was made: what it asserts, and what `user.login_succeeded` says. */
export interface LoginCompletion {
  acr: string;
  amr: string[];
  /** The factors that proved it, in order (`password`, `totp`, `recovery_code`): the event's reasons. */
  methods: string[];
  sourceAddress: string;
  /** The audit event's request, client and subject. */
  base: Partial<AuditEvent>;
  /** A password hash made with older parameters, and its replacement for the same password. */
  upgrade?: { from: string; to: string };
  /** The sign-in's risk assessment: in the event (`details.risk`) and given to `onSuccess` for the session. */
  risk?: RiskAssessment;
  /** The managed device of the sign-in: in the event (`details.device_id`). */
  device?: string;
  /** The sign-in's risk: what its signals remember (device, network) is written in this transaction. */
  signInRisk?: Pick<SignInRisk, 'observe'> | undefined;
  /** What else the event says of how the person was authenticated (an upstream sign-in's provider and source of assurance, src/federation/upstream). */
  details?: Record<string, unknown>;
}

/**
 * Completes a login whose factors all passed, in one transaction: the account's consecutive-failure
 * count reset (conditional on the account being as the sign-in read it, `accountAsRead`: a lockout,
 * a password reset or a sign-out everywhere that committed meanwhile wins, and then nothing of the
 * flight is written), what `onSuccess` adds (the new session, the interaction's record of it), the
 * caller's own statements already in `flight` (a second factor's single use), and
 * `user.login_succeeded` after `events`. `refused` when the account changed (`locked` when it is
 * no longer active); another refused expectation of the caller's is thrown (FlightRefused) for it
 * to judge.
 */
export async function completeLogin<T>(
  ctx: LoginContext,
  row: Database['users'],
  completion: LoginCompletion,
  flight: Flight,
  events: AuditEvent[],
  onSuccess?: (flight: Flight, login: VerifiedLogin) => T | Promise<T>,
): Promise<{ user: User; value: T } | { refused: LoginRefusal }> {
  const now = ctx.clock.now();
  const { acr, amr, upgrade } = completion;
  // What the update below makes of the row (the user as the caller gets it, without reading it again).
  const user = userFromRow({ ...row, failed_logins: 0, last_login_at: now });
  void flight.run(
    accountAsRead(ctx, row, completion.methods.includes('password')).set((eb) => ({
      failed_logins: 0,
      last_login_at: now,
      // The upgraded hash only if nobody changed the password meanwhile: it is for the same password.
      ...(upgrade ? { password_hash: eb.case().when('password_hash', '=', upgrade.from).then(upgrade.to).else(eb.ref('password_hash')).end() } : {}),
    })),
    { rows: 1, otherwise: accountChanged },
  );
  const value = onSuccess ? await onSuccess(flight, { user, acr, amr, ...(completion.risk ? { risk: completion.risk } : {}) }) : (undefined as T);
  const event: AuditEvent = {
    type: 'user.login_succeeded',
    ...completion.base,
    actor: row.id,
    decision: { allow: true, reasons: completion.methods },
    // A sign-in by one factor names it, as every factor's event does; after two, the factors'
    // own events (user.factor_succeeded) precede this one, and the reasons list them.
    details: {
      ...(completion.methods.length === 1 ? { factor: completion.methods[0] } : {}),
      source_address: completion.sourceAddress,
      amr,
      acr,
      ...(upgrade ? { rehashed: true } : {}),
      ...(completion.risk ? { risk: riskAuditDetail(completion.risk) } : {}),
      ...(completion.device ? { device_id: completion.device } : {}),
      ...completion.details,
    },
  };
  const observed = await completion.signInRisk?.observe(row.id, flight);
  try {
    await ctx.audit.commit(flight, [...events, event]);
  } catch (error) {
    if (refusedFor(error, accountChanged)) return { refused: await refusalOf(ctx, row.id) };
    throw error;
  }
  await observed?.landed;
  await afterSignIn(ctx, user);
  return { user, value };
}

/**
 * Why a sign-in whose factors passed was refused as it committed: the account was locked or disabled
 * meanwhile (`locked`), or its password or access cut-off changed (`account_changed`: a reset, a
 * sign-out everywhere, a KYC freeze).
 */
export type LoginRefusal = 'locked' | 'account_changed';

/** The flight's refusal when the account is no longer as the sign-in read it. */
export const accountChanged = 'account_changed';

/**
 * An UPDATE of the account row that matches only while it is as this sign-in read it: active, the
 * same access cut-off (`tokens_valid_after`, which a password reset, a lock or a sign-out
 * everywhere moves as it ends the person's sessions and pending sign-ins, src/identity/lifecycle.ts)
 * and, for a sign-in by password, the same password hash. The sign-in verified its factors against
 * that row: a reset committed meanwhile must not let the old password open a session, or a pending
 * sign-in, after the reset ended the others. An update rather than a read: on PostgreSQL it takes
 * the row's lock, so a reset either commits first and the update matches nothing, or waits for the
 * sign-in and then ends what it made.
 *
 * It also matches only while the person's credentials are not on hold (a leaver who has not come
 * back through an approved recovery, src/lifecycle/credential-hold.ts): every sign-in — password,
 * second factor, passkey, certificate, upstream identity — commits through this update, so none
 * signs in a held person, whatever credential someone gave them since (refused as
 * `account_changed`).
 */
export function accountAsRead(ctx: LoginContext, row: Database['users'], byPassword: boolean) {
  const query = ctx.storage.db
    .updateTable('users')
    .where('id', '=', row.id)
    .where('status', '=', 'active')
    .where('tokens_valid_after', row.tokens_valid_after === null ? 'is' : '=', row.tokens_valid_after)
    .where((eb) => eb.not(eb.exists(eb.selectFrom('credential_holds').select('credential_holds.user_id').where('credential_holds.user_id', '=', row.id))));
  return byPassword && row.password_hash !== null ? query.where('password_hash', '=', row.password_hash) : query;
}

/** Which refusal an account that is no longer as read gets: `locked` unless it is still active. */
export async function refusalOf(ctx: LoginContext, userId: string): Promise<LoginRefusal> {
  const now = await ctx.storage.db.selectFrom('users').select('status').where('id', '=', userId).executeTakeFirst();
  return now?.status === 'active' ? 'account_changed' : 'locked';
}

/**
 * Once any sign-in committed (password, second factor, passkey): sanctions/PEP screening (an
 * in-memory lookup: a hit freezes the person, who stays signed in to their account pages but gets
 * no token, src/risk/kyc/enforce.ts), and the login counted toward the person's activity
 * (src/risk/anomalies).
 */
export async function afterSignIn(ctx: Pick<Context, 'clock' | 'audit' | 'risk'>, user: User): Promise<void> {
  await screenPerson(ctx, user, 'sign_in');
  ctx.risk.activity.count({ type: 'User', id: user.id }, 'login');
}

/** The statement that stores a hash made with current parameters, if the password did not change meanwhile. */
function rehash(ctx: LoginContext, userId: string, upgrade: { from: string; to: string }) {
  return ctx.storage.db.updateTable('users').set({ password_hash: upgrade.to }).where('id', '=', userId).where('password_hash', '=', upgrade.from);
}

function failureEvent(base: Partial<AuditEvent>, reason: FailureReason, sourceAddress: string, extra: Record<string, unknown> = {}): AuditEvent {
  // The attempted username is not recorded for unknown users: people type passwords into the
  // username field, and the audit log is permanent.
  return { type: 'user.login_failed', ...base, decision: { allow: false, reasons: [reason] }, details: { factor: 'password', source_address: sourceAddress, ...extra } };
}

