import { signingAlgs } from '../../config.ts';
import { endpointAuthMethods } from '../../clients/metadata.ts';
import { authenticate } from '../../clients/authentication/endpoint-authentication.ts';
import { clientAuthInput, postOnly, rejectRepeated, requireForm } from '../../http/oauth-request.ts';
import { OAuthError } from '../../oauth-error.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';
import { introspect } from './introspect.ts';
import { introspectionJwtType, signIntrospectionResponse } from './jwt-response.ts';
import { sendJson } from '../../http/json.ts';
import { isIP } from 'node:net';
import { notePresentation } from '../../risk/signals/concurrent-networks.ts';

/**
 * Token introspection (RFC 7662). Its rules, in order:
 * 1. the body is a form, no parameter repeated (§2.1);
 * 2. the caller authenticates as a client (§2.1: the endpoint MUST require authorization);
 * 3. `token` is present (§2.1; invalid_request);
 * 4. the answer is `active: false` unless the token is ours, valid, not revoked (nor its consent
 *    grant, nor the mandate version it names: revoked, superseded or expired), and the caller may
 *    see it (it was issued to the caller, or the caller is an introspector of its audience — and
 *    then every resource server naming the caller is in the token's region: src/federation/regions.ts);
 * 5. JSON, or a signed JWT when the caller asks for application/token-introspection+jwt (RFC 9701).
 * A resource server may say where the token it introspects was presented from: `client_address`,
 * an IP address (RFC 7662 §2.1 lets the endpoint accept further parameters as context; the RFC's
 * example is this one). For an active token it is noted for the risk engine's
 * `concurrent_networks` (src/risk/signals/concurrent-networks.ts); it changes nothing in the answer.
 */
export const introspection: Endpoint = {
  register(app, ctx) {
    const path = `${issuerPath(ctx.config.issuer)}/introspect`;
    postOnly(app, path);
    app.post(path, async (request, reply) => {
      const params = requireForm(request);
      rejectRepeated(params);
      const caller = await authenticate(ctx, clientAuthInput(request, params));
      const token = params.get('token');
      if (!token) throw new OAuthError('invalid_request', 'token is required');
      const presentedFrom = params.get('client_address');
      if (presentedFrom !== undefined && isIP(presentedFrom) === 0) throw new OAuthError('invalid_request', 'client_address must be an IP address');
      const answer = await introspect(ctx, caller.client.metadata.client_id, token, request.id);
      if (presentedFrom !== undefined && answer.active && typeof answer.jti === 'string') notePresentation(ctx, answer.jti, presentedFrom);
      if (wantsJwt(request.headers.accept)) {
        const jwt = await signIntrospectionResponse(ctx, caller.client.metadata.client_id, answer);
        return reply.headers({ 'cache-control': 'no-store', pragma: 'no-cache' }).type(introspectionJwtType).send(jwt);
      }
      return sendJson(reply, answer);
    });
  },
  metadata: (ctx) => ({
    introspection_endpoint: `${ctx.config.issuer}/introspect`,
    introspection_endpoint_auth_methods_supported: endpointAuthMethods,
    introspection_signing_alg_values_supported: [...signingAlgs],
  }),
};

function wantsJwt(accept: string | undefined): boolean {
  return accept?.split(',').some((part) => part.trim().split(';')[0]!.trim().toLowerCase() === introspectionJwtType) ?? false;
}
