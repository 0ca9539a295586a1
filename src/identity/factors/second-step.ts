import type { AuditEvent } from '../../audit/events.ts';
import type { Context } from '../../context.ts';
import { refusedFor, type Flight } from '../../storage/flight.ts';
import { acr as acrLevels, amr as amrValues } from '../acr.ts';
import { completeLogin, type VerifiedLogin } from '../login.ts';
import { recordFailedLogin } from '../failed-login.ts';
import { holdsPrivilegedRole } from '../roles.ts';
import type { User } from '../users.ts';
import { alertInsert } from '../../signals/alerts.ts';
import { addNotice } from './notices.ts';
import { countPendingFailure, endPendingSignIn, type PendingSignIn } from './pending.ts';
import { matchRecoveryCode, useRecoveryCode } from './recovery-codes.ts';
import { checkTotpCode, openTotpSecret, recordTotpStep } from './totp.ts';
import type { SignInRisk } from '../login-risk.ts';

/** What the person entered on the second-factor page. */
export type SecondFactorProof = { kind: 'totp'; code: string } | { kind: 'recovery_code'; code: string };

export interface SecondFactorAttempt {
  /** The pending sign-in of this browser and interaction (readPendingSignIn). */
  pending: PendingSignIn;
  proof: SecondFactorProof;
  sourceAddress: string;
  requestId?: string;
  clientId?: string;
  /**
   * The sign-in's risk (src/identity/login-risk.ts): only to remember this device and network once
   * signed in — the assessment was made at the password and comes with `pending`.
   */
  risk?: SignInRisk;
  /** The managed device the browser presented (src/pki/devices.ts): named in the event, never a factor. */
  device?: string;
}

export type SecondFactorOutcome<T> =
  | { ok: true; user: User; acr: string; amr: string[]; /** What `onSuccess` returned. */ value: T }
  /** Wrong, replayed or used code. `retry`: the pending sign-in is still open (else the password again). */
  | { ok: false; reason: 'invalid_code'; retry: boolean }
  /** A recovery code from a person holding a privileged role (src/identity/roles.ts): never accepted. */
  | { ok: false; reason: 'recovery_not_allowed' }
  /** The pending sign-in ended meanwhile (used, expired, the account locked): the password again. */
  | { ok: false; reason: 'ended' }
  | { ok: false; reason: 'throttled'; retryAfterSeconds: number };

/** Why a second factor failed, for the audit trail only. */
type FailureReason = 'wrong_code' | 'replayed' | 'reused' | 'locked' | 'account_changed' | 'throttled' | 'privileged_role';

type StepContext = Pick<Context, 'storage' | 'clock' | 'identity' | 'audit' | 'config' | 'risk'>;

/**
 * The second step of a sign-in: the person whose password opened `pending` enters their
 * authenticator's code, or one of their recovery codes. Its rules, in order:
 * 1. the attempt is counted against the account and the address before any check
 *    (`LoginThrottle.reserve`, as a password is), or refused as `throttled`;
 * 2. an account no longer active fails, and ends the pending sign-in;
 * 3. a TOTP code is checked against the person's confirmed authenticator (its sealed secret opened
 *    here), for one time step either side of now and only for a step after the last one accepted
 *    (RFC 6238 §5.2, src/identity/factors/totp.ts);
 * 4. a recovery code is refused outright for a person holding a privileged role (not counted: it
 *    is no guess; they recover through independent approval); otherwise matched against their
 *    unused codes' digests;
 * 5. a failure — wrong code, a replayed TOTP step, a used recovery code — is audited as
 *    `user.factor_failed` (factor, credential id, reason; never the code), counts as a failed login
 *    (throttle kept, consecutive-failure count up, the threshold-th locks the account as wrong
 *    passwords do) and against the pending sign-in, which ends at its `maxPendingFailures`-th —
 *    all in one transaction (src/identity/failed-login.ts);
 * 6. a success, in one transaction (one round trip): the pending sign-in used up and the code's
 *    single use (the TOTP step recorded, or the recovery code marked used), each conditional — a
 *    concurrent request that got there first makes this one a replay, and nothing is written —
 *    then `completeLogin` (failure count reset, the caller's session via `onSuccess`,
 *    `user.factor_succeeded` and `user.login_succeeded` with the risk assessment the password step
 *    made, `pending.risk`, which the second factor completes: it meets a step-up). TOTP signs in at `urn:clearance:acr:mfa`
 *    with amr ['pwd', 'otp', 'mfa']; a recovery code at the same level, never higher, with amr
 *    ['pwd', 'mfa', 'urn:clearance:amr:recovery-code'], and leaves a notice for the person's
 *    account page (notices.ts) and a `recovery.code_used` alert (src/signals/alerts.ts) in the
 *    same transaction. Such a session changes no factor (src/identity/factor-changes.ts rule 2).
 */
export async function verifySecondFactor<T = undefined>(
  ctx: StepContext,
  attempt: SecondFactorAttempt,
  onSuccess?: (flight: Flight, login: VerifiedLogin) => T | Promise<T>,
): Promise<SecondFactorOutcome<T>> {
  const { pending, proof } = attempt;
  const row = pending.user;
  const totp = pending.totp;
  const factor = proof.kind;
  const base: Partial<AuditEvent> = { requestId: attempt.requestId, ...(attempt.clientId ? { client: attempt.clientId } : {}), subject: row.id };
  const credential = totp ? { credential: totp.id } : {};
  const failed = (reason: FailureReason, extra: Record<string, unknown> = {}): AuditEvent => ({
    type: 'user.factor_failed',
    ...base,
    decision: { allow: false, reasons: [reason] },
    // A recovery code has no id of its own: the authenticator whose set it belongs to (`with`).
    details: { factor, ...(factor === 'totp' ? credential : totp ? { with: totp.id } : {}), source_address: attempt.sourceAddress, ...extra },
  });

  const reservation = await ctx.identity.throttle.reserve(row.username, attempt.sourceAddress);
  if (!reservation.granted) {
    await ctx.audit.record(failed('throttled'));
    return { ok: false, reason: 'throttled', retryAfterSeconds: Math.max(1, Math.ceil(reservation.retryAfterMs / 1000)) };
  }
  let counted = false;
  /** A wrong factor: audited, counted as a failed login and against the pending sign-in. */
  const wrong = async (reason: FailureReason): Promise<SecondFactorOutcome<T>> => {
    counted = true;
    // One transaction: the event, the count (and a lockout) and the pending sign-in's count.
    const open = await recordFailedLogin(ctx, row, failed(reason), base, attempt.sourceAddress, (statements) => countPendingFailure(ctx, statements, pending.id));
    return { ok: false, reason: 'invalid_code', retry: open === true };
  };
  const ended = async (): Promise<SecondFactorOutcome<T>> => {
    await ctx.storage.db.updateTable('pending_sign_ins').set({ ended_at: ctx.clock.now() }).where('id', '=', pending.id).where('ended_at', 'is', null).execute();
    return { ok: false, reason: 'ended' };
  };
  try {
    if (row.status !== 'active') {
      await ctx.audit.record(failed('locked'));
      return await ended();
    }
    // The authenticator was removed since the password step: nothing to check against.
    if (!totp) return await ended();
    const now = ctx.clock.now();
    const flight = ctx.storage.flight();
    // The account's row first, as a wrong code's transaction and a reset or lock take it
    // (failed-login.ts): on PostgreSQL they never deadlock over each other's rows. Changes nothing.
    void flight.run(ctx.storage.db.updateTable('users').set((eb) => ({ failed_logins: eb.ref('failed_logins') })).where('id', '=', row.id));
    // Used up by this sign-in, unless something ended it meanwhile.
    void flight.run(endPendingSignIn(ctx, pending.id, now), { rows: 1, otherwise: 'pending_ended' });

    let acr: string;
    let amr: string[];
    let events: AuditEvent[];
    let reuse: FailureReason;
    if (proof.kind === 'totp') {
      const check = await checkTotpCode(openTotpSecret(ctx.identity.factorKeys, totp), proof.code, now, totp.last_used_step === null ? null : Number(totp.last_used_step));
      if (!check.valid) return await wrong(check.reason);
      // RFC 6238 §5.2: this step once, on every node (a concurrent use of it refuses the flight).
      void flight.run(recordTotpStep(ctx, totp.id, check.step, now, 'sign_in'), { rows: 1, otherwise: 'code_used' });
      acr = acrLevels.multiFactor;
      amr = [amrValues.password, amrValues.oneTimePassword, amrValues.multiFactor]; // RFC 8176 §2
      events = [{ type: 'user.factor_succeeded', ...base, actor: row.id, decision: { allow: true, reasons: ['totp'] }, details: { factor, credential: totp.id, source_address: attempt.sourceAddress } }];
      reuse = 'replayed';
    } else {
      // AMENDMENTS "Strong authentication": a privileged role recovers only through independent approval.
      if (holdsPrivilegedRole(JSON.parse(row.roles) as string[])) {
        await ctx.audit.record(failed('privileged_role'));
        return { ok: false, reason: 'recovery_not_allowed' };
      }
      const match = matchRecoveryCode(ctx.identity.factorKeys, row.id, proof.code, pending.recoveryCodes);
      if (!match) return await wrong('wrong_code');
      if (match.state === 'used') return await wrong('reused');
      void flight.run(useRecoveryCode(ctx, row.id, match.digest, now), { rows: 1, otherwise: 'code_used' });
      const remaining = pending.recoveryCodes.filter((code) => code.usedAt === null).length - 1;
      // The person is told on their account page (notices.ts); the event is the audit trail.
      addNotice(ctx, flight, row.id, 'recovery_code_used', { source_address: attempt.sourceAddress, remaining }, now);
      // Issue 15: and a human is alerted (src/signals/alerts.ts), in the same transaction as the use.
      void flight.run(alertInsert(ctx.storage.db, ctx.clock, { type: 'recovery.code_used', subject: row.id, data: { with: totp.id, remaining, source_address: attempt.sourceAddress } }));
      // Never above the factor it replaces (TOTP: mfa), never phishing-resistant.
      acr = acrLevels.multiFactor;
      amr = [amrValues.password, amrValues.multiFactor, amrValues.recoveryCode];
      events = [
        {
          type: 'user.factor_succeeded',
          ...base,
          actor: row.id,
          decision: { allow: true, reasons: ['recovery_code'] },
          details: { factor, with: totp.id, replaces: 'totp', remaining, person_alerted: 'account_notice', source_address: attempt.sourceAddress },
        },
      ];
      reuse = 'reused';
    }

    let completed;
    try {
      completed = await completeLogin(
        ctx,
        row,
        { acr, amr, methods: ['password', factor], sourceAddress: attempt.sourceAddress, base, ...(pending.risk ? { risk: pending.risk } : {}), ...(attempt.device ? { device: attempt.device } : {}), signInRisk: attempt.risk },
        flight,
        events,
        onSuccess,
      );
    } catch (error) {
      if (refusedFor(error, 'code_used')) return await wrong(reuse);
      if (refusedFor(error, 'pending_ended')) return { ok: false, reason: 'ended' };
      throw error;
    }
    if ('refused' in completed) {
      await ctx.audit.record(failed(completed.refused));
      return await ended();
    }
    return { ok: true, user: completed.user, acr, amr, value: completed.value };
  } finally {
    if (!counted) await reservation.refund();
  }
}
