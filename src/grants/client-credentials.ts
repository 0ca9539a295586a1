import { OAuthError } from '../oauth-error.ts';
import { epochSeconds } from '../clock.ts';
import { mintAccessToken, newJti } from '../tokens/access-token.ts';
import { selectTarget } from '../tokens/audience.ts';
import type { AccessTokenClaims } from '../tokens/claims.ts';
import type { Grant } from './grant.ts';

/** RFC 6749 §4.4: a client obtains a token for itself, with its own credentials. */
export const clientCredentials: Grant = {
  grantType: 'client_credentials',
  parameters: ['scope', 'resource'],
  repeatable: ['resource'],

  async handle({ params, client: authenticated }, ctx) {
    const { client } = authenticated;
    const target = await selectTarget(params.all('resource'), params.get('scope'), client, ctx.resourceServers);
    const bindTo = authenticated.certificateThumbprint;
    // Sender-constrained resources only ever receive bound tokens (DESIGN §4).
    if (target.resourceServer.require_sender_constraint && !bindTo) {
      throw new OAuthError('invalid_request', 'the resource requires sender-constrained tokens; authenticate with mTLS or use DPoP');
    }
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
      ...(bindTo ? { cnf: { 'x5t#S256': bindTo } } : {}),
    };
    const accessToken = await mintAccessToken(ctx.keys, claims);
    return {
      response: {
        access_token: accessToken,
        token_type: 'Bearer',
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
        details: { grant_type: 'client_credentials', jti: claims.jti, exp: claims.exp, bound: bindTo ? 'mtls' : 'none' },
      },
    };
  },
};
