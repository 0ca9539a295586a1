import type { AuditEvent } from '../audit/events.ts';
import { tokenAuthorizationDetails, type AuthorizationDetail } from '../authorization/authorization-details.ts';
import { tokenFormKeys } from '../transfers/destination-input.ts';
import type { AuthenticatedClient } from '../clients/authentication/types.ts';
import { isFapi2 } from '../clients/profile.ts';
import { epochSeconds } from '../clock.ts';
import type { Context } from '../context.ts';
import { coverEndsAt } from '../mandates/coverage.ts';
import type { MandateVersion } from '../mandates/store.ts';
import { OAuthError } from '../oauth-error.ts';
import { authorizeIssuance, type AuthorizedIssuance, type Issuance } from '../policy/issuance.ts';
import { withTransfers } from '../transfers/enforce.ts';
import { foldDecisions } from '../policy/issuance-audit.ts';
import { riskAuditDetail, type RiskAssessment, type SignalHit } from '../risk/assessment.ts';
import { observeRisk } from '../risk/engine.ts';
import { tokenKey } from '../risk/signals/concurrent-networks.ts';
import { mintAccessToken, newJti } from './access-token.ts';
import { requireSenderConstraint, senderBinding, type PresentedKeys, type SenderBinding } from './binding.ts';
import type { AccessTokenClaims } from './claims.ts';
import { agentAuthority } from '../agents/authority.ts';
import type { AccessTokenFormat } from '../resource-servers/definition.ts';
import { holderMustNotRead } from '../identity/pairwise.ts';
import { annotateRequest, attributeNames, inSpan, spanNames, tracingOn } from '../telemetry/spans.ts';

/** Where an access token goes: its one audience (DESIGN §4), lifetime and binding requirement. */
export interface IssuanceTarget {
  audience: string;
  /** Lifetime in seconds (the resource server's `access_token_ttl`). */
  ttl: number;
  /** The resource server takes only sender-constrained tokens (`require_sender_constraint`). */
  requireSenderConstraint: boolean;
  /** `reference`: an opaque handle instead of a JWT (`access_token_format`); default `jwt`. */
  format?: AccessTokenFormat | undefined;
}

/** What a grant asks the issuance path for: one access token, and what justifies it. */
export interface AccessTokenRequest {
  /** The grant_type of the request, for the decision point and the audit event. */
  grantType: string;
  requestId: string;
  /** The client the token is issued to (its `client_id`; FAPI 2.0 profile). */
  client: AuthenticatedClient;
  /** What the request proved possession of: the DPoP proof and the client certificate. */
  keys: PresentedKeys;
  target: IssuanceTarget;
  /** The token's `sub`: a person, the client itself, or a partner's subject. */
  sub: string;
  /** Whom the decision point sees as the principal (a partner's subject is vouched for by the client). */
  principal: Issuance['subject'];
  /** The principal's legal entities for data residency, when not read from our records. */
  subjectLeis?: string[];
  scopes: string[];
  authorizationDetails: AuthorizationDetail[];
  /** The mandate version the token is issued under (resolved and checked by the grant). */
  mandate?: MandateVersion;
  /** The transaction the token belongs to (token exchange). */
  txn?: string;
  /** The token must end no later than this (epoch seconds): a token exchange never outlives its subject. */
  notAfter?: number;
  /** Claims only some grants carry: a person's grant_id/auth_time/acr/amr, `act`, `origin_iss`. */
  claims?: Partial<Pick<AccessTokenClaims, 'grant_id' | 'refresh_family' | 'auth_time' | 'acr' | 'amr' | 'act' | 'authorization_details_digest' | 'approvals' | 'break_glass' | 'break_glass_activation' | 'device_id' | 'assurance_source' | 'origin_person' | 'origin_lei' | 'agents'>> & { origin_iss?: string };
  /** The issuance event: `token.issued` unless said otherwise, with the grant's own details. */
  event?: { type?: 'token.issued' | 'token.exchanged'; details?: Record<string, unknown> };
  /** The source address of the token request (after trusted proxies), for the risk signals. */
  address?: string;
  /**
   * What the risk engine needs beyond the request (src/policy/issuance-risk.ts): the signals the
   * person's sign-in carried, an exchange's subject and act chain, the token presented to get this one.
   */
  risk?: { loginRisk?: readonly SignalHit[]; delegation?: { subject: string; actors: string[] }; presented?: { token: string; byHolder: boolean } };
}

/** A signed access token, the response members that describe it, and what must be made durable with it. */
export interface IssuedAccessToken {
  /** The JWT, or a reference token's handle (src/tokens/reference-tokens.ts). */
  token: string;
  format: AccessTokenFormat;
  claims: AccessTokenClaims & { origin_iss?: string };
  binding: SenderBinding;
  /** RFC 6749 §5.1 members of the token response for this access token. */
  response: { access_token: string; token_type: 'Bearer' | 'DPoP'; expires_in: number; scope: string; authorization_details?: unknown[] };
  /**
   * The decision point's allows as separate `policy.allowed` events, to be recorded with `event`:
   * empty unless they could not be folded into it (too large, or of two policy versions:
   * src/policy/issuance-audit.ts).
   */
  decisions: AuditEvent[];
  /**
   * The `token.issued` (or `token.exchanged`) event, carrying the decisions that allowed it:
   * durable before the response leaves (DESIGN §5).
   */
  event: AuditEvent;
  /** The risk assessment the decisions were given (undefined: the engine is switched off); in `event` as `details.risk`. */
  risk?: RiskAssessment;
  /**
   * Takes back what the decision point reserved for the token's transfers (src/transfers/enforce.ts:
   * the rolling totals, a destination's first use), for the grant to call when it fails before the
   * token's events are durable — its own writes refused (a txn taken, a code redeemed meanwhile),
   * the events' commit failed — so that a token never issued counts toward no daily limit
   * (docs/transfers.md "What is counted"). `settleIssuance` calls it. Present only for a token
   * carrying transfers; never throws.
   */
  release?: AuthorizedIssuance['release'];
  /**
   * Once the token is issued (its event durable): it counts toward the principal's and its
   * client's activity (src/risk/anomalies/activity.ts), and the risk signals remember what they
   * saw — a network, scope, audience, actor now known (only what is new is written:
   * src/risk/sightings.ts).
   */
  observe(): Promise<void>;
}

/**
 * The one issuance path: every grant's access token is made here (DESIGN §2). The rules, in order:
 * 1. binding: to the request's DPoP key (RFC 9449 §6) or else its client certificate (RFC 8705
 *    §3.1); a bearer token is refused for a sender-constrained resource and under the FAPI 2.0
 *    profile (FAPI 2.0 SP §5.3.2.1); neither the client nor the principal is suspended pending
 *    review by an anomaly's reaction (src/risk/anomalies);
 * 2. the decision point allows each scope and authorization_details entry, and data residency
 *    holds, informed by the risk assessment, whose deny or step-up is the stricter answer
 *    (src/policy/issuance.ts) — a refusal records every decision at once, the allows of a
 *    successful issuance are returned;
 * 3. the claims: RFC 9068 §2.2 (iss, sub, one aud, exp, iat, jti, client_id, scope) and our
 *    vocabulary (cnf, mandate {id, v}, authorization_details, txn, act, grant_id, acr/amr);
 *    the lifetime is the target's, cut to `notAfter` and to the end of a mandate's cover (`coverEndsAt`:
 *    effective_to, reassignment deadline, time window) — nothing left of it → invalid_grant;
 * 4. signing with the current key (`typ: at+jwt`, RFC 9068 §2.1) — or, for a resource server
 *    registered `access_token_format: reference` and for any token a `pairwise` client gets about
 *    someone other than itself (it must not read the local subject), the same claims stored under a fresh opaque
 *    handle (src/tokens/reference-tokens.ts: through the group commit, durable before the handle is
 *    returned; never signed, never sent): the response is the same but for `access_token`;
 * 5. ONE issuance event carrying the decisions (their reasons, policy version and requests as
 *    evaluated: src/policy/issuance-audit.ts) and the risk assessment (`details.risk`), for the caller to make durable before the response
 *    leaves — in the transaction of its own writes when it has any (codes, refresh tokens). Only
 *    when they cannot be folded (the event would be too large; two policy versions) are the
 *    allows returned as separate events.
 * Nothing is written here except a refusal's decisions and a reference token's claims — and, for a
 * token carrying transfers, the decision point's reservations of their daily totals: taken back
 * when this path fails after them, and returned as `release` for the grant to call when it fails
 * before the event is durable (`settleIssuance`). Once the caller made the event durable,
 * `observe` counts the token toward the anomaly baselines and lets the risk signals remember what
 * they saw.
 * Traced as `clearance.issuance` (grant type, client, audience, txn, binding, decision), its step 2
 * as `clearance.policy_decision`; the txn goes on the request's span too (docs/observability.md).
 */
export function issueAccessToken(ctx: Context, request: AccessTokenRequest): Promise<IssuedAccessToken> {
  return tracingOn ? tracedIssuance(ctx, request) : issue(ctx, request);
}

function tracedIssuance(ctx: Context, request: AccessTokenRequest): Promise<IssuedAccessToken> {
  return inSpan(
    spanNames.issuance,
    async (span) => {
      span!.setAttributes({
        [attributeNames.grantType]: request.grantType,
        [attributeNames.clientId]: request.client.client.metadata.client_id,
        [attributeNames.audience]: request.target.audience,
        ...(request.txn !== undefined ? { [attributeNames.txn]: request.txn } : {}),
        ...(request.mandate ? { [attributeNames.mandateId]: request.mandate.id } : {}),
      });
      if (request.txn !== undefined) annotateRequest({ [attributeNames.txn]: request.txn });
      const issued = await issue(ctx, request);
      span!.setAttribute(attributeNames.binding, issued.binding.kind === 'none' ? 'bearer' : issued.binding.kind);
      return issued;
    },
    { decides: true },
  );
}

async function issue(ctx: Context, request: AccessTokenRequest): Promise<IssuedAccessToken> {
  const binding = senderBinding(request.keys);
  requireSenderConstraint(binding, { resource: request.target.requireSenderConstraint, fapi: isFapi2(ctx.config, request.client.client) });
  const clientId = request.client.client.metadata.client_id;
  // A partner's authorization server, registered here so JWT authorization grants for it are
  // decided, gets those grants only (docs/federation.md): an access token for it would reach the
  // partner without the chaining rules (its clients, subject mapping, lifetime, shared txn).
  const partnerServer = await ctx.partners.grantTarget(request.target.audience);
  if (partnerServer) {
    throw new OAuthError('invalid_target', `the target is partner ${partnerServer.id}'s authorization server: ask for a JWT authorization grant by token exchange (requested_token_type urn:ietf:params:oauth:token-type:jwt), not an access token`);
  }
  await refuseSuspended(ctx, clientId, request.principal);
  // An agent acts only with an approved model version (src/agents/authority.ts).
  const agent = await agentAuthority(ctx, request.client);
  const authorized = await inSpan(spanNames.policyDecision, () => authorizeIssuance(ctx, { ...issuanceOf(request, clientId), ...(agent ? { agent } : {}) }), { decides: true });
  // A token carrying transfers holds reservations from here on: whatever fails below takes them back.
  if (!authorized.release) return signed(ctx, request, clientId, binding, agent, authorized);
  try {
    return { ...(await signed(ctx, request, clientId, binding, agent, authorized)), release: authorized.release };
  } catch (error) {
    await authorized.release();
    throw error;
  }
}

/**
 * What a grant does after its access token was issued until the token's events are durable —
 * `rest`, its own writes and their commit — with the issuance's reservations (`issued.release`)
 * taken back when it throws, or when it answers undefined: it lost its write to a parallel
 * redemption of the same grant, which issued instead — then this attempt's holds are let go but
 * the destinations' first uses it recorded are kept, which the winner (same entries, its own
 * holds) counts on, with a txn or without (src/transfers/enforce.ts `keepShared`). `contended`:
 * every failure of `rest` may be another issuance of the txn winning (a partner's txn start), so
 * it keeps a txn's first uses too. Once issued, the reservations are settled as kept (`release({ issued })`).
 * Without reservations (no transfer), just `rest`: nothing more on the hot path.
 */
export async function settleIssuance<T>(issued: Pick<IssuedAccessToken, 'release'>, rest: () => Promise<T>, options: { contended?: boolean } = {}): Promise<T> {
  const release = issued.release;
  if (!release) return rest();
  let result: T;
  try {
    result = await rest();
  } catch (error) {
    await release({ keepShared: options.contended === true });
    throw error;
  }
  if (result === undefined) await release({ keepShared: true });
  // Issued: its holds become the reservations' lasting holds (src/transfers/totals.ts `keep`), not one more per refresh.
  else await release({ issued: true });
  return result;
}

/** Issuance steps 3 to 5, once the decision point allowed it: the claims, the signature or handle, the event. */
async function signed(
  ctx: Context,
  request: AccessTokenRequest,
  clientId: string,
  binding: SenderBinding,
  agent: Awaited<ReturnType<typeof agentAuthority>>,
  authorized: AuthorizedIssuance,
): Promise<IssuedAccessToken> {
  const iat = epochSeconds(ctx.clock);
  // A token under a mandate ends when the mandate's cover does (its effective_to, its reassignment
  // deadline, or the close of its time window's current stretch, src/mandates/coverage.ts): a JWT
  // checked locally must not outlast the authority that justifies it.
  const mandateEnd = request.mandate ? coverEndsAt(request.mandate, ctx.clock.now()) : null;
  const exp = Math.min(iat + request.target.ttl, request.notAfter ?? Infinity, mandateEnd === null ? Infinity : Math.floor(mandateEnd / 1000));
  if (exp <= iat) throw new OAuthError('invalid_grant', 'what the token would be issued from has expired');
  const claims: AccessTokenClaims & { origin_iss?: string } = {
    iss: ctx.config.issuer,
    // RFC 9068 §2.2: `sub` is the resource owner, or the client itself when none is involved.
    sub: request.sub,
    aud: request.target.audience,
    exp,
    iat,
    jti: newJti(),
    client_id: clientId,
    scope: request.scopes.join(' '),
    ...request.claims,
    ...(request.txn !== undefined ? { txn: request.txn } : {}),
    ...(request.mandate ? { mandate: { id: request.mandate.id, v: request.mandate.version } } : {}),
    // RFC 9396 §9.1: the granted authorization_details travel in the token.
    // DESIGN §4: personal data in an entry (a transfer's travel-rule data) travels as its digest.
    ...(request.authorizationDetails.length > 0 ? { authorization_details: tokenAuthorizationDetails(request.authorizationDetails, tokenFormKeys(ctx.config)) } : {}),
    ...(binding.cnf ? { cnf: binding.cnf } : {}),
    // The claim names the agent and its model; its envelope is for the decision point only.
    ...(agent ? { agent: { id: agent.id, strategy: agent.strategy, environment: agent.environment, model_version: agent.model_version, model_digest: agent.model_digest, approval: agent.approval } } : {}),
  };
  // A pairwise client must never read the local subject (OIDC Core §8.1): its tokens about anyone
  // but itself are reference tokens whatever the resource server's format, which its resource
  // servers introspect (docs/privacy.md "Regions").
  const format: AccessTokenFormat = request.target.format === 'reference' || holderMustNotRead(request.client.client.metadata, claims.sub) ? 'reference' : 'jwt';
  // RFC 7662 §1: a reference token's claims stay here; the resource server introspects the handle.
  const token = format === 'jwt' ? await mintAccessToken(ctx.keys, claims) : await ctx.referenceTokens.store(claims);
  // The transfers it carries, with their address-book destinations (src/transfers/enforce.ts), are in the event too.
  const recorded = foldDecisions(withTransfers(issuanceEvent(request, claims, binding, authorized.risk, format), authorized.transfers), authorized.allows);
  return {
    token,
    format,
    claims,
    binding,
    response: {
      access_token: token,
      token_type: binding.tokenType,
      expires_in: exp - iat,
      scope: claims.scope!,
      // RFC 9396 §7: the token response names the granted authorization_details.
      ...(claims.authorization_details ? { authorization_details: claims.authorization_details } : {}),
    },
    decisions: recorded.separate,
    event: recorded.event,
    ...(authorized.risk ? { risk: authorized.risk } : {}),
    observe: () => {
      // Every grant's token counts toward the principal's (and its client's) activity, once issued.
      ctx.risk.activity.countToken(request.principal, clientId, request.target.audience);
      return observeRisk(ctx, { ...authorized.riskFacts, issued: tokenKey(claims.jti) });
    },
  };
}

/** What the decision point is asked about an access token request (src/policy/issuance.ts). */
export function issuanceOf(request: AccessTokenRequest, clientId: string): Issuance {
  return {
    subject: request.principal,
    ...(request.subjectLeis ? { subjectLeis: request.subjectLeis } : {}),
    clientId,
    audience: request.target.audience,
    scopes: request.scopes,
    authorizationDetails: request.authorizationDetails,
    ...(request.claims?.acr !== undefined ? { acr: request.claims.acr } : {}),
    ...(request.claims?.auth_time !== undefined ? { authTime: request.claims.auth_time } : {}),
    // The person approved exactly these order entries with a passkey: `@approval` forbids are lifted.
    ...(request.claims?.authorization_details_digest !== undefined ? { approved: true } : {}),
    // Second persons approved the request (four-eyes): `@approval("four-eyes")` forbids count them.
    ...(request.claims?.approvals !== undefined ? { approvals: request.claims.approvals.length } : {}),
    // The person signed in from a managed device: policy may require one (context.managed_device).
    ...(request.claims?.device_id !== undefined ? { deviceId: request.claims.device_id } : {}),
    // The person was signed in by an upstream identity provider: policy sees which (context.assurance).
    ...(request.claims?.assurance_source !== undefined ? { assuranceSource: request.claims.assurance_source } : {}),
    ...(request.mandate ? { mandate: request.mandate } : {}),
    requestId: request.requestId,
    ...(request.txn !== undefined ? { txn: request.txn } : {}),
    grantType: request.grantType,
    ...(request.address !== undefined ? { address: request.address } : {}),
    // The person's sign-in was risky: the issuance's assessment sees which signals fired.
    ...(request.risk?.loginRisk ? { loginRisk: request.risk.loginRisk } : {}),
    ...(request.risk?.delegation ? { delegation: request.risk.delegation } : {}),
    ...(request.risk?.presented ? { presented: request.risk.presented } : {}),
  };
}

/** The one shape of `token.issued` / `token.exchanged`: who, for whom, where, what, and the grant's details. */
function issuanceEvent(request: AccessTokenRequest, claims: AccessTokenClaims & { origin_iss?: string }, binding: SenderBinding, risk: RiskAssessment | undefined, format: AccessTokenFormat): AuditEvent {
  return {
    type: request.event?.type ?? 'token.issued',
    requestId: request.requestId,
    ...(claims.txn !== undefined ? { txn: claims.txn } : {}),
    actor: claims.client_id,
    subject: claims.sub,
    client: claims.client_id,
    issuer: claims.iss,
    audience: claims.aud,
    scopes: request.scopes,
    ...(claims.mandate ? { mandate: claims.mandate } : {}),
    details: {
      grant_type: request.grantType,
      jti: claims.jti,
      exp: claims.exp,
      bound: binding.kind,
      // A reference token (an opaque handle resolved by introspection) says so; a JWT, the default
      // and the hot path, adds nothing to every event.
      ...(format === 'reference' ? { format } : {}),
      ...request.event?.details,
      ...(claims.authorization_details ? { authorization_details: claims.authorization_details } : {}),
      ...(claims.origin_iss ? { origin_iss: claims.origin_iss } : {}),
      // Who and what acted: the agent's model version, the person's managed device.
      ...(claims.agent ? { agent: claims.agent } : {}),
      ...(claims.device_id !== undefined ? { device_id: claims.device_id } : {}),
      // The source of assurance of a person signed in by an upstream identity provider.
      ...(claims.assurance_source !== undefined ? { assurance_source: claims.assurance_source } : {}),
      // The risk assessment that informed the decisions (docs/risk.md).
      ...(risk ? { risk: riskAuditDetail(risk) } : {}),
    },
  };
}

/**
 * A client or person suspended pending review (an anomaly's `suspend` reaction, docs/risk.md) gets
 * no token from any grant until an administrator reinstates it. Read from the reactions cache: no
 * round trip per request. RFC 6749 §5.2: the client is refused as `unauthorized_client`, a person's
 * grant as `invalid_grant` (it stays stored and works again once the person is reinstated).
 */
async function refuseSuspended(ctx: Context, clientId: string, principal: Issuance['subject']): Promise<void> {
  const suspended = await ctx.risk.reactions.firstSuspended([{ type: 'Client', id: clientId }, principal]);
  if (!suspended) return;
  if (suspended.type === 'Client' && suspended.id === clientId) throw new OAuthError('unauthorized_client', 'the client is suspended pending review', { detail: 'risk suspension' });
  throw new OAuthError('invalid_grant', 'access is suspended pending review', { detail: 'risk suspension' });
}
