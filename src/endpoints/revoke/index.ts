import type { AuditEvent } from '../../audit/events.ts';
import { endpointAuthMethods } from '../../clients/metadata.ts';
import { authenticate } from '../../clients/authentication/endpoint-authentication.ts';
import { clientAuthInput, postOnly, rejectRepeated, requireForm } from '../../http/oauth-request.ts';
import { OAuthError } from '../../oauth-error.ts';
import { findRefreshToken, revokeFamily } from '../../tokens/refresh-tokens.ts';
import { revokeClientAccessToken } from '../../tokens/revoke-access-token.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';

/**
 * Token revocation (RFC 7009). Its rules, in order:
 * 1. the body is a form, no parameter repeated (§2.1);
 * 2. the caller authenticates as a client (§2.1);
 * 3. `token` is present (§2.1; invalid_request), and a `token_type_hint`, when sent, is
 *    access_token or refresh_token (§2.2.1 unsupported_token_type);
 * 4. a valid access token issued to the caller — a JWT, or a reference token's handle
 *    (src/tokens/reference-tokens.ts) — is recorded as revoked by its jti until it expires, and
 *    introspection reports it inactive from then on (the one liveness rule, src/tokens/liveness.ts;
 *    one step, src/tokens/revoke-access-token.ts, that the console's sign-out takes too); a refresh token issued to the caller is
 *    revoked with its whole rotation family and every access token issued with that family (§2.1:
 *    its `refresh_family`, src/tokens/refresh-tokens.ts `revokeFamily`) — not the grant's other
 *    families (the client's other devices);
 * 5. the answer is 200 with an empty body whether or not anything was revoked (§2.2): an invalid
 *    token, or another client's, learns the caller nothing.
 */
export const revocation: Endpoint = {
  register(app, ctx) {
    const path = `${issuerPath(ctx.config.issuer)}/revoke`;
    postOnly(app, path);
    app.post(path, async (request, reply) => {
      const params = requireForm(request);
      rejectRepeated(params);
      const caller = await authenticate(ctx, clientAuthInput(request, params));
      const callerId = caller.client.metadata.client_id;
      const token = params.get('token');
      if (!token) throw new OAuthError('invalid_request', 'token is required');
      const hint = params.get('token_type_hint');
      // RFC 7009 §2.2.1: access and refresh tokens are revocable; say so for an explicit other hint.
      if (hint !== undefined && hint !== 'access_token' && hint !== 'refresh_token') {
        throw new OAuthError('unsupported_token_type', `token_type_hint ${hint} is not supported`);
      }
      const accessToken = await revokeClientAccessToken(ctx, callerId, token, request.id);
      if (accessToken === 'not-an-access-token') {
        // RFC 7009 §2: refresh tokens MUST be revocable; revoking one ends its rotation family, and
        // §2.1 (SHOULD) the access tokens issued with it: the family, its revocation and the event
        // in one transaction.
        const refresh = await findRefreshToken(ctx, token);
        if (refresh && refresh.clientId === callerId && refresh.state !== 'revoked') {
          await ctx.audit.recordWith(async (trx) => {
            await revokeFamily(trx, refresh, ctx.clock.now(), 'refresh token revoked by client');
            const event: AuditEvent = {
              type: 'token.revoked',
              requestId: request.id,
              actor: callerId,
              subject: refresh.userId,
              client: callerId,
              details: { refresh_id: refresh.id, family_id: refresh.familyId, grant_id: refresh.grantId, reason: 'revoked by client' },
            };
            return { value: undefined, events: [event] };
          });
        }
      }
      return reply.headers({ 'cache-control': 'no-store', pragma: 'no-cache' }).code(200).send();
    });
  },
  metadata: (ctx) => ({
    revocation_endpoint: `${ctx.config.issuer}/revoke`,
    revocation_endpoint_auth_methods_supported: endpointAuthMethods,
  }),
};
