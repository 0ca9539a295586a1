/**
 * Whether an upstream sign-in is as recent as the relying party asked (OIDC Core §3.1.2.1
 * `max_age`). The request's max_age is passed on to the upstream, but the upstream's answer is not
 * taken on trust: the session's auth_time is the upstream's (§2: when the END-USER authenticated),
 * so an upstream that let its own older session stand in would pass an old authentication off as
 * a recent one, and the sign-in that just happened here would not be asked again (a login within
 * the interaction skips the request's max_age: src/authorization/steps.ts). So it is checked here,
 * on what the upstream signed:
 * - no max_age asked: nothing to check;
 * - max_age asked and no auth_time given (§3.1.2.1: the ID token MUST then include it; a SAML
 *   assertion without a usable AuthnInstant): refused — nothing says the authentication is recent;
 * - auth_time more than max_age (plus the ID token's clock skew, 30 s) before now: refused.
 */

/** Clock skew tolerated between the upstream and Clearance, as for the ID token's own times (oidc.ts). */
const skewSeconds = 30;

export type FreshnessRefusal = 'auth_time_missing' | 'authentication_too_old';

export function upstreamFreshness(
  identity: { authTime?: number },
  freshness: { maxAge?: number } | undefined,
  nowSeconds: number,
): { ok: true } | { ok: false; reason: FreshnessRefusal; age?: number } {
  const maxAge = freshness?.maxAge;
  if (maxAge === undefined) return { ok: true };
  if (identity.authTime === undefined || !Number.isFinite(identity.authTime)) return { ok: false, reason: 'auth_time_missing' };
  const age = nowSeconds - identity.authTime;
  if (age > maxAge + skewSeconds) return { ok: false, reason: 'authentication_too_old', age };
  return { ok: true };
}
