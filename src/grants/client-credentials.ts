import { OAuthError } from '../oauth-error.ts';
import { selectTarget } from '../tokens/audience.ts';
import { issueAccessToken } from '../tokens/issue.ts';
import { clientParties, resolveIssuingMandate } from '../mandates/issuance.ts';
import { defineGrant } from './grant.ts';

/**
 * RFC 6749 §4.4: a client obtains a token for itself, with its own credentials. The rules, in order:
 * 1. one audience and scopes the client is registered for (src/tokens/audience.ts);
 * 2. with `mandate` (docs/mandates.md): the mandate's current version names the client or its
 *    owner as grantee, is in force, and grants the scopes; the token carries `mandate: {id, v}`;
 * 3. the one issuance path (src/tokens/issue.ts): binding to the request's DPoP key or client
 *    certificate (a bearer token refused for a sender-constrained resource and under FAPI 2.0),
 *    the decision point for each scope and data residency, the claims (`sub` is the client), the
 *    signature; its allows are folded into `token.issued`, durable before the response leaves.
 * An emergency account (break-glass, src/approvals/break-glass) got here only with an activation in
 * force (client authentication's gate): its token is for the activation's audience and scopes only,
 * never under a mandate, ends no later than the activation, and carries `break_glass: true`, the
 * activation's id and its txn — as does its `token.issued` event.
 */
export const clientCredentials = defineGrant({
  grantType: 'client_credentials',
  parameters: ['scope', 'resource', 'mandate'],
  repeatable: ['resource'],

  async handle({ params, client: authenticated, dpop, requestId, address }, ctx) {
    const { client } = authenticated;
    const clientId = client.metadata.client_id;
    const target = await selectTarget(params.all('resource'), params.get('scope'), client, ctx.resourceServers);
    const mandateId = params.get('mandate');
    const mandate =
      mandateId === undefined
        ? undefined
        : await resolveIssuingMandate(ctx, mandateId, { grantees: clientParties(clientId, client.metadata.owner_lei), offeredScopes: target.scopes, scopeRequested: params.get('scope') !== undefined });
    const server = target.resourceServer;
    const breakGlass = authenticated.breakGlass;
    if (breakGlass) {
      if (mandateId !== undefined) throw new OAuthError('invalid_request', 'an emergency account does not act under a mandate');
      if (server.identifier !== breakGlass.audience) throw new OAuthError('invalid_target', 'the break-glass activation does not grant this resource');
      const beyond = target.scopes.filter((s) => !breakGlass.scopes.includes(s));
      if (beyond.length > 0) throw new OAuthError('invalid_scope', `the break-glass activation does not grant ${beyond.join(' ')}`);
    }
    const issued = await issueAccessToken(ctx, {
      grantType: 'client_credentials',
      requestId,
      client: authenticated,
      keys: { dpop, certificateThumbprint: authenticated.certificateThumbprint },
      target: { audience: server.identifier, ttl: server.access_token_ttl, requireSenderConstraint: server.require_sender_constraint },
      // RFC 9068 §2.2: the client itself is the subject when no resource owner is involved.
      sub: clientId,
      principal: { type: 'Client', id: clientId },
      scopes: mandate?.scopes ?? target.scopes,
      authorizationDetails: [],
      ...(mandate ? { mandate: mandate.version } : {}),
      ...(address !== undefined ? { address } : {}),
      ...(breakGlass
        ? {
            txn: breakGlass.activation,
            notAfter: Math.floor(breakGlass.endsAt / 1000),
            claims: { break_glass: true as const, break_glass_activation: breakGlass.activation },
            event: { details: { break_glass: true, break_glass_activation: breakGlass.activation } },
          }
        : {}),
    });
    return { response: issued.response, events: [...issued.decisions, issued.event], observe: issued.observe };
  },
});
