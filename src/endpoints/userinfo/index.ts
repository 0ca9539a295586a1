import type { FastifyReply, FastifyRequest } from 'fastify';
import { isGrantActive } from '../../authorization/consent.ts';
import { userinfoAudience } from '../../authorization/scopes.ts';
import type { Context } from '../../context.ts';
import { findUser } from '../../identity/users.ts';
import { resourceRequest } from '../../http/oauth-request.ts';
import { authenticateResourceRequest, challenge } from '../../tokens/resource-access.ts';
import { RevocationList } from '../../tokens/revocation.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';

/**
 * The UserInfo endpoint (OIDC Core §5.3). Its rules, in order:
 * 1. GET or POST with the access token in the Authorization header, as Bearer (RFC 6750 §2.1) or
 *    DPoP with a proof (RFC 9449 §7); never in the query (RFC 6750 §2.3 is not offered: URLs end
 *    up in logs);
 * 2. the token is ours, unexpired, not revoked, of a grant still active, and for the audience
 *    `<issuer>/userinfo` (one audience per token: a token for a business API is refused here, and a
 *    client gets a userinfo token by requesting `openid` alone, or `resource=<issuer>/userinfo` at the
 *    token endpoint with its code or refresh token);
 * 3. its scope contains `openid` (OIDC Core §5.3.1), else 403 insufficient_scope;
 * 4. a certificate-bound token only with its certificate (RFC 8705 §3); a DPoP-bound one only with
 *    the DPoP scheme and a proof of its key, never as Bearer (RFC 9449 §7.1)
 *    (src/tokens/resource-access.ts);
 * 5. the answer: `sub` and the profile claims the people side holds (name, email,
 *    preferred_username), JSON, no-store. Errors carry a WWW-Authenticate challenge (RFC 6750 §3).
 */
export const userinfo: Endpoint = {
  register(app, ctx) {
    const path = `${issuerPath(ctx.config.issuer)}/userinfo`;
    const revoked = new RevocationList(ctx.storage.db);
    const handler = async (request: FastifyRequest, reply: FastifyReply) => {
      const access = await authenticateResourceRequest(ctx, resourceRequest(request, ctx.config));
      const { claims, scheme } = access;
      if (claims.aud !== userinfoAudience(ctx.config.issuer)) throw challenge(scheme, 'invalid_token', 'the access token is not for the userinfo endpoint');
      if (await revoked.isRevoked(claims.jti)) throw challenge(scheme, 'invalid_token', 'the access token was revoked');
      if (claims.grant_id === undefined || !(await isGrantActive(ctx.storage.db, claims.grant_id))) {
        throw challenge(scheme, 'invalid_token', 'the access token is not backed by an active grant');
      }
      if (!claims.scope?.split(' ').includes('openid')) throw challenge(scheme, 'insufficient_scope', 'the openid scope is required', { scope: 'openid' });
      return reply
        .headers({ ...access.headers, 'cache-control': 'no-store', pragma: 'no-cache' })
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
