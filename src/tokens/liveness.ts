import { isGrantActive } from '../authorization/consent.ts';
import type { Context } from '../context.ts';
import { isMandateActive } from '../mandates/coverage.ts';
import type { AccessTokenClaims } from './claims.ts';
import { RevocationList } from './revocation.ts';

/**
 * Whether a verified access token of ours is still live: not revoked (RFC 7009), its consent grant
 * still active (a person's token dies with it), and the mandate version it names still in force
 * (revoked, superseded or expired → dead at once). Introspection and token exchange ask this.
 */
export async function isTokenLive(ctx: Pick<Context, 'storage' | 'clock' | 'audit'>, claims: AccessTokenClaims): Promise<boolean> {
  if (await new RevocationList(ctx.storage.db).isRevoked(claims.jti)) return false;
  if (claims.grant_id !== undefined && !(await isGrantActive(ctx.storage.db, claims.grant_id))) return false;
  if (claims.mandate !== undefined && !(await isMandateActive(ctx, claims.mandate, new Date(ctx.clock.now())))) return false;
  return true;
}
