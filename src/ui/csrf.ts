import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { cookieValues, serializeCookie } from '../identity/cookies.ts';
import { cookieName, cookieScope } from '../identity/sessions.ts';

/**
 * CSRF protection for Clearance's forms (login, consent, account): a signed double-submit token.
 * The browser holds a random 256-bit secret in an HttpOnly cookie; each form carries
 * HMAC-SHA256(secret, purpose + binding). A cross-site page can make the browser send the
 * cookie but can neither read it nor compute the token, so a forged POST is refused; and a token
 * copied from the attacker's own browser is for the attacker's secret, not the victim's. The
 * binding is the interaction id for login, second-factor and consent forms, and the session id (the stored
 * digest, never the cookie value) for the account page's forms and the sign-out confirmation, so a token is worthless for
 * another interaction, another form, or after the person signs in again.
 *
 * On https the cookie is `__Host-clearance_csrf` (RFC 6265bis §4.1.3.2: Secure, Path=/, no
 * Domain), so a sibling subdomain cannot plant a secret it knows. On a development http issuer
 * the prefix is not allowed and the cookie is `clearance_csrf`.
 */

/**
 * `recovery`: the enrolment page of a recovery link (bound to the recovery's request id, src/endpoints/recovery);
 * `logout`: the sign-out confirmation (bound to the session id, src/endpoints/logout).
 */
export type CsrfPurpose = 'login' | 'second_factor' | 'consent' | 'account' | 'recovery' | 'logout';

/** The form field that carries the token. */
export const csrfField = 'csrf_token';

const secretPattern = /^[A-Za-z0-9_-]{43}$/;

/** Path=/ on https (so the `__Host-` prefix applies even to an issuer at https://host/idp); the issuer's path on http. */
function csrfScope(issuer: string): { path: string; secure: boolean } {
  const scope = cookieScope(issuer);
  return { path: scope.secure ? '/' : scope.path, secure: scope.secure };
}

export function csrfCookieName(issuer: string): string {
  return cookieName('clearance_csrf', csrfScope(issuer));
}

export interface CsrfBinding {
  secret: string;
  /** Set when the browser had no secret yet: send it with the page. */
  setCookie?: string;
}

/** The browser's CSRF secret, or a new one with the Set-Cookie that gives it to the browser. */
export function csrfBinding(issuer: string, cookieHeader: string | undefined): CsrfBinding {
  const existing = cookieValues(cookieHeader, csrfCookieName(issuer)).find((v) => secretPattern.test(v));
  if (existing) return { secret: existing };
  const secret = randomBytes(32).toString('base64url');
  const scope = csrfScope(issuer);
  const setCookie = serializeCookie(cookieName('clearance_csrf', scope), secret, { ...scope, sameSite: 'Lax' });
  return { secret, setCookie };
}

/** The token a form for this binding (interaction id, or session id for account forms) and purpose carries. */
export function csrfToken(secret: string, binding: string, purpose: CsrfPurpose): string {
  return createHmac('sha256', secret).update(`${purpose}\n${binding}`).digest('base64url');
}

/**
 * Whether a submitted token matches one of the browser's CSRF secrets (at most 4 considered),
 * compared in constant time. A missing cookie or token never matches.
 */
export function csrfTokenValid(issuer: string, cookieHeader: string | undefined, binding: string, purpose: CsrfPurpose, presented: string | undefined): boolean {
  if (!presented || presented.length > 128) return false;
  const given = Buffer.from(presented, 'utf8');
  let valid = false;
  for (const secret of cookieValues(cookieHeader, csrfCookieName(issuer)).filter((v) => secretPattern.test(v)).slice(0, 4)) {
    const expected = Buffer.from(csrfToken(secret, binding, purpose), 'utf8');
    if (expected.length === given.length && timingSafeEqual(expected, given)) valid = true;
  }
  return valid;
}
