import { isFapi2 } from '../clients/profile.ts';
import { epochSeconds } from '../clock.ts';
import { partnerAudiences, verifyPartnerToken } from '../federation/verify.ts';
import { OAuthError } from '../oauth-error.ts';
import { authorizeIssuance } from '../policy/issuance.ts';
import { mintAccessToken, newJti } from '../tokens/access-token.ts';
import { requireSenderConstraint, senderBinding } from '../tokens/binding.ts';
import type { AccessTokenClaims } from '../tokens/claims.ts';
import { jwtBearerGrantType } from '../tokens/token-types.ts';
import { narrowScopes } from './exchange/narrowing.ts';
import { isSafeClaimText } from './exchange/presented-token.ts';
import type { Grant } from './grant.ts';

/**
 * RFC 7523 §2.1: a client presents a partner's JWT as an authorization grant. The rules, in order:
 * 1. `assertion` is required (invalid_request);
 * 2. it verifies under the issuing partner's trust profile (src/federation/verify.ts: algorithm,
 *    key, issuer, audience = our issuer or token endpoint, lifetime, required claims), its `jti`
 *    is used once (RFC 7523 §3 (7)), and the profile lets this client present it — else
 *    invalid_grant (§3.1);
 * 3. one target (`resource`, RFC 8707) among the profile's allowed audiences (invalid_target);
 * 4. scopes within the profile's allowed scopes, the target's and the client's registration;
 *    `scope` only narrows (invalid_scope);
 * 5. binding and FAPI as for every grant; the decision point allows it (the presenting client is
 *    the principal, the partner subject's mapped LEI decides residency);
 * 6. the token's `sub` is the partner's subject and `origin_iss` the partner's issuer, so the
 *    origin stays visible; no refresh token.
 */
export const jwtBearer: Grant = {
  grantType: jwtBearerGrantType,
  parameters: ['assertion', 'scope', 'resource'],
  repeatable: ['resource'],

  async handle({ params, client: authenticated, dpop, requestId }, ctx) {
    const client = authenticated.client.metadata;
    const assertion = params.get('assertion');
    if (!assertion) throw new OAuthError('invalid_request', 'assertion is required');
    const verified = await verifyPartnerToken(ctx, assertion, { kind: 'jwt', audiences: partnerAudiences(ctx.config.issuer), singleUse: true, clientId: client.client_id });
    if (!verified.ok) throw new OAuthError('invalid_grant', `the assertion is not acceptable: ${verified.reason}`);
    const { partner, subject, attributes } = verified.token;
    if (!isSafeClaimText(subject) || (verified.token.jti !== undefined && !isSafeClaimText(verified.token.jti))) {
      throw new OAuthError('invalid_grant', 'the assertion is not acceptable: sub and jti must be printable identifiers of at most 255 characters');
    }

    const resources = params.all('resource');
    if (resources.length !== 1) throw new OAuthError('invalid_target', 'name one resource; each token has exactly one audience');
    const server = await ctx.resourceServers.get(resources[0]!);
    if (!server || !partner.allowed_audiences.includes(server.identifier)) {
      throw new OAuthError('invalid_target', `partner ${partner.id} may not obtain tokens for this resource`);
    }
    const registered = new Set(client.scope?.split(' ') ?? []);
    const scopes = narrowScopes(params.get('scope'), partner.allowed_scopes.filter((s) => registered.has(s)), server.scopes);

    const binding = senderBinding({ dpop, certificateThumbprint: authenticated.certificateThumbprint });
    requireSenderConstraint(binding, { resource: server.require_sender_constraint, fapi: isFapi2(ctx.config, authenticated.client) });
    const decisions = await authorizeIssuance(ctx, {
      subject: { type: 'Client', id: client.client_id },
      subjectLeis: attributes.lei ? [attributes.lei] : [],
      clientId: client.client_id,
      audience: server.identifier,
      scopes,
      authorizationDetails: [],
      requestId,
      grantType: jwtBearerGrantType,
    });
    const iat = epochSeconds(ctx.clock);
    const claims: AccessTokenClaims & { origin_iss: string } = {
      iss: ctx.config.issuer,
      sub: subject,
      aud: server.identifier,
      exp: iat + server.access_token_ttl,
      iat,
      jti: newJti(),
      client_id: client.client_id,
      scope: scopes.join(' '),
      origin_iss: partner.issuer,
      ...(binding.cnf ? { cnf: binding.cnf } : {}),
    };
    const accessToken = await mintAccessToken(ctx.keys, claims);
    return {
      response: { access_token: accessToken, token_type: binding.tokenType, expires_in: server.access_token_ttl, scope: claims.scope! },
      events: [
        ...decisions,
        {
          type: 'token.issued',
          actor: client.client_id,
          subject,
          client: client.client_id,
          issuer: claims.iss,
          audience: claims.aud,
          scopes,
          details: { grant_type: jwtBearerGrantType, jti: claims.jti, exp: claims.exp, bound: binding.kind, partner: partner.id, origin_iss: partner.issuer, partner_jti: verified.token.jti ?? null },
        },
      ],
    };
  },
};
