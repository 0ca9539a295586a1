import { createHash } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { isGrantActive } from '../../authorization/consent.ts';
import { userinfoAudience } from '../../authorization/scopes.ts';
import { epochSeconds } from '../../clock.ts';
import type { Context } from '../../context.ts';
import { findUser } from '../../identity/users.ts';
import { OAuthError } from '../../oauth-error.ts';
import { verifyAccessToken } from '../../tokens/access-token.ts';
import { RevocationList } from '../../tokens/revocation.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';

/**
 * The UserInfo endpoint (OIDC Core §5.3). Its rules, in order:
 * 1. GET or POST with the access token in the Authorization header as Bearer (RFC 6750 §2.1);
 *    never in the query (RFC 6750 §2.3 is not offered: URLs end up in logs);
 * 2. the token is ours, unexpired, not revoked, of a grant still active, and for the audience
 *    `<issuer>/userinfo` (one audience per token: a token for a business API is refused here, and a
 *    client gets a userinfo token by requesting `openid` alone, or `resource=<issuer>/userinfo` at the
 *    token endpoint with its code or refresh token);
 * 3. its scope contains `openid` (OIDC Core §5.3.1), else 403 insufficient_scope;
 * 4. a certificate-bound token only with its certificate (RFC 8705 §3); a DPoP-bound one is refused
 *    with the Bearer scheme (RFC 9449 §7.1);
 * 5. the answer: `sub` and the profile claims the people side holds (name, email,
 *    preferred_username), JSON, no-store. Errors carry a WWW-Authenticate challenge (RFC 6750 §3).
 */
export const userinfo: Endpoint = {
  register(app, ctx) {
    const path = `${issuerPath(ctx.config.issuer)}/userinfo`;
    const revoked = new RevocationList(ctx.storage.db);
    const handler = async (request: FastifyRequest, reply: FastifyReply) => {
      const token = bearerToken(request);
      const verified = await verifyAccessToken(ctx.keys, ctx.config.issuer, token, epochSeconds(ctx.clock));
      if (!verified.ok) throw challenge('invalid_token', 'the access token is invalid or expired', verified.reason);
      const claims = verified.claims;
      if (claims.aud !== userinfoAudience(ctx.config.issuer)) throw challenge('invalid_token', 'the access token is not for the userinfo endpoint');
      if (await revoked.isRevoked(claims.jti)) throw challenge('invalid_token', 'the access token was revoked');
      if (claims.grant_id === undefined || !(await isGrantActive(ctx.storage.db, claims.grant_id))) {
        throw challenge('invalid_token', 'the access token is not backed by an active grant');
      }
      if (claims.cnf?.jkt) throw challenge('invalid_token', 'a DPoP-bound token needs the DPoP scheme and a proof');
      const bound = claims.cnf?.['x5t#S256'];
      if (bound && bound !== thumbprint(request)) throw challenge('invalid_token', 'the access token is bound to another certificate');
      if (!claims.scope?.split(' ').includes('openid')) throw challenge('insufficient_scope', 'the openid scope is required', undefined, 403);
      return reply
        .headers({ 'cache-control': 'no-store', pragma: 'no-cache' })
        .type('application/json; charset=utf-8')
        .send(JSON.stringify(await userClaims(ctx, claims.sub)));
    };
    app.get(path, handler);
    app.post(path, handler);
  },
  metadata: (ctx) => ({ userinfo_endpoint: `${ctx.config.issuer}/userinfo` }),
};

/** OIDC Core §5.1 claims from the people side's user record; `sub` always. */
async function userClaims(ctx: Context, sub: string): Promise<Record<string, unknown>> {
  const user = await findUser(ctx, sub);
  if (!user) return { sub };
  return {
    sub,
    preferred_username: user.username,
    ...(user.name ? { name: user.name } : {}),
    ...(user.email ? { email: user.email } : {}),
    updated_at: Math.floor(user.updatedAt / 1000),
  };
}

function bearerToken(request: FastifyRequest): string {
  if (/[?&]access_token=/.test(request.url)) {
    throw new OAuthError('invalid_request', 'send the access token in the Authorization header, not the URL');
  }
  const header = request.headers.authorization;
  const match = header?.match(/^Bearer ([A-Za-z0-9\-._~+/]+=*)$/i);
  if (!match) throw challenge('invalid_token', 'a Bearer access token is required', undefined, 401, !header);
  return match[1]!;
}

function thumbprint(request: FastifyRequest): string | undefined {
  const raw = request.clientCertificate?.certificate.raw;
  return raw && createHash('sha256').update(raw).digest('base64url');
}

function challenge(error: 'invalid_token' | 'insufficient_scope', description: string, detail?: string, status = 401, bare = false): OAuthError {
  // RFC 6750 §3.1: a request with no credentials gets a challenge without an error code.
  const parts = bare
    ? ['Bearer realm="clearance"']
    : ['Bearer realm="clearance"', `error="${error}"`, `error_description="${description}"`, ...(error === 'insufficient_scope' ? ['scope="openid"'] : [])];
  return new OAuthError(error, description, { status, ...(detail !== undefined ? { detail } : {}), headers: { 'www-authenticate': parts.join(', ') } });
}
