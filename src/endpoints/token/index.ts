import { assertionAlgs, endpointAuthMethods } from '../../clients/metadata.ts';
import type { FastifyReply } from 'fastify';
import { authenticate } from '../../clients/authentication/endpoint-authentication.ts';
import { grants, findGrant } from '../../grants/index.ts';
import { clientAuthInput, postOnly, rejectRepeated, requireForm } from '../../http/oauth-request.ts';
import { OAuthError } from '../../oauth-error.ts';
import type { TokenResponse } from '../../grants/grant.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';

/**
 * The token endpoint (RFC 6749 §3.2). Its rules, in order:
 * 1. the body is a form, and no parameter is repeated unless the grant allows it (§3.2);
 * 2. grant_type is present and supported (§5.2 unsupported_grant_type);
 * 3. the client authenticates with exactly one method (§2.3, §3.2.1), throttled on failures; a
 *    public client (client_id only) is accepted only by grants that allow it (code, refresh);
 * 4. the client is registered for that grant (§5.2 unauthorized_client);
 * 5. the grant decides; its `token.issued` event is durable before the response leaves (DESIGN §5);
 * 6. the response is JSON with no-store (§5.1).
 */
export const token: Endpoint = {
  register(app, ctx) {
    const path = `${issuerPath(ctx.config.issuer)}/token`;
    postOnly(app, path);
    app.post(path, async (request, reply) => {
      const params = requireForm(request);
      const grantType = params.all('grant_type');
      if (grantType.length !== 1 || !grantType[0]) throw new OAuthError('invalid_request', 'grant_type is required, once');
      const grant = findGrant(grantType[0]);
      rejectRepeated(params, grant?.repeatable);
      // RFC 6749 §3.2.1: public clients (client_id only) only for the grants that allow them.
      const client = await authenticate(ctx, { ...clientAuthInput(request, params), allowPublic: grant?.allowPublic === true });
      if (!grant) throw new OAuthError('unsupported_grant_type', `grant_type ${grantType[0]} is not supported`);
      if (!client.client.metadata.grant_types.includes(grant.grantType)) {
        throw new OAuthError('unauthorized_client', `the client is not registered for ${grant.grantType}`);
      }
      const result = await grant.handle({ params, client, requestId: request.id }, ctx);
      await ctx.audit.record({ ...result.event, requestId: request.id });
      return sendTokenResponse(reply, result.response);
    });
  },
  metadata: (ctx) => ({
    token_endpoint: `${ctx.config.issuer}/token`,
    grant_types_supported: grants.map((g) => g.grantType),
    // `none`: public clients, for the authorization_code and refresh_token grants only.
    token_endpoint_auth_methods_supported: [...endpointAuthMethods, 'none'],
    token_endpoint_auth_signing_alg_values_supported: assertionAlgs,
    tls_client_certificate_bound_access_tokens: true,
  }),
};

/** RFC 6749 §5.1: JSON, Cache-Control no-store, Pragma no-cache. */
function sendTokenResponse(reply: FastifyReply, response: TokenResponse): FastifyReply {
  return reply
    .headers({ 'cache-control': 'no-store', pragma: 'no-cache' })
    .type('application/json; charset=utf-8')
    .send(JSON.stringify(response));
}
