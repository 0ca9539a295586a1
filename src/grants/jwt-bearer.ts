import { requirePersonRoleMinimum } from './step-up.ts';
import { partnerSubjectBasis } from '../federation/subject.ts';
import { partnerAudiences, verifyPartnerToken } from '../federation/verify.ts';
import { OAuthError } from '../oauth-error.ts';
import { issueAccessToken } from '../tokens/issue.ts';
import { jwtBearerGrantType } from '../tokens/token-types.ts';
import { narrowScopes } from './exchange/narrowing.ts';
import { isSafeClaimText } from './exchange/presented-token.ts';
import { assertionChain, chainNames } from './exchange/assertion-chain.ts';
import { defineGrant } from './grant.ts';
import { commitPartnerTxn, partnerTxn } from '../transactions/partner-txn.ts';

/**
 * RFC 7523 §2.1: a client presents a partner's JWT as an authorization grant. The rules, in order:
 * 1. `assertion` is required (invalid_request);
 * 2. it verifies under the issuing partner's trust profile (src/federation/verify.ts: algorithm,
 *    key, issuer, audience = our issuer or token endpoint, lifetime, required claims), its `jti`
 *    is used once (RFC 7523 §3 (7)), and the profile lets this client present it; its `sub` (and
 *    `jti`) are printable identifiers of at most 255 characters — else invalid_grant (§3.1);
 * 3. one target (`resource`, RFC 8707) among the profile's allowed audiences (invalid_target);
 * 4. scopes within the profile's allowed scopes, the target's and the client's registration;
 *    `scope` only narrows (invalid_scope);
 * 5. the one issuance path (src/tokens/issue.ts): binding and FAPI as for every grant; the decision
 *    point allows it (the presenting client is the principal, the partner subject's mapped LEI
 *    decides residency);
 * 6. the token's `sub` is the partner's subject and `origin_iss` the partner's issuer, so the
 *    origin stays visible; no refresh token;
 * 7. the chain behind the assertion (identity chaining across domains, draft-ietf-oauth-identity-
 *    chaining; src/grants/exchange/assertion-chain.ts): its `scope` claim bounds step 4's
 *    scopes (a wider `scope` is invalid_scope); its `act` is kept inside ours, the presenting
 *    client outermost, every partner actor named with the partner's issuer (an actor of another
 *    issuer is invalid_grant: a partner vouches for its own actors only); its well-formed `txn`
 *    is the token's when the partner shares that txn or it is new here (then started here through
 *    the partner), else invalid_grant (src/transactions/partner-txn.ts: a partner never picks a
 *    local trade); its mandate reference is recorded — `token.issued` names the partner's chain,
 *    and its `jti` as `partner_jti` (never a parent of ours). A malformed `act`, `scope` or
 *    `mandate` is invalid_grant.
 */
export const jwtBearer = defineGrant({
  grantType: jwtBearerGrantType,
  parameters: ['assertion', 'scope', 'resource'],
  repeatable: ['resource'],

  async handle({ params, client: authenticated, dpop, requestId, address }, ctx) {
    const client = authenticated.client.metadata;
    const assertion = params.get('assertion');
    if (!assertion) throw new OAuthError('invalid_request', 'assertion is required');
    const verified = await verifyPartnerToken(ctx, assertion, { kind: 'jwt', audiences: partnerAudiences(ctx.config.issuer), singleUse: true, clientId: client.client_id });
    if (!verified.ok) {
      // A partner suspended by a drift (src/federation/drift) is refused until re-approval; the
      // endpoint records every refusal (`assertion.refused`, reason code partner_suspended).
      throw new OAuthError('invalid_grant', `the assertion is not acceptable: ${verified.reason}`, verified.suspended ? { detail: 'partner_suspended' } : {});
    }
    const { partner, subject } = verified.token;
    if (!isSafeClaimText(subject) || (verified.token.jti !== undefined && !isSafeClaimText(verified.token.jti))) {
      throw new OAuthError('invalid_grant', 'the assertion is not acceptable: sub and jti must be printable identifiers of at most 255 characters');
    }
    // Step 7: what the partner's domain says of the chain behind the assertion.
    const chain = assertionChain(verified.token);
    if ('error' in chain) throw new OAuthError('invalid_grant', `the assertion is not acceptable: ${chain.error}`);

    const resources = params.all('resource');
    if (resources.length !== 1) throw new OAuthError('invalid_target', 'name one resource; each token has exactly one audience');
    const server = await ctx.resourceServers.get(resources[0]!);
    if (!server || !partner.allowed_audiences.includes(server.identifier)) {
      throw new OAuthError('invalid_target', `partner ${partner.id} may not obtain tokens for this resource`);
    }
    const registered = new Set(client.scope?.split(' ') ?? []);
    // Never wider than what the partner granted (its assertion's `scope`), nor than the profile allows.
    const requested = params.get('scope');
    const beyond = chain.scopes && requested?.split(' ').find((s) => s !== '' && !chain.scopes!.includes(s));
    if (beyond) throw new OAuthError('invalid_scope', `scope ${beyond.slice(0, 60)} is wider than the assertion grants`);
    const scopes = narrowScopes(requested, partner.allowed_scopes.filter((s) => registered.has(s) && (!chain.scopes || chain.scopes.includes(s))), server.scopes);
    // The trade the partner names: one it shares, or a new one (started here through it at issuance).
    const txn = chain.txn !== undefined ? await partnerTxn(ctx, partner.id, chain.txn) : undefined;
    if (txn === 'not_shared') throw txnNotShared(partner.id);

    // Who the partner's subject is here: a linked person, else its mapped firm (src/federation/subject.ts).
    const basis = await partnerSubjectBasis(ctx, verified.token, client.client_id);
    // Decided as a linked person: their role minimum, met by the partner's trusted acr or refused.
    if (basis.principal.type === 'User') {
      await requirePersonRoleMinimum(ctx, { personId: basis.principal.id, achieved: basis.claims.acr, clientId: client.client_id, requestId, grantType: jwtBearerGrantType });
    }
    const issued = await issueAccessToken(ctx, {
      grantType: jwtBearerGrantType,
      requestId,
      client: authenticated,
      keys: { dpop, certificateThumbprint: authenticated.certificateThumbprint },
      target: { audience: server.identifier, ttl: server.access_token_ttl, requireSenderConstraint: server.require_sender_constraint, format: server.access_token_format },
      sub: subject,
      // The linked person; else the presenting client vouches for the subject, its mapped LEI deciding residency.
      principal: basis.principal,
      ...(basis.subjectLeis ? { subjectLeis: basis.subjectLeis } : {}),
      scopes,
      authorizationDetails: [],
      ...(txn !== undefined ? { txn: txn.txn } : {}),
      // RFC 8693 §4.1: the presenting client acts now, for the partner's actors before it.
      claims: { origin_iss: partner.issuer, ...basis.claims, ...(chain.act ? { act: { sub: client.client_id, act: chain.act } } : {}) },
      ...(address !== undefined ? { address } : {}),
      event: {
        details: {
          partner: partner.id,
          partner_jti: verified.token.jti ?? null,
          ...(chain.act ? { act_chain: chainNames({ sub: client.client_id, act: chain.act }) } : {}),
          ...(chain.mandate ? { origin_mandate: chain.mandate } : {}),
        },
      },
    });
    const result = { response: issued.response, events: [...issued.decisions, issued.event], observe: issued.observe };
    if (!txn?.start) return result;
    return commitPartnerTxn(ctx, { txn: txn.txn, clientId: client.client_id, partnerId: partner.id }, result, () => txnNotShared(partner.id));
  },
});

/** RFC 7523 §3.1: an assertion naming a trade of ours its partner is no party to is invalid_grant (recorded as assertion.refused, not under that txn). */
function txnNotShared(partnerId: string): OAuthError {
  return new OAuthError('invalid_grant', `the assertion is not acceptable: its txn names a transaction here that is not shared with partner ${partnerId}`, { detail: 'txn_not_shared' });
}
