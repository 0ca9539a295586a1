import { isActivationInForce } from '../approvals/break-glass/activations.ts';
import { isGrantActive } from '../authorization/consent.ts';
import type { Context } from '../context.ts';
import { isPersonTokenLive } from '../identity/lifecycle.ts';
import { isMandateActive } from '../mandates/coverage.ts';
import type { AccessTokenClaims } from './claims.ts';
import { RevocationList } from './revocation.ts';

/**
 * Whether a verified access token of ours is still live: not revoked (RFC 7009), its consent grant
 * still active, its person still allowed to hold tokens and the token issued after the person's
 * cut-off (src/identity/lifecycle.ts: a lock or disable by an administrator, deletion, a password
 * reset or "sign out everywhere" end a person's tokens at once, RFC 9700 §4.14.2), and the mandate
 * version it names still in force (revoked, superseded or expired → dead at once), and a
 * break-glass token's activation still in force (ended or past its end → dead at once, whatever the
 * token's own `exp`; a `break_glass` token naming no activation is dead). Introspection,
 * token exchange and every protected resource of ours (src/tokens/protected-resource.ts) ask this.
 */
export async function isTokenLive(ctx: Pick<Context, 'storage' | 'clock' | 'audit'>, claims: AccessTokenClaims): Promise<boolean> {
  if (await new RevocationList(ctx.storage.db).isRevoked(claims.jti)) return false;
  if (claims.grant_id !== undefined && !(await isGrantActive(ctx.storage.db, claims.grant_id))) return false;
  // A person's token is one issued under their consent grant (`grant_id`; exchanged tokens keep it):
  // its `sub` is the person's id. One read by primary key.
  if (claims.grant_id !== undefined && !(await isPersonTokenLive(ctx.storage.db, claims.sub, claims.iat * 1000))) return false;
  // A partner subject decided as the local person its identity is linked to (`origin_person`,
  // src/federation/subject.ts): the same rule, for that person — a lock, a disable, a back-channel
  // logout or "sign out everywhere" ends these tokens too.
  if (claims.origin_person !== undefined && !(await isPersonTokenLive(ctx.storage.db, claims.origin_person, claims.iat * 1000))) return false;
  if (claims.mandate !== undefined && !(await isMandateActive(ctx, claims.mandate, new Date(ctx.clock.now())))) return false;
  if (claims.break_glass !== undefined || claims.break_glass_activation !== undefined) {
    if (typeof claims.break_glass_activation !== 'string' || !(await isActivationInForce(ctx.storage.db, claims.break_glass_activation, ctx.clock.now()))) return false;
  }
  return true;
}
