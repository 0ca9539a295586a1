/**
 * An upstream's session id as Clearance keeps it (`sessions.upstream_sid`) and matches a logout
 * against it: an OIDC ID token's or logout token's `sid` (Back-Channel Logout 1.0 §2.4), a SAML
 * SessionIndex (SAML 2.0 Core §3.7). Cut to 255 characters in every one of those places, so a
 * longer id still matches what its session kept; an empty one is none (a logout without it names
 * every session of the person).
 */
export function upstreamSessionId(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value.slice(0, maxLength) : undefined;
}

const maxLength = 255;
