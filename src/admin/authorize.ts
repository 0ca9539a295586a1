import { createHash } from 'node:crypto';
import type { FastifyRequest, preHandlerAsyncHookHandler } from 'fastify';
import { epochSeconds } from '../clock.ts';
import type { Context } from '../context.ts';
import { OAuthError } from '../oauth-error.ts';
import { verifyAccessToken } from '../tokens/access-token.ts';
import type { AccessTokenClaims } from '../tokens/claims.ts';
import { RevocationList } from '../tokens/revocation.ts';

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
 * carrying `scope`. Errors follow RFC 6750 §3: 401 invalid_token, 403 insufficient_scope,
 * with a WWW-Authenticate challenge.
 */
export function requireAdmin(ctx: Context, scope: 'admin:read' | 'admin:write' | 'audit:read'): preHandlerAsyncHookHandler {
  const revoked = new RevocationList(ctx.storage.db);
  const audience = adminAudience(ctx.config.issuer);
  return async (request) => {
    const token = bearerToken(request);
    const verified = await verifyAccessToken(ctx.keys, ctx.config.issuer, token, epochSeconds(ctx.clock));
    if (!verified.ok) throw challenge('invalid_token', 'the access token is invalid or expired', verified.reason);
    const claims = verified.claims;
    if (claims.aud !== audience) throw challenge('invalid_token', 'the access token is not for the admin API');
    if (await revoked.isRevoked(claims.jti)) throw challenge('invalid_token', 'the access token was revoked');
    // RFC 9449 §7.1: a DPoP-bound token presented with the Bearer scheme is refused.
    if (claims.cnf?.jkt) throw challenge('invalid_token', 'a DPoP-bound token needs the DPoP scheme and a proof');
    // RFC 8705 §3: a certificate-bound token only with the certificate it is bound to.
    const bound = claims.cnf?.['x5t#S256'];
    if (bound && bound !== thumbprint(request)) {
      throw challenge('invalid_token', 'the access token is bound to another certificate');
    }
    if (!claims.scope?.split(' ').includes(scope)) {
      throw challenge('insufficient_scope', `the ${scope} scope is required`, undefined, 403, scope);
    }
    request.admin = claims;
  };
}

function bearerToken(request: FastifyRequest): string {
  // RFC 6750 §2.3 is not offered: tokens in URLs end up in logs (FAPI 2.0 SP §5.3.4).
  if (/[?&]access_token=/.test(request.url)) {
    throw new OAuthError('invalid_request', 'send the access token in the Authorization header, not the URL');
  }
  const header = request.headers.authorization;
  const match = header?.match(/^Bearer ([A-Za-z0-9\-._~+/]+=*)$/i);
  if (!match) throw challenge('invalid_token', 'a Bearer access token is required', undefined, 401, undefined, !header);
  return match[1]!;
}

function thumbprint(request: FastifyRequest): string | undefined {
  const raw = request.clientCertificate?.certificate.raw;
  return raw && createHash('sha256').update(raw).digest('base64url');
}

function challenge(
  error: 'invalid_token' | 'insufficient_scope',
  description: string,
  detail?: string,
  status = 401,
  scope?: string,
  bare = false,
): OAuthError {
  // RFC 6750 §3.1: a request with no credentials gets a challenge without an error code.
  const parts = bare
    ? ['Bearer realm="clearance"']
    : [`Bearer realm="clearance"`, `error="${error}"`, `error_description="${description}"`, ...(scope ? [`scope="${scope}"`] : [])];
  return new OAuthError(error, description, { status, detail, headers: { 'www-authenticate': parts.join(', ') } });
}
