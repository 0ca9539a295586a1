import type { FastifyReply, FastifyRequest } from 'fastify';
import { userinfoAudience } from '../../authorization/scopes.ts';
import type { Context } from '../../context.ts';
import { findUser } from '../../identity/users.ts';
import { subjectForClient } from '../../identity/pairwise.ts';
import { resourceRequest } from '../../http/oauth-request.ts';
import { authorizeProtectedRequest } from '../../tokens/protected-resource.ts';
import { challenge } from '../../tokens/resource-access.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';
import { sendJson } from '../../http/json.ts';

/**
 * The UserInfo endpoint (OIDC Core §5.3). Its rules, in order:
 * 1. GET or POST with the access token in the Authorization header, as Bearer (RFC 6750 §2.1) or
 *    DPoP with a proof (RFC 9449 §7); never in the query (RFC 6750 §2.3 is not offered: URLs end
 *    up in logs);
 * 2. the protected-resource check (src/tokens/protected-resource.ts): the token is ours,
 *    unexpired, presented with its binding (a certificate-bound token only with its certificate,
 *    RFC 8705 §3; a DPoP-bound one only with the DPoP scheme and a proof of its key, RFC 9449 §7.1),
 *    for the audience `<issuer>/userinfo` (one audience per token: a token for a business API is
 *    refused here, and a client gets a userinfo token by requesting `openid` alone, or
 *    `resource=<issuer>/userinfo` at the token endpoint with its code or refresh token), live (not
 *    revoked, its grant, mandate and person in force), with `openid` (OIDC Core §5.3.1; else 403
 *    insufficient_scope);
 * 3. it was issued for a person's authorization (a consent grant), not to a client for itself;
 * 4. the answer: `sub` (a pairwise client's pseudonym, OIDC Core §8.1) and the profile claims the people side holds (name, email,
 *    preferred_username), JSON, no-store. Errors carry a WWW-Authenticate challenge (RFC 6750 §3).
 */
export const userinfo: Endpoint = {
  register(app, ctx) {
    const path = `${issuerPath(ctx.config.issuer)}/userinfo`;
    const resource = { audience: userinfoAudience(ctx.config.issuer), scope: 'openid', name: 'the userinfo endpoint' };
    const handler = async (request: FastifyRequest, reply: FastifyReply) => {
      const access = await authorizeProtectedRequest(ctx, resourceRequest(request, ctx.config), resource);
      const { claims, scheme } = access;
      if (claims.grant_id === undefined) throw challenge(scheme, 'invalid_token', 'the access token is not backed by a person\'s grant');
      // OIDC Core §5.3.2: the sub here MUST be the ID token's — a pairwise client's pseudonym (§8.1).
      const client = await ctx.clients.get(claims.client_id);
      if (!client) throw challenge(scheme, 'invalid_token', 'the client the access token was issued to is no longer registered');
      return sendJson(reply, await userClaims(ctx, claims.sub, subjectForClient(ctx, client.metadata, claims.sub)), { headers: access.headers });
    };
    app.get(path, handler);
    app.post(path, handler);
  },
  metadata: (ctx) => ({ userinfo_endpoint: `${ctx.config.issuer}/userinfo` }),
};

/** OIDC Core §5.1 claims from the people side's user record (found by the local id); `sub` always, as the client is told it. */
async function userClaims(ctx: Context, localSub: string, sub: string): Promise<Record<string, unknown>> {
  const user = await findUser(ctx, localSub);
  if (!user) return { sub };
  return {
    sub,
    preferred_username: user.username,
    ...(user.name ? { name: user.name } : {}),
    ...(user.email ? { email: user.email } : {}),
    updated_at: Math.floor(user.updatedAt / 1000),
  };
}
