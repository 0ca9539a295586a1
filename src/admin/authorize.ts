import type { preHandlerAsyncHookHandler } from 'fastify';
import type { Context } from '../context.ts';
import { resourceRequest } from '../http/oauth-request.ts';
import type { AccessTokenClaims } from '../tokens/claims.ts';
import { authenticateResourceRequest, challenge } from '../tokens/resource-access.ts';
import { RevocationList } from '../tokens/revocation.ts';
import { isGrantActive } from '../authorization/consent.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /** The verified admin token of this request (set by requireAdmin). */
    admin?: AccessTokenClaims;
  }
}

/** The audience of Clearance's own admin API. */
export function adminAudience(issuer: string): string {
  return `${issuer}/admin`;
}

/**
 * A pre-handler that admits a request only with a Clearance access token for `<issuer>/admin`
 * carrying `scope`: with the Bearer scheme (RFC 6750), or the DPoP scheme and a proof of the key
 * the token is bound to (RFC 9449 §7); a certificate-bound token only with its certificate (RFC
 * 8705 §3). Errors follow RFC 6750 §3 and RFC 9449 §7.1: 401 invalid_token / invalid_dpop_proof,
 * 403 insufficient_scope, with a WWW-Authenticate challenge in the scheme used.
 */
export function requireAdmin(ctx: Context, scope: 'admin:read' | 'admin:write' | 'audit:read'): preHandlerAsyncHookHandler {
  const revoked = new RevocationList(ctx.storage.db);
  const audience = adminAudience(ctx.config.issuer);
  return async (request, reply) => {
    const access = await authenticateResourceRequest(ctx, resourceRequest(request, ctx.config));
    const { claims, scheme } = access;
    if (claims.aud !== audience) throw challenge(scheme, 'invalid_token', 'the access token is not for the admin API');
    if (await revoked.isRevoked(claims.jti)) throw challenge(scheme, 'invalid_token', 'the access token was revoked');
    // A token issued for a person dies with their consent grant, here as at introspection.
    if (claims.grant_id !== undefined && !(await isGrantActive(ctx.storage.db, claims.grant_id))) {
      throw challenge(scheme, 'invalid_token', 'the access token\'s grant was revoked');
    }
    if (!claims.scope?.split(' ').includes(scope)) {
      throw challenge(scheme, 'insufficient_scope', `the ${scope} scope is required`, { scope });
    }
    reply.headers(access.headers);
    request.admin = claims;
  };
}
