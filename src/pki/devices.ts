import type { X509Certificate } from 'node:crypto';
import type { Pki } from './index.ts';

/**
 * The managed device a browser presented over mTLS (docs/pki.md "Managed devices"): the holder of a
 * certificate of Clearance's own CA whose profile is of kind `device`, usable now (chain, dates,
 * not revoked). Anything else — no certificate, another CA's, a revoked one, a workload's — is no
 * managed device, and the sign-in goes on without one: the device is recorded, never required here
 * (policy requires it where it matters, `context.managed_device`) and never a factor of the person.
 */
export async function managedDevice(pki: Pick<Pki, 'trust'>, certificate: X509Certificate | undefined): Promise<string | undefined> {
  if (!certificate) return undefined;
  const trust = await pki.trust(certificate);
  if (!trust.ours || !trust.ok || trust.certificate.profile.kind !== 'device') return undefined;
  return trust.certificate.holder;
}
