import type { AccessTokenClaims } from '../tokens/claims.ts';
import { PkiRefusal } from './issuance.ts';

/** What a CA API token says of who asks: `origin_iss` marks a partner's subject (src/grants/jwt-bearer.ts). */
export type Asker = Pick<AccessTokenClaims, 'sub' | 'client_id' | 'act' | 'grant_id'> & { origin_iss?: unknown };

/**
 * Whom a workload certificate asked for with this token is for (docs/pki.md "Issuance"): the
 * authenticated client itself when the token is its own (`sub` is its client id), or the person
 * whose token it is (a consent grant's token: `sub` is their local id). A certificate is a lasting
 * credential in that name — Clearance's mTLS takes it for the client it names — so nobody else's
 * name is accepted: not a delegated token's subject, not a partner's. Refused as `holder`.
 */
export function workloadHolder(claims: Asker): string {
  requireOwnToken(claims);
  if (claims.sub === claims.client_id) return claims.client_id;
  if (claims.grant_id !== undefined) return claims.sub;
  throw new PkiRefusal('holder', `a certificate is issued to the client that asks (${claims.client_id}) or to the person whose own token it is, not to ${claims.sub.slice(0, 80)}`);
}

/**
 * The token is the caller's own: no delegation chain (RFC 8693 §4.1 `act`: someone acts for the
 * subject, and would get a certificate in the subject's name) and no partner origin (`sub` is a
 * name the partner chose). For a device profile, too: the enrolling service names the device.
 */
export function requireOwnToken(claims: Asker): void {
  if (claims.act !== undefined) throw new PkiRefusal('holder', 'a certificate is not issued on a delegated token (act): ask with the client\'s own token');
  if (claims.origin_iss !== undefined) throw new PkiRefusal('holder', 'a certificate is not issued on a partner\'s token (origin_iss): its subject is the partner\'s, not a client of this CA');
}
