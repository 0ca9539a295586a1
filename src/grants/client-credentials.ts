import { isFapi2 } from '../clients/profile.ts';
import { epochSeconds } from '../clock.ts';
import { mintAccessToken, newJti } from '../tokens/access-token.ts';
import { selectTarget } from '../tokens/audience.ts';
import { requireSenderConstraint, senderBinding } from '../tokens/binding.ts';
import type { AccessTokenClaims } from '../tokens/claims.ts';
import type { Grant } from './grant.ts';

/**
 * RFC 6749 §4.4: a client obtains a token for itself, with its own credentials. The token is bound
 * to the request's DPoP key (RFC 9449 §5) or else its client certificate (RFC 8705 §3); a bearer
 * token is refused for a sender-constrained resource and under the FAPI 2.0 profile.
 */
export const clientCredentials: Grant = {
  grantType: 'client_credentials',
  parameters: ['scope', 'resource'],
  repeatable: ['resource'],

  async handle({ params, client: authenticated, dpop }, ctx) {
    const { client } = authenticated;
    const target = await selectTarget(params.all('resource'), params.get('scope'), client, ctx.resourceServers);
    const binding = senderBinding({ dpop, certificateThumbprint: authenticated.certificateThumbprint });
    // Sender-constrained resources and FAPI 2.0 clients only ever receive bound tokens (DESIGN §4).
    requireSenderConstraint(binding, { resource: target.resourceServer.require_sender_constraint, fapi: isFapi2(ctx.config, client) });
    const iat = epochSeconds(ctx.clock);
    const claims: AccessTokenClaims = {
      iss: ctx.config.issuer,
      sub: client.metadata.client_id, // RFC 9068 §2.2: the client itself when no resource owner is involved
      aud: target.resourceServer.identifier,
      exp: iat + target.resourceServer.access_token_ttl,
      iat,
      jti: newJti(),
      client_id: client.metadata.client_id,
      scope: target.scopes.join(' '),
      ...(binding.cnf ? { cnf: binding.cnf } : {}),
    };
    const accessToken = await mintAccessToken(ctx.keys, claims);
    return {
      response: {
        access_token: accessToken,
        token_type: binding.tokenType,
        expires_in: target.resourceServer.access_token_ttl,
        scope: claims.scope!,
      },
      event: {
        type: 'token.issued',
        actor: client.metadata.client_id,
        subject: claims.sub,
        client: claims.client_id,
        issuer: claims.iss,
        audience: claims.aud,
        scopes: target.scopes,
        details: { grant_type: 'client_credentials', jti: claims.jti, exp: claims.exp, bound: binding.kind },
      },
    };
  },
};
