import type { X509Certificate } from 'node:crypto';
import { forgetRevocationAnswers, revocationStatus as askRevocation, type RevocationAnswer } from '../../certificates/revocation.ts';
import type { RevocationCheck } from './settings.ts';

export type { RevocationAnswer } from '../../certificates/revocation.ts';

/**
 * Whether an external CA revoked a person's certificate, as the authority's `revocation` says to
 * ask: its one method, OCSP at every sign-in (nothing cached: a revocation counts from the
 * responder's next answer) or the CRL kept for `refresh_seconds`. The checking itself is shared
 * with mTLS clients' partner CAs (src/certificates/revocation.ts).
 */
export function revocationStatus(check: RevocationCheck, leaf: X509Certificate, issuer: X509Certificate, now: number): Promise<RevocationAnswer> {
  const url = check.url !== undefined ? { url: check.url } : {};
  return askRevocation(
    check.method === 'ocsp' ? { ocsp: { ...url, cacheSeconds: 0 }, timeoutMs: check.timeout_ms } : { crl: { ...url, refreshSeconds: check.refresh_seconds }, timeoutMs: check.timeout_ms },
    leaf,
    issuer,
    now,
  );
}

/** Forgets the CRLs (and OCSP answers) this node holds (tests, and an operator's reload). */
export function forgetCrls(): void {
  forgetRevocationAnswers();
}
