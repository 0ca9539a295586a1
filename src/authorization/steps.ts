import type { Client } from '../clients/store.ts';
import type { Context } from '../context.ts';
import type { ResourceServer } from '../resource-servers/definition.ts';
import { describeAuthorizationDetails } from './authorization-details.ts';
import { grantCovers, mandateLine, type ConsentGrant } from './consent.ts';
import type { Authentication, ConsentRequest, NextStep } from './contract.ts';
import type { AuthorizationRequest } from './request.ts';
import { acrSatisfies, strongestAcr, type Acr } from '../identity/acr.ts';
import { voluntaryAcr } from './acr-request.ts';
import { describeOidcScope, describeScope } from './scopes.ts';
import { entriesToApprove } from '../jose/approval-digest.ts';

/** What is known when deciding what an authorization request still needs. */
export interface StepInput {
  request: AuthorizationRequest;
  /** The person: authenticated during this interaction, or by their session. */
  authentication: Authentication | undefined;
  /** True when `authentication` was recorded during this interaction (a login just happened). */
  freshLogin: boolean;
  /**
   * What the person's authentication must meet whatever happens (requirements.ts): an essential
   * `acr` claim, their roles' minimum, a step-up policy. Never waived, not even after a login in
   * this interaction.
   */
  required?: Requirement;
  /** The person's active grant to the client, if any. */
  grant: ConsentGrant | undefined;
  /** True when the person approved this request during this interaction (and that grant is `grant`). */
  approvedHere: boolean;
  /**
   * What-you-see-is-what-you-sign (src/approvals): policy asks the person to approve the request's
   * order entries with a passkey (`required`), and whether they did during this interaction.
   */
  approval?: { required: boolean; given: boolean };
  /** Now, epoch seconds. */
  now: number;
}

/** A level and a freshness the person's authentication must meet. */
export interface Requirement {
  acr?: Acr;
  /** Seconds: the authentication must be at most this old. */
  maxAge?: number;
}

export type LoginReason = 'no_session' | 'prompt_login' | 'max_age' | 'acr';
export type Need = { step: 'login'; reason: LoginReason; acr?: Acr; voluntary?: true; maxAge?: number } | { step: 'consent'; approval?: true } | { step: 'done' };

/**
 * The rules, in order (OIDC Core §3.1.2.1, §3.1.2.3, §3.1.2.4, §5.5.1.1):
 * 1. no person → login;
 * 2. unless the person logged in during this interaction: `prompt=login` → login; the session's
 *    auth_time older than `max_age` (or max_age=0) → login; the session's acr below the level
 *    `acr_values` asks (the weakest value Clearance knows: requirements.ts) → login (a step-up).
 *    After a login in this interaction acr_values are voluntary (§3.1.2.1: "requested as a
 *    Voluntary Claim"), and the ID token tells the client what was achieved;
 * 3. whether or not the person just logged in: an authentication below the required level (`required`:
 *    an essential acr claim, §5.5.1.1; the person's role minimum; a step-up policy) or older than
 *    its max_age → login again at that level (reason `acr` or `max_age`);
 * 4. policy asks the person to approve the request's order entries with a passkey and they have not
 *    during this interaction → consent, with the approval (a remembered grant never stands in for
 *    it: each order is approved for itself);
 * 5. unless approved during this interaction: `prompt=consent`, or a grant that does not cover the
 *    request (its scopes, authorization_details, or the mandate it names) → consent;
 * 6. done.
 * A login step names the level the sign-in must reach (`acr`) when one is asked, so the people
 * side offers the factors that reach it, and says `voluntary` when that level is more than any
 * requirement asks (only `acr_values` asked it): a weaker sign-in then goes on at what it reached.
 * It names the requirement's max age (`maxAge`) when one is asked, so a sign-in through an
 * upstream identity provider asks the upstream for it too (src/endpoints/interaction/upstream.ts).
 */
export function needs(input: StepInput): Need {
  const { request, authentication: auth, required = {} } = input;
  const voluntary = voluntaryAcr(request);
  const target = strongestAcr([voluntary, required.acr]);
  // OIDC Core §3.1.2.1: acr_values are a voluntary claim; only a requirement is never waived.
  const preference = target !== undefined && (required.acr === undefined || !acrSatisfies(required.acr, target));
  const maxAge = required.maxAge !== undefined ? { maxAge: required.maxAge } : {};
  const login = (reason: LoginReason): Need =>
    target === undefined ? { step: 'login', reason, ...maxAge } : preference ? { step: 'login', reason, acr: target, voluntary: true, ...maxAge } : { step: 'login', reason, acr: target, ...maxAge };
  if (!auth) return login('no_session');
  if (!input.freshLogin) {
    if (request.prompt.includes('login')) return login('prompt_login');
    if (request.maxAge !== undefined && (request.maxAge === 0 || input.now - auth.authTime > request.maxAge)) return login('max_age');
    if (voluntary !== undefined && !acrSatisfies(auth.acr, voluntary)) return login('acr');
  }
  if (required.acr !== undefined && !acrSatisfies(auth.acr, required.acr)) return { step: 'login', reason: 'acr', acr: required.acr, ...maxAge };
  if (required.maxAge !== undefined && input.now - auth.authTime > required.maxAge) return login('max_age');
  if (input.approval?.required && !input.approval.given) return { step: 'consent', approval: true };
  if (!input.approvedHere && (request.prompt.includes('consent') || !grantCovers(input.grant, request))) return { step: 'consent' };
  return { step: 'done' };
}

/** What the consent page shows for a request, in plain language (contract.ts ConsentRequest). */
export async function consentRequest(ctx: Pick<Context, 'resourceServers'>, client: Client | undefined, request: AuthorizationRequest): Promise<ConsentRequest> {
  const clientName = client?.metadata.client_name ?? request.clientId;
  const resources: ConsentRequest['resources'] = [];
  const lines: string[] = [];
  for (const scope of request.oidcScopes) lines.push(describeOidcScope(scope, clientName));
  if (request.resource !== undefined) {
    const server: ResourceServer | undefined = await ctx.resourceServers.get(request.resource);
    const name = server?.name ?? request.resource;
    resources.push({ identifier: request.resource, name, scopes: request.scopes });
    for (const scope of request.scopes) lines.push(describeScope(scope, name));
  }
  lines.push(...describeAuthorizationDetails(request.authorizationDetails));
  if (request.mandate !== undefined) lines.push(mandateLine(request.mandate));
  return { clientId: request.clientId, clientName, resources, authorizationDetails: request.authorizationDetails, lines };
}

/** The contract's NextStep for a Need. */
export async function toNextStep(ctx: Pick<Context, 'resourceServers' | 'clients'>, need: Need, request: AuthorizationRequest): Promise<NextStep> {
  if (need.step !== 'consent') return need;
  const consent = await consentRequest(ctx, await ctx.clients.get(request.clientId), request);
  if (!need.approval) return { step: 'consent', consent };
  // Exactly the entries the passkey signs over, each in plain words (what the person sees is what they sign).
  const entries = entriesToApprove(request.authorizationDetails as Record<string, unknown>[]);
  return { step: 'consent', consent: { ...consent, approval: { entries, lines: describeAuthorizationDetails(entries as never) } } };
}
