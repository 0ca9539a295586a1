import type { X509Certificate } from 'node:crypto';
import type { Context } from '../context.ts';
import { certificateSerial } from '../guard/ocsp.ts';
import { PkiRefusal, prepareIssuance, signAndRecord, type IssuedCertificate } from './issuance.ts';
import type { CertificateProfile } from './profiles.ts';
import type { TrustOutcome } from './status.ts';

/**
 * Renewal (docs/pki.md "Renewal"): the holder presents its current certificate over mutual TLS —
 * one of this CA's, within its validity, not revoked, of a renewable profile — and a CSR proving
 * possession of the key to certify (the same or a new one); it gets a new certificate for the same
 * holder and profile, as the profile is now. No new approval: the holder and profile were approved
 * (or needed none) and possession of the current key is the credential — under a profile that
 * requires approval, only a certificate that stands on one is renewed, and the renewal names it.
 * `pki.certificate_renewed` names the certificate it renews.
 */
export async function renewCertificate(ctx: Context, presented: X509Certificate, input: { csr: unknown; lifetimeSeconds?: unknown; requestId?: string }): Promise<IssuedCertificate> {
  const trust = await ctx.pki.trust(presented);
  if (!trust.ours) throw new PkiRefusal('not_ours', 'the presented certificate was not issued by this CA');
  // From here the certificate is the CA's and names a holder: a refusal is audited, as an issuance's is.
  const holder = trust.ok ? trust.certificate.holder : undefined;
  try {
    return await renew(ctx, trust, input);
  } catch (error) {
    if (error instanceof PkiRefusal) await recordRenewalRefusal(ctx, holder, certificateSerial(presented), trust.ok ? trust.certificate.profile.name : undefined, error, input.requestId);
    throw error;
  }
}

async function renew(ctx: Context, trust: Exclude<TrustOutcome, { ours: false }>, input: { csr: unknown; lifetimeSeconds?: unknown; requestId?: string }): Promise<IssuedCertificate> {
  if (!trust.ok) throw new PkiRefusal('not_renewable', `the presented certificate cannot be renewed: ${trust.reason}`);
  const current = trust.certificate;
  if (!current.profile.renewable) throw new PkiRefusal('not_renewable', `profile ${current.profile.name} certificates are not renewed; ask for a new one`);
  // docs/agents.md: an agent is credentialed only after its pipeline attested the key (its storage)
  // and the approved model it runs; renewing on the old certificate would skip both.
  if (await ctx.agents.credential(current.serial)) throw new PkiRefusal('agent_certificate', `certificate ${current.serial} was issued on a workload attestation: an agent gets its next one with a new attestation (POST /agents/${current.holder}/certificate)`);
  const { profile, version, csr, plan } = await prepareIssuance(ctx, current.profile.name, input.csr, current.holder, input.lifetimeSeconds);
  const approvalRequest = await approvalCarriedOn(ctx, current.serial, profile);
  return ctx.audit.recordWith(async (trx) => {
    const issued = await signAndRecord(ctx, trx, {
      profile,
      version,
      csr,
      holder: current.holder,
      ...plan,
      requestedBy: current.holder,
      renewedFrom: current.serial,
      approvalRequest,
      ...(input.requestId !== undefined ? { requestId: input.requestId } : {}),
    });
    return { value: issued.certificate, events: [issued.event] };
  });
}

/** Legacy renewals (before they named their approval) are followed back at most this far. */
const maxRenewalHops = 10_000;

/**
 * The approval a renewal stands on. "No new approval" holds only where there was one: under a
 * profile that requires a second person, the certificate renewed must itself come from an approved
 * issuance (its own `approval_request`, or that of the certificate it renewed, and so on), else a
 * profile tightened to four eyes would be carried on by renewals nobody approved
 * (`approval_required`). The approval is named in the new certificate, so the next renewal finds
 * it in one read. Under a profile without approval, none is needed and none is named.
 */
async function approvalCarriedOn(ctx: Context, serial: string, profile: CertificateProfile): Promise<string | null> {
  if (profile.approval !== 'required') return null;
  let next: string | null = serial;
  for (let hop = 0; next !== null && hop < maxRenewalHops; hop++) {
    const row = await ctx.storage.db.selectFrom('pki_certificates').select(['approval_request', 'renewed_from']).where('serial', '=', next).executeTakeFirst();
    if (!row) break;
    if (row.approval_request) return row.approval_request;
    next = row.renewed_from;
  }
  throw new PkiRefusal('approval_required', `profile ${profile.name} requires a second person's approval, and certificate ${serial} was not issued on one: ask for a new certificate`);
}

async function recordRenewalRefusal(ctx: Context, holder: string | undefined, serial: string, profile: string | undefined, refusal: PkiRefusal, requestId: string | undefined): Promise<void> {
  await ctx.audit.record({
    type: 'pki.issuance_refused',
    actor: holder ?? `certificate:${serial}`,
    ...(holder !== undefined ? { subject: holder } : {}),
    ...(requestId !== undefined ? { requestId } : {}),
    details: { control: 'financial', ...(profile !== undefined ? { profile } : {}), reason: refusal.code, renewal_of: serial },
  });
}
