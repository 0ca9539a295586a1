import type { X509Certificate } from 'node:crypto';
import type { Context } from '../../context.ts';
import { certificateSerial } from '../../guard/ocsp.ts';
import { certificatePolicies, parsed, usableForClientAuth } from './fields.ts';
import { revocationStatus } from './revocation.ts';
import type { LoadedAuthority, PersonCertificateAuthority } from './settings.ts';
import type * as x509 from '../../pki/x509.ts';

/** Why a certificate cannot sign a person in, for the audit trail and the page. */
export type CertificateRefusal =
  /** Issued by no authority trusted to sign people in (or by one whose CA certificate is no longer valid). */
  | 'untrusted'
  /** A certificate of Clearance's own CA of a profile that signs nobody in (a workload's, an agent's). */
  | 'not_a_person_profile'
  /** A `device` certificate of Clearance's own CA: it identifies a device, never a person (AMENDMENTS). */
  | 'device_certificate'
  | 'expired'
  | 'not_yet_valid'
  /** A CA certificate, or one whose key usages do not include authenticating a TLS client. */
  | 'not_for_client_auth'
  /** A software certificate where the authority accepts smart cards only. */
  | 'software_refused'
  | 'revoked'
  /** The CA's responder does not know the certificate. */
  | 'revocation_unknown'
  /** No verified revocation answer, and the authority refuses then (hard fail). */
  | 'revocation_unavailable';

/** A certificate fit to sign a person in: its authority, whether it is a hardware token's, and how its revocation was checked. */
export interface CheckedCertificate {
  authority: PersonCertificateAuthority;
  /** It carries one of the authority's hardware policy OIDs. */
  hardware: boolean;
  /** `clearance`: Clearance's own status store; `good`: the CA's CRL or OCSP; `unavailable`: no answer, and the authority allows that (soft fail). */
  revocation: 'clearance' | 'good' | 'unavailable';
  /** Why there was no revocation answer (soft fail only). */
  revocationDetail?: string;
  parsed: x509.X509Certificate;
}

export type CertificateCheck = ({ ok: true } & CheckedCertificate) | { ok: false; reason: CertificateRefusal; authority?: string; detail?: string };

/**
 * Checks a presented certificate for signing a person in, each rule in order (docs/certificate-sign-in.md):
 * 1. Clearance's own CA first (`pki.trust`: its signature by an issuing authority, its dates, its
 *    status now): a `device` profile's certificate is refused (`device_certificate`) whatever
 *    else is configured; one of a profile no authority names is `not_a_person_profile`; a revoked
 *    one `revoked`, at once (≤ 1 s on other nodes).
 * 2. Else an external authority whose CA certificates include the one that signed it (name and
 *    signature checked), that CA certificate valid now; none → `untrusted`. The person's
 *    certificate is signed directly by a CA in the bundle: the bundle holds the issuing CAs.
 * 3. Its validity period holds now (`expired`, `not_yet_valid`).
 * 4. It is an end entity that may authenticate a TLS client (`not_for_client_auth`).
 * 5. Hardware: it carries one of the authority's `hardware_policy_oids`; a software certificate
 *    where the authority refuses them is `software_refused`.
 * 6. An external CA is asked whether it revoked it (src/identity/certificates/revocation.ts):
 *    `revoked`; `revocation_unknown`; no answer → `revocation_unavailable` (hard fail), or on
 *    with `revocation: unavailable` (soft fail, `on_unavailable: allow`).
 */
export async function checkPersonCertificate(ctx: Pick<Context, 'pki' | 'clock'>, authorities: readonly LoadedAuthority[], presented: X509Certificate): Promise<CertificateCheck> {
  const now = ctx.clock.now();
  const certificate = parsed(presented);
  let authority: PersonCertificateAuthority | undefined;
  let issuer: X509Certificate | undefined;

  // 1. Clearance's own CA.
  const own = await ctx.pki.trust(presented);
  if (own.ours) {
    if (!own.ok) return { ok: false, ...(await ownRefusal(ctx, presented, now)), detail: own.reason };
    const profile = own.certificate.profile;
    if (profile.kind === 'device') return { ok: false, reason: 'device_certificate', detail: `profile ${profile.name}` };
    authority = authorities.find((a) => a.definition.clearance_profile === profile.name)?.definition;
    if (!authority) return { ok: false, reason: 'not_a_person_profile', detail: `profile ${profile.name} signs nobody in` };
  } else {
    // 2. An external authority's issuing CA.
    for (const candidate of authorities) {
      const ca = candidate.anchors.find((anchor) => presented.checkIssued(anchor) && presented.verify(anchor.publicKey));
      if (ca) {
        authority = candidate.definition;
        issuer = ca;
        break;
      }
    }
    if (!authority || !issuer) return { ok: false, reason: 'untrusted' };
    if (now < issuer.validFromDate.getTime() || now > issuer.validToDate.getTime()) return { ok: false, reason: 'untrusted', authority: authority.name, detail: 'the issuing CA certificate is not valid now' };
  }
  // 3. Dates (checked by pki.trust for Clearance's own; again here, at no cost).
  if (now < presented.validFromDate.getTime()) return { ok: false, reason: 'not_yet_valid', authority: authority.name };
  if (now > presented.validToDate.getTime()) return { ok: false, reason: 'expired', authority: authority.name };
  // 4. What the key may do.
  if (!usableForClientAuth(presented, certificate)) return { ok: false, reason: 'not_for_client_auth', authority: authority.name };
  // 5. Hardware or software.
  const policies = certificatePolicies(certificate);
  const hardware = authority.hardware_policy_oids.some((oid) => policies.includes(oid));
  if (!hardware && authority.software_certificates === 'refuse') return { ok: false, reason: 'software_refused', authority: authority.name };
  // 6. Revocation.
  if (!issuer || !authority.revocation) return { ok: true, authority, hardware, revocation: 'clearance', parsed: certificate };
  const answer = await revocationStatus(authority.name, authority.revocation, presented, issuer, now);
  switch (answer.status) {
    case 'good':
      return { ok: true, authority, hardware, revocation: 'good', parsed: certificate };
    case 'revoked':
      return { ok: false, reason: 'revoked', authority: authority.name, ...(answer.revokedAt !== undefined ? { detail: `revoked at ${new Date(answer.revokedAt).toISOString()}` } : {}) };
    case 'unknown':
      return { ok: false, reason: 'revocation_unknown', authority: authority.name };
    case 'unavailable':
      // A responder the fetch rules refuse is a configuration to fix, not an outage to ride out.
      if (authority.revocation.on_unavailable === 'refuse' || answer.refused) return { ok: false, reason: 'revocation_unavailable', authority: authority.name, detail: answer.detail };
      return { ok: true, authority, hardware, revocation: 'unavailable', revocationDetail: answer.detail, parsed: certificate };
  }
}

/**
 * Why a certificate of Clearance's own CA is not usable now (pki.trust says only that it is not):
 * a device's is refused as such before anything else; then its dates; then its status.
 */
async function ownRefusal(ctx: Pick<Context, 'pki' | 'clock'>, presented: X509Certificate, now: number): Promise<{ reason: CertificateRefusal }> {
  const issuing = (await ctx.pki.authorities.all()).filter((a) => a.role === 'issuing').find((a) => presented.checkIssued(a.node) && presented.verify(a.node.publicKey));
  const answer = issuing ? await ctx.pki.status.status(issuing.id, certificateSerial(presented)) : { status: 'unknown' as const };
  if (answer.status !== 'unknown' && (await ctx.pki.profiles()).get(answer.certificate.profile)?.profile.kind === 'device') return { reason: 'device_certificate' };
  if (now < presented.validFromDate.getTime()) return { reason: 'not_yet_valid' };
  if (now > presented.validToDate.getTime()) return { reason: 'expired' };
  if (answer.status === 'revoked') return { reason: 'revoked' };
  return { reason: 'untrusted' };
}
