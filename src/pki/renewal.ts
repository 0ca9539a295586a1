import type { X509Certificate } from 'node:crypto';
import type { Context } from '../context.ts';
import { PkiRefusal, prepareIssuance, signAndRecord, type IssuedCertificate } from './issuance.ts';

/**
 * Renewal (docs/pki.md "Renewal"): the holder presents its current certificate over mutual TLS —
 * one of this CA's, within its validity, not revoked, of a renewable profile — and a CSR proving
 * possession of the key to certify (the same or a new one); it gets a new certificate for the same
 * holder and profile, as the profile is now. No new approval: the holder and profile were approved
 * (or needed none) and possession of the current key is the credential. `pki.certificate_renewed`
 * names the certificate it renews.
 */
export async function renewCertificate(ctx: Context, presented: X509Certificate, input: { csr: unknown; lifetimeSeconds?: unknown; requestId?: string }): Promise<IssuedCertificate> {
  const trust = await ctx.pki.trust(presented);
  if (!trust.ours) throw new PkiRefusal('not_ours', 'the presented certificate was not issued by this CA');
  if (!trust.ok) throw new PkiRefusal('not_renewable', `the presented certificate cannot be renewed: ${trust.reason}`);
  const current = trust.certificate;
  if (!current.profile.renewable) throw new PkiRefusal('not_renewable', `profile ${current.profile.name} certificates are not renewed; ask for a new one`);
  const { profile, version, csr, plan } = await prepareIssuance(ctx, current.profile.name, input.csr, current.holder, input.lifetimeSeconds);
  return ctx.audit.recordWith(async (trx) => {
    const issued = await signAndRecord(ctx, trx, {
      profile,
      version,
      csr,
      holder: current.holder,
      ...plan,
      requestedBy: current.holder,
      renewedFrom: current.serial,
      approvalRequest: null,
      ...(input.requestId !== undefined ? { requestId: input.requestId } : {}),
    });
    return { value: issued.certificate, events: [issued.event] };
  });
}
