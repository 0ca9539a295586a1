import type { X509Certificate } from 'node:crypto';
import { forgetRevocationAnswers, revocationStatus as askRevocation, type RevocationAnswer } from '../../certificates/revocation.ts';
import type { RevocationCheck } from './settings.ts';

export type { RevocationAnswer } from '../../certificates/revocation.ts';

/**
 * Whether an external CA revoked a person's certificate, as the authority's `revocation` says to
 * ask: its one method, OCSP at every sign-in (nothing cached: a revocation counts from the
 * responder's next answer) or the CRL kept for `refresh_seconds`. The checking itself is shared
 * with mTLS clients' partner CAs (src/certificates/revocation.ts), and so are its fetch rules: a
 * URL the certificate names may reach the private network only with `allow_private_network`.
 */
export function revocationStatus(authority: string, check: RevocationCheck, leaf: X509Certificate, issuer: X509Certificate, now: number): Promise<RevocationAnswer> {
  const url = check.url !== undefined ? { url: check.url } : {};
  const rules = {
    timeoutMs: check.timeout_ms,
    allowPrivateNetwork: check.allow_private_network === true,
    privateNetworkSetting: `the revocation setting of person certificate authority ${authority}`,
  };
  return askRevocation(check.method === 'ocsp' ? { ocsp: { ...url, cacheSeconds: 0 }, ...rules } : { crl: { ...url, refreshSeconds: check.refresh_seconds }, ...rules }, leaf, issuer, now);
}

/** Forgets the CRLs (and OCSP answers) this node holds (tests, and an operator's reload). */
export function forgetCrls(): void {
  forgetRevocationAnswers();
}
