import type { Context } from '../context.ts';
import { acrSatisfies } from '../identity/acr.ts';
import { findUser, type User } from '../identity/users.ts';
import type { AccessTokenClaims } from '../tokens/claims.ts';

/**
 * "A person acts here with their own token": the one rule behind every admin operation that a
 * person, not a client, must perform (a screening decision, a recovery opened by the help desk,
 * a role grant asked for, an erasure, an approval's decision, emergency access). One order for
 * all of them, so a token with two faults is refused under the same reason everywhere:
 *
 * 1. `client_token`: no person's grant stands behind the token (no `grant_id` or `sub`): a
 *    client acting on its own;
 * 2. `delegated_token`: the token carries `act` (RFC 8693 §4.1): a delegate acts for the person,
 *    and these operations are the person's own;
 * 3. `insufficient_authentication`: the sign-in behind the token is below the level asked;
 * 4. the person, read now (the token's liveness check read them too, but a role may have been
 *    removed since): `not_active` when no longer active, `missing_role` without the role.
 *
 * The token's own facts come first: a token refused by them costs no read and tells nothing of
 * the person's roles. Each caller records its refusal under its own event and vocabulary.
 */
export type CallerRefusal = 'client_token' | 'delegated_token' | 'insufficient_authentication' | 'not_active' | 'missing_role';

export interface PersonCallerRule {
  /** The acr the sign-in must satisfy (src/identity/acr.ts); none: any. */
  level?: string;
  /** A role the person must hold; none: any active person. */
  role?: string;
}

/** Steps 1–3: what the token alone says. */
export function ownTokenRefusal(claims: AccessTokenClaims, level?: string): 'client_token' | 'delegated_token' | 'insufficient_authentication' | undefined {
  if (claims.grant_id === undefined || claims.sub === undefined) return 'client_token';
  if (claims.act !== undefined) return 'delegated_token';
  if (level !== undefined && !acrSatisfies(claims.acr, level)) return 'insufficient_authentication';
  return undefined;
}

/** Steps 1–4: the person acting, or why not. */
export async function personCaller(ctx: Context, claims: AccessTokenClaims, rule: PersonCallerRule): Promise<{ ok: true; user: User } | { ok: false; reason: CallerRefusal }> {
  const refusal = ownTokenRefusal(claims, rule.level);
  if (refusal !== undefined) return { ok: false, reason: refusal };
  const user = await findUser(ctx, claims.sub!);
  if (!user || user.status !== 'active') return { ok: false, reason: 'not_active' };
  if (rule.role !== undefined && !user.roles.includes(rule.role)) return { ok: false, reason: 'missing_role' };
  return { ok: true, user };
}
