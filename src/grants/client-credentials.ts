import { isFapi2 } from '../clients/profile.ts';
import { epochSeconds } from '../clock.ts';
import { mintAccessToken, newJti } from '../tokens/access-token.ts';
import { selectTarget } from '../tokens/audience.ts';
import { requireSenderConstraint, senderBinding } from '../tokens/binding.ts';
import type { AccessTokenClaims } from '../tokens/claims.ts';
import { authorizeIssuance } from '../policy/issuance.ts';
import { clientParties, resolveIssuingMandate } from '../mandates/issuance.ts';
import type { Grant } from './grant.ts';

/**
 * RFC 6749 §4.4: a client obtains a token for itself, with its own credentials. The rules, in order:
 * 1. one audience and scopes the client is registered for (src/tokens/audience.ts);
 * 2. with `mandate` (docs/mandates.md): the mandate's current version names the client or its
 *    owner as grantee, is in force, and grants the scopes; the token carries `mandate: {id, v}`;
 * 3. binding: the request's DPoP key (RFC 9449 §5) or else its client certificate (RFC 8705 §3);
 *    a bearer token is refused for a sender-constrained resource and under the FAPI 2.0 profile;
 * 4. the decision point allows each scope, and data residency holds (src/policy/issuance.ts);
 *    its allows are recorded with `token.issued`, durable before the response leaves.
 */
export const clientCredentials: Grant = {
  grantType: 'client_credentials',
  parameters: ['scope', 'resource', 'mandate'],
  repeatable: ['resource'],

  async handle({ params, client: authenticated, dpop, requestId }, ctx) {
    const { client } = authenticated;
    const clientId = client.metadata.client_id;
    const target = await selectTarget(params.all('resource'), params.get('scope'), client, ctx.resourceServers);
    const mandateId = params.get('mandate');
    const mandate =
      mandateId === undefined
        ? undefined
        : await resolveIssuingMandate(ctx, mandateId, { grantees: clientParties(clientId, client.metadata.owner_lei), offeredScopes: target.scopes, scopeRequested: params.get('scope') !== undefined });
    const scopes = mandate?.scopes ?? target.scopes;
    const binding = senderBinding({ dpop, certificateThumbprint: authenticated.certificateThumbprint });
    // Sender-constrained resources and FAPI 2.0 clients only ever receive bound tokens (DESIGN §4).
    requireSenderConstraint(binding, { resource: target.resourceServer.require_sender_constraint, fapi: isFapi2(ctx.config, client) });
    const decisions = await authorizeIssuance(ctx, {
      subject: { type: 'Client', id: clientId },
      clientId,
      audience: target.resourceServer.identifier,
      scopes,
      authorizationDetails: [],
      ...(mandate ? { mandate: mandate.version } : {}),
      requestId,
      grantType: 'client_credentials',
    });
    const iat = epochSeconds(ctx.clock);
    const claims: AccessTokenClaims = {
      iss: ctx.config.issuer,
      sub: client.metadata.client_id, // RFC 9068 §2.2: the client itself when no resource owner is involved
      aud: target.resourceServer.identifier,
      exp: iat + target.resourceServer.access_token_ttl,
      iat,
      jti: newJti(),
      client_id: client.metadata.client_id,
      scope: scopes.join(' '),
      ...(binding.cnf ? { cnf: binding.cnf } : {}),
      ...(mandate ? { mandate: { id: mandate.version.id, v: mandate.version.version } } : {}),
    };
    const accessToken = await mintAccessToken(ctx.keys, claims);
    return {
      response: {
        access_token: accessToken,
        token_type: binding.tokenType,
        expires_in: target.resourceServer.access_token_ttl,
        scope: claims.scope!,
      },
      events: [
        ...decisions,
        {
          type: 'token.issued',
          actor: clientId,
          subject: claims.sub,
          client: claims.client_id,
          issuer: claims.iss,
          audience: claims.aud,
          scopes,
          ...(claims.mandate ? { mandate: claims.mandate } : {}),
          details: { grant_type: 'client_credentials', jti: claims.jti, exp: claims.exp, bound: binding.kind },
        },
      ],
    };
  },
};
