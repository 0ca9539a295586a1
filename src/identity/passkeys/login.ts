import type { AuditEvent } from '../../audit/events.ts';
import type { Context } from '../../context.ts';
import { refusedFor, rowsOf, type Flight } from '../../storage/flight.ts';
import { accountAsRead, accountChanged, afterSignIn, refusalOf, type LoginOutcome, type VerifiedLogin } from '../login.ts';
import { userFromRow } from '../users.ts';
import { checkAssertion, recordAssertion, type AssertionFailure } from './assertion.ts';
import { consumeChallenge } from './challenges.ts';
import { decodeClientData, parseAuthenticationResponse } from './responses.ts';
import { passkeyAcr, passkeyAmr, passkeyByCredentialId } from './store.ts';
import { riskDenied, type SignInRisk } from '../login-risk.ts';
import { riskAuditDetail, type RiskAssessment } from '../../risk/assessment.ts';

export interface PasskeyLoginAttempt {
  /** The assertion as the page posted it (PublicKeyCredential.toJSON(), as text). */
  credential: string | undefined;
  /** The interaction the challenge was issued for. */
  binding: string;
  sourceAddress: string;
  requestId?: string;
  clientId?: string;
  /** The sign-in's risk (src/identity/login-risk.ts): assessed once the assertion verified. Without it, none is assessed. */
  risk?: SignInRisk;
  /** The managed device the browser presented (src/pki/devices.ts): named in the event, never a factor. */
  device?: string;
}

/** Why a passkey sign-in failed, for the audit trail only: the person is told the same thing in every case. */
type FailureReason = AssertionFailure | 'challenge_unknown' | 'user_handle_missing' | 'locked' | 'account_changed' | 'suspended' | 'throttled' | 'counter_changed' | 'risk_denied';

type PasskeyLoginContext = Pick<Context, 'storage' | 'clock' | 'identity' | 'audit' | 'config' | 'risk'>;

/**
 * Signs a person in with a passkey. Its rules, in order:
 * 1. the attempt is counted against the source address (`LoginThrottle.reserve`, no account: a
 *    failed assertion does not say whose account was tried) or refused as `throttled`;
 * 2. a response not shaped like an assertion fails (`malformed`);
 * 3. its challenge is consumed — deleted, once — if it was issued for this interaction
 *    (`challenge_unknown` otherwise: never issued, another interaction's, expired, or used
 *    already, which is what a replayed assertion meets); read with it, in one round trip: the
 *    passkey the response names and its person;
 * 4. the passkey must exist, and belong to the person the challenge was issued for when it was
 *    issued after a username (`wrong_person`: a challenge for a username nobody holds is answered
 *    by no passkey); a username-less sign-in must carry the user handle (`user_handle_missing`);
 *    the person must be active (`locked`);
 * 5. the assertion itself (`checkAssertion`: type, challenge, origin, RP ID, user presence and
 *    verification, backup flags, signature, counter — a counter regression is audited as
 *    `passkey.counter_regressed` too); the person is not suspended pending review by an anomaly's
 *    reaction (`suspended`, src/risk/anomalies);
 * 5a. the sign-in's risk is assessed (`attempt.risk`, src/identity/login-risk.ts): `deny` refuses
 *    it like any failure (`invalid_credentials`, the same message), audited as `user.login_failed`
 *    (reason `risk_denied`, `details.risk`) and `risk.denied` with a `risk.denied` alert, in one
 *    transaction; `step_up` is met — a passkey is the stronger factor — and the sign-in goes on;
 * 6. a success updates the passkey (counter, conditional on the one checked: `counter_changed`
 *    when another sign-in with it committed first) and the person (last login, conditional on
 *    still being active), and is audited as `user.login_succeeded` with factor (and method)
 *    `passkey`, the credential id, `acr`, `amr` and the risk assessment (`details.risk`, also given
 *    to `onSuccess` for the session) — in one transaction with what `onSuccess` adds to its flight
 *    (the new session, the interaction's record of it), as `verifyLogin` does for passwords.
 * Every failure is audited as `user.login_failed` with factor `passkey`, the credential id when
 * the response named a passkey, and its reason, and gives
 * the same outcome, `invalid_credentials`.
 */
export async function verifyPasskeyLogin<T = undefined>(
  ctx: PasskeyLoginContext,
  attempt: PasskeyLoginAttempt,
  onSuccess?: (flight: Flight, login: VerifiedLogin) => T | Promise<T>,
): Promise<LoginOutcome<T>> {
  const base = { requestId: attempt.requestId, ...(attempt.clientId ? { client: attempt.clientId } : {}) };
  const invalid: LoginOutcome<T> = { ok: false, reason: 'invalid_credentials' };
  let failed = false;
  const fail = async (reason: FailureReason, known: { userId?: string; credentialId?: string } = {}): Promise<LoginOutcome<T>> => {
    failed = true;
    await ctx.audit.record(failureEvent(base, reason, attempt.sourceAddress, known));
    return invalid;
  };

  const reservation = await ctx.identity.throttle.reserve('', attempt.sourceAddress);
  if (!reservation.granted) {
    await ctx.audit.record(failureEvent(base, 'throttled', attempt.sourceAddress, {}));
    return { ok: false, reason: 'throttled', retryAfterSeconds: Math.max(1, Math.ceil(reservation.retryAfterMs / 1000)) };
  }
  try {
    const response = parseAuthenticationResponse(attempt.credential);
    const clientData = response && decodeClientData(response.response.clientDataJSON);
    if (!response || !clientData) return await fail('malformed');

    const reads = ctx.storage.flight();
    const consuming = consumeChallenge(ctx, clientData.challenge, { purposes: ['login', 'login_discoverable'], binding: attempt.binding }, reads);
    const reading = passkeyByCredentialId(ctx, response.id, reads);
    const person = rowsOf(
      ctx.storage.db
        .selectFrom('users')
        .innerJoin('passkeys', 'passkeys.user_id', 'users.id')
        .selectAll('users')
        .where('passkeys.credential_id', '=', response.id.slice(0, 1364)),
      reads,
    );
    await reads.send();
    const [challenge, passkey, [row]] = await Promise.all([consuming, reading, person]);
    const known = { ...(passkey ? { userId: passkey.userId, credentialId: passkey.credentialId } : {}) };

    if (!challenge) return await fail('challenge_unknown', known);
    // The id an unknown passkey presented is recorded (a removed passkey still in use shows up).
    if (!passkey || !row) return await fail('unknown_credential', { credentialId: response.id });
    if (challenge.purpose === 'login' && challenge.userId !== passkey.userId) return await fail('wrong_person', known);
    // WebAuthn L3 §7.2 step 6: a person not identified before the ceremony is identified by the
    // user handle too, which must then be present (checkAssertion compares it with the passkey's).
    if (challenge.purpose === 'login_discoverable' && !response.response.userHandle) return await fail('user_handle_missing', known);
    if (row.status !== 'active') return await fail('locked', known);

    const verdict = await checkAssertion(ctx, { response, expectedChallenge: clientData.challenge, passkey, ...(attempt.requestId ? { requestId: attempt.requestId } : {}) });
    if (!verdict.ok) return await fail(verdict.reason, known);
    // Suspended pending review by an anomaly's reaction (src/risk/anomalies), until reinstated.
    if (await ctx.risk.reactions.suspended({ type: 'User', id: row.id })) return await fail('suspended', known);

    // 5a. The passkey verified: the sign-in's risk. A step-up is met by the passkey itself.
    const risk: RiskAssessment | undefined = attempt.risk ? await attempt.risk.assess(row) : undefined;
    if (risk?.outcome === 'deny') {
      failed = true;
      const refusals = ctx.storage.flight();
      const denied = riskDenied(ctx, refusals, { reason: 'risk_denied', assessment: risk, userId: row.id, method: 'passkey', sourceAddress: attempt.sourceAddress, base });
      await ctx.audit.commit(refusals, [failureEvent(base, 'risk_denied', attempt.sourceAddress, known, { risk: riskAuditDetail(risk) }), denied]);
      return invalid;
    }

    const now = ctx.clock.now();
    const user = userFromRow({ ...row, failed_logins: 0, last_login_at: now });
    const acr = passkeyAcr(passkey, ctx.config.passkeyAttestation);
    const amr = passkeyAmr(passkey);
    const flight = ctx.storage.flight();
    recordAssertion(ctx, flight, verdict);
    // Conditional on the account being as read (login.ts accountAsRead): a lock or a sign-out
    // everywhere that committed meanwhile wins. A successful sign-in resets the count of failed
    // passwords, whatever its method (docs/operations.md "Lockout": consecutive failures).
    void flight.run(accountAsRead(ctx, row, false).set({ failed_logins: 0, last_login_at: now }), { rows: 1, otherwise: accountChanged });
    const value = onSuccess ? await onSuccess(flight, { user, acr, amr, ...(risk ? { risk } : {}) }) : (undefined as T);
    const event: AuditEvent = {
      type: 'user.login_succeeded',
      ...base,
      subject: row.id,
      actor: row.id,
      decision: { allow: true, reasons: ['passkey'] },
      details: { factor: 'passkey', method: 'passkey', credential: passkey.credentialId, source_address: attempt.sourceAddress, amr, acr, ...(risk ? { risk: riskAuditDetail(risk) } : {}), ...(attempt.device ? { device_id: attempt.device } : {}) },
    };
    // What the risk signals remember of this sign-in is written with it (src/identity/login-risk.ts).
    const observed = await attempt.risk?.observe(row.id, flight);
    try {
      await ctx.audit.commit(flight, [event]);
    } catch (error) {
      if (refusedFor(error, accountChanged)) return await fail(await refusalOf(ctx, row.id), known);
      if (refusedFor(error, 'passkey_counter_changed')) return await fail('counter_changed', known);
      throw error;
    }
    await observed?.landed;
    await afterSignIn(ctx, user);
    return { ok: true, user, acr, amr, value };
  } finally {
    // Only a failure keeps its count: a success, or an error of the server, is not a guess.
    if (!failed) await reservation.refund();
  }
}

function failureEvent(
  base: Partial<AuditEvent>,
  reason: FailureReason,
  sourceAddress: string,
  known: { userId?: string; credentialId?: string },
  extra: Record<string, unknown> = {},
): AuditEvent {
  return {
    type: 'user.login_failed',
    ...base,
    ...(known.userId ? { subject: known.userId } : {}),
    decision: { allow: false, reasons: [reason] },
    details: { factor: 'passkey', method: 'passkey', ...(known.credentialId ? { credential: known.credentialId } : {}), source_address: sourceAddress, ...extra },
  };
}
