import type { AuditEvent } from '../../audit/events.ts';
import type { Context } from '../../context.ts';
import type { Flight } from '../../storage/flight.ts';
import { riskAuditDetail } from '../../risk/assessment.ts';
import { acr as levels, amr as methods } from '../acr.ts';
import { completeLogin, type VerifiedLogin } from '../login.ts';
import { riskDenied, type RiskRefusal, type SignInRisk } from '../login-risk.ts';
import type { User } from '../users.ts';
import { checkPersonCertificate, type CertificateRefusal, type CheckedCertificate } from './check.ts';
import { certificateFacts, type CertificateFacts } from './fields.ts';
import { mapToPerson } from './mapping.ts';
import type { Presented } from './presented.ts';
import { personCertificateAuthorities } from './settings.ts';

export interface CertificateLoginAttempt {
  /** What the browser presented (src/identity/certificates/presented.ts). */
  presented: Presented;
  sourceAddress: string;
  requestId?: string;
  clientId?: string;
  /** The sign-in's risk (src/identity/login-risk.ts): assessed once the person is known. */
  risk?: SignInRisk;
}

/**
 * The level of a certificate sign-in (docs/certificate-sign-in.md "Levels").
 *
 * A certificate with one of its authority's hardware policy OIDs is a smart card: the key was made
 * on a hardware token and cannot leave it, and the token signs only after the holder's PIN — the
 * operator lists an OID only for a certificate policy that says so (FIPS 201 PIV authentication,
 * or the firm's own CP). That is `urn:clearance:acr:phrh`, the rung of an attested hardware passkey,
 * because it has what that rung stands for:
 * - phishing-resistant: TLS client authentication signs the handshake, which is bound to the
 *   server's identity, so a look-alike site cannot relay it (NIST SP 800-63B §5.2.5, verifier
 *   impersonation resistance; OMB M-22-09 counts PIV as phishing-resistant). Behind a trusted proxy
 *   the handshake is with the firm's own proxy, which is the verifier's side;
 * - hardware-bound, and that verified by a party the operator trusts: the CA's policy OID plays the
 *   part of the passkey's attestation and AAGUID allowlist;
 * - two factors: the card and the PIN that unlocks it.
 * amr: `sc` (smart card), `hwk` (proof of possession of a hardware-secured key), `pin` (the PIN that
 * unlocks it) and `mfa` (RFC 8176 §2).
 *
 * Any other certificate is a key in software: it may have been exported (a PKCS#12 file is a
 * file), and nothing says a person unlocked it. One factor, however phishing-resistant the
 * handshake: the ladder's lowest rung, `urn:clearance:acr:pwd` (one factor; `:mfa` and above need
 * two), amr `swk`. A relying party or role that asks more gets a step-up; an authority may refuse
 * software certificates outright (`software_certificates: refuse`).
 */
export function certificateLevel(hardware: boolean): { acr: string; amr: string[] } {
  return hardware
    ? { acr: levels.phishingResistantHardware, amr: [methods.smartCard, methods.hardwareKey, methods.pin, methods.multiFactor] }
    : { acr: levels.password, amr: [methods.softwareKey] };
}

/** Why a certificate sign-in failed: the certificate's refusal, or the person's. */
export type CertificateLoginFailure =
  | CertificateRefusal
  | 'proxy_header_untrusted'
  | 'unmapped'
  | 'ambiguous'
  | 'locked'
  | 'account_changed'
  | 'suspended'
  | 'throttled'
  | 'risk_denied'
  | 'risk_step_up_unavailable';

export type CertificateLoginOutcome<T> =
  | { ok: true; user: User; acr: string; amr: string[]; value: T }
  /** Nothing to check (no audit event): certificate sign-in is not set up, or no certificate was presented. */
  | { ok: false; reason: 'not_configured' | 'absent' }
  | { ok: false; reason: CertificateLoginFailure; retryAfterSeconds?: number };

type CertificateLoginContext = Pick<Context, 'storage' | 'clock' | 'identity' | 'audit' | 'risk' | 'pki'>;

/**
 * Signs a person in with the client certificate their browser presented. Its rules, in order:
 * 1. certificate sign-in is set up (apply's `person_certificates` names an authority), else
 *    `not_configured`; a certificate was presented, else `absent` — neither is audited: nothing
 *    was tried;
 * 2. the attempt is counted against the source address (`LoginThrottle.reserve`, no account)
 *    or refused as `throttled`;
 * 3. a certificate header from an address that is not a configured proxy is refused
 *    (`proxy_header_untrusted`) and never read;
 * 4. checkPersonCertificate (src/identity/certificates/check.ts): Clearance's own CA first (a
 *    device certificate never signs a person in), else an external authority's issuing CA; dates,
 *    client-authentication usage, hardware or software, revocation;
 * 5. the person: the authority's mapping rules name exactly one (`unmapped`, `ambiguous`), who is
 *    active (`locked`) and not suspended pending review (`suspended`, src/risk/anomalies);
 * 6. the sign-in's risk (`attempt.risk`): `deny` refuses (`risk_denied`); `step_up` asks for a
 *    second factor, which a smart card is (card and PIN) and a software certificate is not
 *    (`risk_step_up_unavailable`);
 * 7. a success is `completeLogin`: one transaction with the person's last login, what `onSuccess`
 *    adds (the session, the interaction's record of it) and `user.login_succeeded` — method and
 *    factor `certificate`, acr and amr (`certificateLevel`), the authority, the certificate's
 *    serial, issuer and SHA-256 (never its subject), `hardware`, how revocation was checked
 *    (`clearance`, `good`, or `unavailable` when the authority soft-fails), `via` (tls or proxy).
 * Every failure from 3. on is audited as `user.login_failed` with factor and method `certificate`,
 * its reason, the certificate's facts and authority when known, and the person (subject) once
 * mapped; the caller tells the person what is theirs to know — about their certificate — and one
 * message for every reason about accounts (no account enumeration).
 */
export async function verifyCertificateLogin<T>(
  ctx: CertificateLoginContext,
  attempt: CertificateLoginAttempt,
  onSuccess: (flight: Flight, login: VerifiedLogin) => T | Promise<T>,
): Promise<CertificateLoginOutcome<T>> {
  const authorities = await personCertificateAuthorities(ctx);
  if (authorities.length === 0) return { ok: false, reason: 'not_configured' };
  if (attempt.presented.kind === 'none') return { ok: false, reason: 'absent' };
  const base: Partial<AuditEvent> = { requestId: attempt.requestId, ...(attempt.clientId ? { client: attempt.clientId } : {}) };
  const via = attempt.presented.kind === 'certificate' ? attempt.presented.via : 'proxy';
  const facts = attempt.presented.kind === 'certificate' ? certificateFacts(attempt.presented.certificate) : undefined;
  let failed = false;
  const fail = async (reason: CertificateLoginFailure, known: { authority?: string; userId?: string; detail?: string; extra?: Record<string, unknown> } = {}): Promise<CertificateLoginOutcome<T>> => {
    failed = true;
    await ctx.audit.record(failureEvent({ ...base, ...(known.userId ? { subject: known.userId } : {}) }, reason, attempt.sourceAddress, { via, facts, ...known }));
    return { ok: false, reason };
  };

  const reservation = await ctx.identity.throttle.reserve('', attempt.sourceAddress);
  if (!reservation.granted) {
    await ctx.audit.record(failureEvent(base, 'throttled', attempt.sourceAddress, { via, facts }));
    return { ok: false, reason: 'throttled', retryAfterSeconds: Math.max(1, Math.ceil(reservation.retryAfterMs / 1000)) };
  }
  try {
    if (attempt.presented.kind === 'forged_header') return await fail('proxy_header_untrusted');
    const check = await checkPersonCertificate(ctx, authorities, attempt.presented.certificate);
    if (!check.ok) return await fail(check.reason, { ...(check.authority ? { authority: check.authority } : {}), ...(check.detail ? { detail: check.detail } : {}) });
    const authority = check.authority.name;

    const mapped = await mapToPerson(ctx, check.authority, check.parsed);
    if (!mapped.ok) return await fail(mapped.reason, { authority, ...(mapped.rule ? { extra: { rule: mapped.rule.certificate } } : {}) });
    const row = mapped.row;
    const person = { authority, userId: row.id };
    if (row.status !== 'active') return await fail('locked', person);
    if (await ctx.risk.reactions.suspended({ type: 'User', id: row.id })) return await fail('suspended', person);

    const risk = attempt.risk ? await attempt.risk.assess(row) : undefined;
    // As for a password or passkey: the refusal, `risk.denied` and its alert in one transaction.
    const riskRefusal: RiskRefusal | undefined = risk?.outcome === 'deny' ? 'risk_denied' : risk?.outcome === 'step_up' && !check.hardware ? 'risk_step_up_unavailable' : undefined;
    if (risk && riskRefusal) {
      failed = true;
      const refusals = ctx.storage.flight();
      const denied = riskDenied(ctx, refusals, { reason: riskRefusal, assessment: risk, userId: row.id, method: 'certificate', sourceAddress: attempt.sourceAddress, base });
      await ctx.audit.commit(refusals, [failureEvent({ ...base, subject: row.id }, riskRefusal, attempt.sourceAddress, { via, facts, ...person, extra: { risk: riskAuditDetail(risk) } }), denied]);
      return { ok: false, reason: riskRefusal };
    }

    const { acr, amr } = certificateLevel(check.hardware);
    const flight = ctx.storage.flight();
    const completed = await completeLogin(
      ctx,
      row,
      {
        acr,
        amr,
        methods: ['certificate'],
        sourceAddress: attempt.sourceAddress,
        base: { ...base, subject: row.id },
        ...(risk ? { risk } : {}),
        signInRisk: attempt.risk,
        details: successDetails(check, facts!, via),
      },
      flight,
      [],
      onSuccess,
    );
    if ('refused' in completed) return await fail(completed.refused, person);
    return { ok: true, user: completed.user, acr, amr, value: completed.value };
  } finally {
    // Only a failure keeps its count: a success, or an error of the server, is no failed attempt.
    if (!failed) await reservation.refund();
  }
}

function successDetails(check: CheckedCertificate, facts: CertificateFacts, via: 'tls' | 'proxy'): Record<string, unknown> {
  return {
    method: 'certificate',
    authority: check.authority.name,
    certificate: facts,
    hardware: check.hardware,
    revocation: check.revocation,
    ...(check.revocationDetail ? { revocation_detail: check.revocationDetail } : {}),
    via,
  };
}

function failureEvent(
  base: Partial<AuditEvent>,
  reason: CertificateLoginFailure,
  sourceAddress: string,
  known: { via: 'tls' | 'proxy'; facts?: CertificateFacts | undefined; authority?: string; detail?: string; extra?: Record<string, unknown> },
): AuditEvent {
  return {
    type: 'user.login_failed',
    ...base,
    decision: { allow: false, reasons: [reason] },
    details: {
      factor: 'certificate',
      method: 'certificate',
      reason,
      source_address: sourceAddress,
      via: known.via,
      ...(known.facts ? { certificate: known.facts } : {}),
      ...(known.authority ? { authority: known.authority } : {}),
      ...(known.detail ? { detail: known.detail } : {}),
      ...known.extra,
    },
  };
}
