import { agentAuthority } from '../../agents/authority.ts';
import type { AuditEvent } from '../../audit/events.ts';
import type { AuthenticatedClient } from '../../clients/authentication/types.ts';
import type { Context } from '../../context.ts';
import { grantAudience } from '../../federation/chaining.ts';
import type { Partner } from '../../federation/definition.ts';
import type { MandateVersion } from '../../mandates/store.ts';
import { OAuthError } from '../../oauth-error.ts';
import { foldDecisions } from '../../policy/issuance-audit.ts';
import { authorizeIssuance, type AuthorizedIssuance, type Issuance } from '../../policy/issuance.ts';
import { riskAuditDetail } from '../../risk/assessment.ts';
import { observeRisk } from '../../risk/engine.ts';
import { tokenKey } from '../../risk/signals/concurrent-networks.ts';
import type { ResourceServer } from '../../resource-servers/definition.ts';
import { inSpan, spanNames } from '../../telemetry/spans.ts';
import { tokenExchangeGrantType } from '../../tokens/token-types.ts';
import type { AgentClaim } from '../../tokens/claims.ts';
import type { PresentedToken } from './presented-token.ts';

/**
 * The decision point for a JWT authorization grant (authorization-grant.ts steps 2b and 5a): the
 * grant is decided as every token exchange is — KYC/AML, the agent's model authority, the risk
 * assessment, data residency, the active policy set (src/policy/issuance.ts) — with the partner's
 * authorization server as the audience.
 *
 * **How the partner's authorization server is represented.** It is no resource server of ours,
 * yet the decision point decides only about resource servers it knows (an unknown one denies). So
 * it is the resource server registered here under the partner's `issuer` or its grant audience
 * (`chaining.audience`) — the one a person consents to — and the decision's resource is
 * `ResourceServer::"<that identifier>"`, with its registered `scopes` and `region` (data
 * residency). None registered: no grant (invalid_target) — fail closed, never decided as if no
 * policy applied. Registration bounds the grant too: its scopes are offered by that registration.
 */
export async function partnerAuthorizationServer(ctx: Pick<Context, 'resourceServers'>, partner: Partner): Promise<ResourceServer> {
  for (const name of new Set([partner.issuer, grantAudience(partner)])) {
    const server = await ctx.resourceServers.get(name);
    if (server) return server;
  }
  throw new OAuthError('invalid_target', `partner ${partner.id}'s authorization server is not registered here as a resource server, so no decision can allow a grant for it`, { detail: 'partner_server_unregistered' });
}

/**
 * The profile of the partner a chain started from (a token of ours for a partner's subject names
 * it as `origin_iss`), which bounds every later hop as token exchange's step 6 does: the partner
 * still registered and not suspended by a drift (invalid_request), and the target — the partner's
 * authorization server as registered — among its `allowed_audiences` (invalid_target). Undefined
 * for a chain of ours.
 */
export async function originProfile(ctx: Pick<Context, 'partners'>, subject: PresentedToken, server: ResourceServer): Promise<Partner | undefined> {
  if (subject.originIssuer === undefined) return undefined;
  const profile = await ctx.partners.byIssuer(subject.originIssuer);
  if (!profile) throw new OAuthError('invalid_request', 'subject_token comes from a partner that is no longer registered');
  // Suspended by a drift (src/federation/drift): not trusted until re-approved, nor the chains it started.
  if (await ctx.partners.suspension(profile.id)) {
    throw new OAuthError('invalid_request', `subject_token is not acceptable: its chain started at partner ${profile.id}, which is suspended until an operator re-approves it`, { detail: 'partner_suspended' });
  }
  if (!profile.allowed_audiences.includes(server.identifier)) throw new OAuthError('invalid_target', `partner ${profile.id} may not obtain tokens for this target`);
  return profile;
}

export interface GrantDecisionRequest {
  client: AuthenticatedClient;
  requestId: string;
  server: ResourceServer;
  principal: Issuance['subject'];
  subjectLeis?: string[];
  subject: PresentedToken;
  scopes: string[];
  mandate?: MandateVersion;
  txn: string;
  /** The grant's act chain, newest first, for the delegation signals and the firms' KYC. */
  actors: string[];
  address?: string;
}

export interface GrantDecision {
  authorized: AuthorizedIssuance;
  agent?: AgentClaim;
}

/**
 * Step 5a: the decision, as src/tokens/issue.ts asks it of every access token — an agent acts only
 * with an approved model version (unauthorized_client), then authorizeIssuance (its refusals
 * recorded by it). The grant type is token exchange, so a person's grant is not refused as a token
 * leaving the region: the grant names them as the profile maps them (authorization-grant.ts
 * checks the region for `public`).
 */
export async function decideGrant(ctx: Context, request: GrantDecisionRequest): Promise<GrantDecision> {
  const clientId = request.client.client.metadata.client_id;
  const { subject } = request;
  const agent = await agentAuthority(ctx, request.client);
  const issuance: Issuance = {
    subject: request.principal,
    ...(request.subjectLeis ? { subjectLeis: request.subjectLeis } : {}),
    clientId,
    audience: request.server.identifier,
    scopes: request.scopes,
    authorizationDetails: [],
    ...(subject.authentication ? { acr: subject.authentication.acr, authTime: subject.authentication.authTime } : {}),
    ...(subject.assuranceSource !== undefined ? { assuranceSource: subject.assuranceSource } : {}),
    ...(request.mandate ? { mandate: request.mandate } : {}),
    ...(agent ? { agent } : {}),
    requestId: request.requestId,
    txn: request.txn,
    grantType: tokenExchangeGrantType,
    ...(request.address !== undefined ? { address: request.address } : {}),
    delegation: { subject: subject.subject, actors: request.actors },
    ...(subject.jti !== undefined ? { presented: { token: tokenKey(subject.jti), byHolder: subject.clientId === clientId } } : {}),
  };
  const authorized = await inSpan(spanNames.policyDecision, () => authorizeIssuance(ctx, issuance), { decides: true });
  if (!agent) return { authorized };
  const { envelope: _, ...claim } = agent;
  return { authorized, agent: claim };
}

/**
 * The grant's `token.exchanged` with the decisions that allowed it folded in and the risk
 * assessment as `details.risk` (as every issuance event: src/policy/issuance-audit.ts), the allows
 * that could not be folded beside it; and, once durable, the activity count and the risk signals'
 * memory (src/tokens/issue.ts `observe`).
 */
export function decidedGrantEvents(
  ctx: Context,
  event: AuditEvent,
  decision: GrantDecision,
  counted: { principal: Issuance['subject']; clientId: string; audience: string; jti: string },
): { events: AuditEvent[]; observe: () => Promise<void> } {
  const { authorized, agent } = decision;
  const withRisk: AuditEvent = {
    ...event,
    details: { ...event.details, ...(agent ? { agent } : {}), ...(authorized.risk ? { risk: riskAuditDetail(authorized.risk) } : {}) },
  };
  const recorded = foldDecisions(withRisk, authorized.allows);
  return {
    events: [...recorded.separate, recorded.event],
    observe: () => {
      ctx.risk.activity.countToken(counted.principal, counted.clientId, counted.audience);
      return observeRisk(ctx, { ...authorized.riskFacts, issued: tokenKey(counted.jti) });
    },
  };
}
