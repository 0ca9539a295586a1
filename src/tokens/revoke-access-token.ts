import type { Context } from '../context.ts';
import { readAccessToken } from './reference-tokens.ts';
import { RevocationList } from './revocation.ts';

/** What revoking a client's access token did: revoked it, or why not. */
export type AccessTokenRevocation = 'revoked' | 'another-client' | 'not-an-access-token';

/**
 * Revokes an access token for the client it was issued to (RFC 7009 §2.1): a valid access token
 * of ours — a JWT, or a reference token's handle (src/tokens/reference-tokens.ts) — whose
 * `client_id` is `clientId` is recorded as revoked by its jti until it expires, so introspection
 * and every protected resource of ours report it inactive from then on (src/tokens/liveness.ts),
 * and the revocation is on the record (`token.revoked`, with the jti, never the token). Another
 * client's token is left alone. The revocation endpoint's access-token step, and the console's
 * sign-out, which revokes the console's own token in its own request (src/endpoints/console).
 */
export async function revokeClientAccessToken(ctx: Context, clientId: string, token: string, requestId: string): Promise<AccessTokenRevocation> {
  const verified = await readAccessToken(ctx, token);
  if (!verified.ok) return 'not-an-access-token';
  const claims = verified.claims;
  if (claims.client_id !== clientId) return 'another-client';
  await new RevocationList(ctx.storage.db).revoke(claims.jti, claims.exp * 1000, ctx.clock.now(), 'revoked by client');
  await ctx.audit.record({
    type: 'token.revoked',
    requestId,
    actor: clientId,
    subject: claims.sub,
    client: claims.client_id,
    audience: claims.aud,
    details: { jti: claims.jti, reason: 'revoked by client' },
  });
  return 'revoked';
}
