/**
 * Whether an upstream sign-in is as fresh as it was asked (OIDC Core §3.1.2.1 `max_age` and
 * `prompt=login`): by the relying party, by a requirement's max age (a step-up policy's, the
 * stricter), or by Clearance itself for a step-up the upstream's level is to meet (`because`,
 * ./opening.ts and src/endpoints/interaction/upstream.ts) — what was asked is kept with the
 * sign-in (./upstream-logins.ts). All are passed on to the upstream (`max_age`, `prompt=login`; a
 * SAML IdP gets ForceAuthn), but the upstream's answer is not taken on trust: the session's auth_time is the
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

/**
 * Why Clearance asked the upstream for a renewed authentication beyond what the relying party
 * asked: `step_up`, a person signed in here below the level the sign-in asks (their upstream's
 * level is to lift them: only a new authentication may); `risk_step_up`, the risk engine asked a
 * step-up that the upstream's level is to meet (src/endpoints/interaction/upstream.ts).
 */
export type RenewalCause = 'step_up' | 'risk_step_up';

/**
 * What Clearance asked of the upstream when it sent the person there — the relying party's
 * freshness, a requirement's max age (the stricter), a renewal of its own — kept with the sign-in
 * (src/federation/upstream/upstream-logins.ts) so the answer is checked against what was asked.
 */
export interface UpstreamAsk extends FreshnessAsked {
  because?: RenewalCause;
}

/**
 * The strictest of several asks: the shortest max_age, prompt=login if any asks it, the first
 * cause of a renewal. Undefined when none asks anything.
 */
export function strictest(...asks: (UpstreamAsk | undefined)[]): UpstreamAsk | undefined {
  const ages = asks.flatMap((a) => (a?.maxAge !== undefined && Number.isInteger(a.maxAge) && a.maxAge >= 0 ? [a.maxAge] : []));
  const login = asks.some((a) => a?.login === true);
  const because = asks.find((a) => a?.because !== undefined)?.because;
  if (ages.length === 0 && !login) return undefined;
  return { ...(ages.length > 0 ? { maxAge: Math.min(...ages) } : {}), ...(login ? { login: true } : {}), ...(because !== undefined ? { because } : {}) };
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
  if (renewal && !renewedSince(identity, at.sentAt)) return { ok: false, reason: 'authentication_not_renewed', age, sentAge: at.now - at.sentAt };
  return { ok: true };
}

/**
 * Whether the upstream authenticated the person after Clearance sent them there (`sentAt`, epoch
 * seconds; less the clock skew): a new authentication, not its own earlier session — what
 * prompt=login asks, and what a step-up met through an upstream needs whether or not it was asked.
 * An answer that does not say when is not one.
 */
export function renewedSince(identity: { authTime?: number }, sentAt: number): boolean {
  const authTime = identity.authTime;
  return authTime !== undefined && Number.isFinite(authTime) && authTime >= sentAt - skewSeconds;
}

/** prompt=login, or max_age=0 ("equivalent to prompt=login", OIDC Core §3.1.2.1). */
export function asksRenewal(freshness: FreshnessAsked | undefined): boolean {
  return freshness?.login === true || freshness?.maxAge === 0;
}
