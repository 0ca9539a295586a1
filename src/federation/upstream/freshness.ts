/**
 * Whether an upstream sign-in is as fresh as the relying party asked (OIDC Core §3.1.2.1 `max_age`
 * and `prompt=login`). Both are passed on to the upstream (`max_age`, `prompt=login`; a SAML IdP
 * gets ForceAuthn), but the upstream's answer is not taken on trust: the session's auth_time is the
 * upstream's (§2: when the END-USER authenticated), so an upstream that let its own older session
 * stand in would pass an old authentication off as a fresh one, and the sign-in that just happened
 * here would not be asked again (a login within the interaction skips the request's max_age and
 * prompt=login: src/authorization/steps.ts). So it is checked here, on what the upstream signed:
 * - neither asked: nothing to check;
 * - either asked and no auth_time given (§3.1.2.1: the ID token MUST include it when max_age was
 *   sent, and without it nothing says the person authenticated again; a SAML assertion without a
 *   usable AuthnInstant): refused — auth_time_missing;
 * - max_age asked and auth_time more than max_age (plus the ID token's clock skew, 30 s) before
 *   now: refused — authentication_too_old;
 * - prompt=login asked (or max_age=0, which §3.1.2.1 makes its equivalent) and auth_time before
 *   the moment Clearance sent the person to the upstream (less the same skew): the upstream did not
 *   authenticate them again for this sign-in — authentication_not_renewed.
 */

/** Clock skew tolerated between the upstream and Clearance, as for the ID token's own times (oidc.ts). */
const skewSeconds = 30;

export type FreshnessRefusal = 'auth_time_missing' | 'authentication_too_old' | 'authentication_not_renewed';

/** What the relying party asked (src/authorization/contract.ts Interaction.freshness). */
export interface FreshnessAsked {
  maxAge?: number;
  login?: boolean;
}

export type FreshnessVerdict =
  | { ok: true }
  /** `age`: seconds from the upstream's auth_time to now; `sentAge`: from sending the person there to now. */
  | { ok: false; reason: FreshnessRefusal; age?: number; sentAge?: number };

/**
 * `at.now`: now; `at.sentAt`: when Clearance sent the person to the upstream (the sign-in's record,
 * src/federation/upstream/upstream-logins.ts); both epoch seconds.
 */
export function upstreamFreshness(identity: { authTime?: number }, freshness: FreshnessAsked | undefined, at: { now: number; sentAt: number }): FreshnessVerdict {
  const maxAge = freshness?.maxAge;
  const renewal = asksRenewal(freshness);
  if (maxAge === undefined && !renewal) return { ok: true };
  const authTime = identity.authTime;
  if (authTime === undefined || !Number.isFinite(authTime)) return { ok: false, reason: 'auth_time_missing' };
  const age = at.now - authTime;
  if (maxAge !== undefined && age > maxAge + skewSeconds) return { ok: false, reason: 'authentication_too_old', age };
  // OIDC Core §3.1.2.1 prompt=login: the person is to be authenticated again, so by the upstream
  // after this sign-in sent them there — not by a session of theirs it already had.
  if (renewal && authTime < at.sentAt - skewSeconds) return { ok: false, reason: 'authentication_not_renewed', age, sentAge: at.now - at.sentAt };
  return { ok: true };
}

/** prompt=login, or max_age=0 ("equivalent to prompt=login", OIDC Core §3.1.2.1). */
export function asksRenewal(freshness: FreshnessAsked | undefined): boolean {
  return freshness?.login === true || freshness?.maxAge === 0;
}
