import { epochSeconds, type Clock } from '../clock.ts';
import type { Context } from '../context.ts';
import { acrSatisfies } from '../identity/acr.ts';
import { findUser, type User } from '../identity/users.ts';
import type { AccessTokenClaims } from '../tokens/claims.ts';

/**
 * "A person acts here with their own token": the one rule behind every admin operation that a
 * person, not a client, must perform (a screening decision, a recovery opened by the help desk,
 * a role grant asked for, an erasure, an approval's decision, emergency access, an address-book
 * change, a policy set's activation, a partner's re-approval). One order for
 * all of them, so a token with two faults is refused under the same reason everywhere:
 *
 * 1. `client_token`: no person's grant stands behind the token (no `grant_id` or `sub`): a
 *    client acting on its own;
 * 2. `delegated_token`: the token carries `act` (RFC 8693 §4.1): a delegate acts for the person,
 *    and these operations are the person's own;
 * 3. `insufficient_authentication`: the sign-in behind the token is below the level asked;
 * 4. `stale_authentication`: the sign-in behind the token (`auth_time`) is older than the age asked
 *    — the console renews its tokens silently, so a token minted a minute ago may stand on a
 *    sign-in of hours ago; a token naming no sign-in time is no fresh sign-in. After the level,
 *    so a token both too weak and too old is asked for the level (which a new sign-in also makes
 *    fresh);
 * 5. the person, read now (the token's liveness check read them too, but a role may have been
 *    removed since): `not_active` when no longer active, `missing_role` without the role.
 *
 * The token's own facts come first: a token refused by them costs no read and tells nothing of
 * the person's roles. Each caller records its refusal under its own event and vocabulary; 3 and 4
 * are what a new sign-in cures, which the admin API answers with RFC 9470 step-up
 * (src/endpoints/admin/step-up.ts).
 */
export type CallerRefusal = OwnTokenRefusal | 'not_active' | 'missing_role';

/** What the token alone may be refused for (steps 1–4). */
export type OwnTokenRefusal = 'client_token' | 'delegated_token' | 'insufficient_authentication' | 'stale_authentication';

export interface PersonCallerRule {
  /** The acr the sign-in must satisfy (src/identity/acr.ts); none: any. */
  level?: string;
  /** How old the sign-in behind the token may be, in seconds (RFC 9470 `max_age`); none: any age. */
  maxAgeSeconds?: number;
  /** A role the person must hold; none: any active person. */
  role?: string;
}

/** An age the sign-in must be within, read against a clock. */
export interface Freshness {
  maxAgeSeconds: number;
  clock: Clock;
}

/** Steps 1–4: what the token alone says (with `freshness`, against its clock). */
export function ownTokenRefusal(claims: AccessTokenClaims, level?: string, freshness?: Freshness): OwnTokenRefusal | undefined {
  if (claims.grant_id === undefined || claims.sub === undefined) return 'client_token';
  if (claims.act !== undefined) return 'delegated_token';
  if (level !== undefined && !acrSatisfies(claims.acr, level)) return 'insufficient_authentication';
  if (freshness !== undefined && !signedInWithin(claims, freshness)) return 'stale_authentication';
  return undefined;
}

/**
 * Whether the person authenticated at most `maxAgeSeconds` ago (RFC 9470 §3 `max_age`, as OIDC
 * Core §3.1.2.1 reads it against `auth_time`): exactly that old still passes. No `auth_time`: no.
 */
function signedInWithin(claims: AccessTokenClaims, { maxAgeSeconds, clock }: Freshness): boolean {
  return claims.auth_time !== undefined && epochSeconds(clock) - claims.auth_time <= maxAgeSeconds;
}

/** Steps 1–5: the person acting, or why not. */
export async function personCaller(ctx: Context, claims: AccessTokenClaims, rule: PersonCallerRule): Promise<{ ok: true; user: User } | { ok: false; reason: CallerRefusal }> {
  const refusal = ownTokenRefusal(claims, rule.level, rule.maxAgeSeconds !== undefined ? { maxAgeSeconds: rule.maxAgeSeconds, clock: ctx.clock } : undefined);
  if (refusal !== undefined) return { ok: false, reason: refusal };
  const user = await findUser(ctx, claims.sub!);
  if (!user || user.status !== 'active') return { ok: false, reason: 'not_active' };
  if (rule.role !== undefined && !user.roles.includes(rule.role)) return { ok: false, reason: 'missing_role' };
  return { ok: true, user };
}
