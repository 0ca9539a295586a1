/**
 * Clearance as a WebAuthn Relying Party (WebAuthn L3 §5.1.1.3 "RP ID", §13.4.9 "origin
 * validation"): its RP ID is the issuer's host and the only origin it accepts is the issuer's,
 * exactly (scheme, host and port). A passkey made for Clearance is therefore usable only on
 * Clearance's own pages, which is what makes it phishing-resistant.
 */
export interface RelyingParty {
  /** The RP ID: the issuer's host name (no port). */
  id: string;
  /** The one accepted origin: the issuer's scheme://host[:port]. */
  origin: string;
  /** What authenticators show the person. */
  name: string;
}

export function relyingParty(issuer: string): RelyingParty {
  const url = new URL(issuer);
  return { id: url.hostname, origin: url.origin, name: 'Clearance' };
}
