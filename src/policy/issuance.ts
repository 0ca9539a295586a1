import type { AuditEvent } from '../audit/events.ts';
import type { AuthorizationDetail } from '../authorization/authorization-details.ts';
import { userinfoAudience } from '../authorization/scopes.ts';
import type { Context } from '../context.ts';
import { findUser } from '../identity/users.ts';
import type { MandateVersion } from '../mandates/store.ts';
import { OAuthError } from '../oauth-error.ts';
import type { ResourceServer } from '../resource-servers/definition.ts';
import { isBuiltinResourceServer } from '../resource-servers/builtins.ts';
import { evaluateDecision, type Decision, type DecisionMeta, type Resolutions } from './decide.ts';
import type { DecisionContext, DecisionRequest, MandateContext } from './request.ts';
import { checkResidency } from './residency.ts';
import { readsContext, type CompiledPolicySet } from './engine.ts';
import { isKnown, knownUses, type Use } from './first-use.ts';
import type { StepUp } from './step-up.ts';
import { strongestAcr } from '../identity/acr.ts';
import { insufficientUserAuthentication } from '../grants/step-up.ts';
import type { SignalHit } from '../risk/assessment.ts';

/** What a grant is about to issue, as the decision point sees it. */
export interface Issuance {
  /** Whom the token is about: a person by user id, or a client by client_id (an Agent when registered as one). */
  subject: { type: 'User' | 'Client'; id: string };
  /**
   * The legal entities the subject belongs to, for data residency. Omitted: read from Clearance's
   * records (a person's desks' firms, a client's owner). A partner's subject brings its mapped LEI.
   */
  subjectLeis?: string[];
  /** The client the token is issued to. */
  clientId: string;
  /** The token's audience: a resource server (Clearance's own built-ins are governed by registration alone). */
  audience: string;
  scopes: readonly string[];
  authorizationDetails: readonly AuthorizationDetail[];
  /** The person's authentication context class, for step-up policies. */
  acr?: string;
  /** When the person authenticated (epoch seconds), for step-up policies' auth_age. */
  authTime?: number;
  /**
   * The token carries the person's verified passkey approval of exactly the request's order and
   * settlement_instruction entries (src/approvals): the context's `approved`, which lifts
   * `@approval` forbids.
   */
  approved?: boolean;
  /**
   * How many second persons approved the request the token is issued for (four-eyes, the token's
   * `approvals` claim): the context's `approvals`, which `@approval("four-eyes")` forbids compare.
   */
  approvals?: number;
  /** The mandate version the token is issued under. */
  mandate?: MandateVersion;
  /**
   * The signals that fired when the person signed in (src/risk: kept with the session and the
   * grant), carried into this issuance's risk assessment: a risky sign-in stays risky at refresh.
   */
  loginRisk?: readonly SignalHit[];
  /** The source address of the token request (after trusted proxies), for the risk signals. */
  address?: string;
  requestId: string;
  txn?: string;
  grantType: string;
}

/** The version a decision names when no operator policy set has ever been activated. */
export const baselinePolicyVersion = 'baseline';

/**
 * Asks the decision point about an issuance (issue 7, DESIGN §2 `policy/`), before anything is
 * signed or written:
 * 1. data residency: a resource server in a region the subject's legal entities do not permit →
 *    invalid_target (RFC 8707 §2: a resource the client may not have a token for);
 * 2. each scope, as an action on the resource server, and each authorization_details entry, as
 *    its actions on its instrument or account (RFC 9396 §6), with the context (resource server
 *    region, acr, the mandate's constraints, the entry's notional, venue and class);
 * 3. all or nothing: one denied scope → invalid_scope, one denied entry →
 *    invalid_authorization_details, naming the scope or entry and the determining policy ids
 *    (never the policy text). Partial grants are not made: no client can ask for one here.
 * Any evaluation error denies (decide.ts). A refusal records every decision of the request, the
 * allows too, as `policy.allowed` / `policy.denied` before the error is thrown (or the one data
 * residency `policy.denied`). A success records nothing here: the allows are returned, and the
 * issuance path folds them into its one `token.issued` / `token.exchanged` event
 * (issuance-audit.ts).
 * Until an operator activates a policy set, the built-in baseline applies: registration (the
 * client's allowed scopes and resource servers, already checked) decides, and the one allow has
 * policy version `baseline`. A set that was activated but no longer compiles denies everything
 * (it is never replaced by the baseline).
 */
export async function authorizeIssuance(ctx: Context, issuance: Issuance): Promise<AuditEvent[]> {
  if (isClearanceOwn(ctx, issuance.audience)) return [];
  const server = await ctx.resourceServers.get(issuance.audience);
  if (!server) throw new OAuthError('invalid_target', 'the resource server no longer exists');
  const meta: DecisionMeta = {
    requestId: issuance.requestId,
    caller: issuance.clientId,
    via: issuance.grantType,
    ...(issuance.txn ? { txn: issuance.txn } : {}),
    ...(issuance.mandate ? { mandate: { id: issuance.mandate.id, v: issuance.mandate.version } } : {}),
  };

  if (server.region !== undefined) {
    const residency = checkResidency(await ctx.entities.snapshot(), issuance.subjectLeis ?? (await subjectLeis(ctx, issuance.subject)), issuance.subject.id, server);
    if (!residency.ok) {
      await ctx.audit.record(refusal(issuance, meta, 'data residency', residency.reason));
      throw new OAuthError('invalid_target', residency.reason);
    }
  }

  const active = await ctx.policies.active();
  if (!active.set && active.version === null) return [baselineAllow(issuance, meta)];

  const decided = await decideIssuance(ctx, server, issuance, meta);
  let refused: OAuthError | undefined;
  for (const { decision, what } of decided) {
    if (decision.allow) continue;
    refused ??=
      what.kind === 'scope'
        ? new OAuthError('invalid_scope', `${what.scope} is refused by policy: ${why(decision)}`, { detail: decision.errors.join('; ') })
        : new OAuthError('invalid_authorization_details', `authorization_details[${what.index}] (${what.action} on ${what.resource}) is refused by policy: ${why(decision)}`, { detail: decision.errors.join('; ') });
  }
  const events = decided.map((d) => d.event);
  if (refused) {
    // Every decision is evidence, the allows of a refused request too.
    await Promise.all(events.map((e) => ctx.audit.record(e)));
    // Refused only by step-up policies: the person authenticating again would lift it (RFC 9470).
    const stepUp = combinedStepUp(decided.map((d) => d.decision));
    if (stepUp && issuance.subject.type === 'User') {
      throw await insufficientUserAuthentication(
        ctx,
        { triggers: ['policy'], acr: stepUp.acr, ...(stepUp.maxAge !== undefined ? { maxAge: stepUp.maxAge } : {}), policies: stepUp.policies, policyVersion: stepUp.policyVersion },
        { subject: issuance.subject.id, clientId: issuance.clientId, requestId: issuance.requestId, grantType: issuance.grantType, ...(issuance.acr !== undefined ? { acrBefore: issuance.acr } : {}) },
      );
    }
    throw refused;
  }
  return events;
}

/** One decision of an issuance, and what it was about. */
interface IssuanceDecision {
  decision: Decision;
  event: AuditEvent;
  what: { kind: 'scope'; scope: string } | { kind: 'detail'; index: number; action: string; resource: string };
}

/** Every decision an issuance needs (each scope, each entry's actions), evaluated, none recorded. */
async function decideIssuance(ctx: Context, server: ResourceServer, issuance: Issuance, meta: DecisionMeta): Promise<IssuanceDecision[]> {
  const active = await ctx.policies.active();
  const context = decisionContext(server, issuance);
  const decided: IssuanceDecision[] = [];
  // The subject and resource are resolved once, for every scope and entry.
  const resolutions: Resolutions = new Map();
  for (const scope of issuance.scopes) {
    const { decision, event } = await evaluateDecision(ctx, { principal: issuance.subject, action: scope, resource: { type: 'ResourceServer', id: server.identifier }, context }, meta, resolutions);
    decided.push({ decision, event, what: { kind: 'scope', scope } });
  }
  const entries = issuance.authorizationDetails.flatMap((detail, index) => detailRequests(issuance.subject, detail, context).map((request) => ({ index, request })));
  // Whether each entry's class or account is new for the person: one read for them all (first-use.ts).
  if (issuance.subject.type === 'User' && active.set && entries.length > 0) await markFirstUses(ctx, active.set, issuance.subject.id, entries.map((e) => e.request));
  for (const { index, request } of entries) {
    const { decision, event } = await evaluateDecision(ctx, request, meta, resolutions);
    decided.push({ decision, event, what: { kind: 'detail', index, action: request.action, resource: request.resource.id } });
  }
  return decided;
}

/** A step-up and the version of the set that asked it. */
export type IssuanceStepUp = StepUp & { policyVersion: string };

/**
 * The step-up that all the denials of some decisions ask together — the strongest level, the
 * shortest max age — or undefined when any denial is a plain one (or nothing was denied).
 */
function combinedStepUp(decisions: readonly Decision[]): IssuanceStepUp | undefined {
  const denied = decisions.filter((d) => !d.allow);
  if (denied.length === 0 || denied.some((d) => !d.stepUp)) return undefined;
  const asks = denied.map((d) => d.stepUp!);
  const ages = asks.flatMap((a) => (a.maxAge !== undefined ? [a.maxAge] : []));
  return {
    acr: strongestAcr(asks.map((a) => a.acr))!,
    ...(ages.length > 0 ? { maxAge: Math.min(...ages) } : {}),
    policies: [...new Set(asks.flatMap((a) => a.policies))],
    policyVersion: denied[0]!.policyVersion,
  };
}

/** The approval forbids (`@approval`) that asked an approval, and the version of their set. */
export interface IssuanceApproval {
  policies: string[];
  policyVersion: string;
}

/**
 * The approval that all the denials of some decisions ask together — every denial lifted by an
 * approval (with any step-up beside it), at least one by an approval — or undefined.
 */
function combinedApproval(decisions: readonly Decision[]): IssuanceApproval | undefined {
  const denied = decisions.filter((d) => !d.allow);
  if (denied.length === 0 || denied.some((d) => !d.approval && !d.stepUp)) return undefined;
  const policies = [...new Set(denied.flatMap((d) => d.approval?.policies ?? []))];
  return policies.length > 0 ? { policies, policyVersion: denied[0]!.policyVersion } : undefined;
}

/**
 * At the authorization endpoint, before a code is issued: what the token endpoint's decisions would
 * ask of the person for this issuance (src/authorization/requirements.ts), so they do it while
 * they are at the browser — the step-up (sign in at that level) and, with `approval`, the passkey
 * approval of the request's order and settlement_instruction entries (`@approval` forbids,
 * step-up.ts). One evaluation for both. Nothing is recorded (the decisions are the token
 * endpoint's to make and record). Each is undefined when not asked, when some denial is a plain
 * one (the token endpoint refuses it anyway), or when the active set has no policies of its kind
 * (nothing is evaluated when it has neither).
 */
export async function issuanceAsks(ctx: Context, issuance: Issuance, options: { approval: boolean }): Promise<{ stepUp?: IssuanceStepUp; approval?: IssuanceApproval }> {
  if (isClearanceOwn(ctx, issuance.audience)) return {};
  const active = await ctx.policies.active();
  if (!active.set) return {};
  const approval = options.approval && issuance.subject.type === 'User' && active.set.approvals.size > 0;
  if (active.set.stepUps.size === 0 && !approval) return {};
  const server = await ctx.resourceServers.get(issuance.audience);
  if (!server) return {};
  const meta: DecisionMeta = { requestId: issuance.requestId, caller: issuance.clientId, via: issuance.grantType };
  const decisions = (await decideIssuance(ctx, server, { ...issuance, approved: false }, meta)).map((d) => d.decision);
  const stepUp = combinedStepUp(decisions);
  const approved = approval ? combinedApproval(decisions) : undefined;
  return { ...(stepUp ? { stepUp } : {}), ...(approved ? { approval: approved } : {}) };
}

/** Most second persons a four-eyes policy may ask for one request. */
export const maxFourEyesApprovals = 3;

/**
 * Four-eyes (src/approvals/four-eyes.ts): how many second persons' approvals the token of a
 * decoupled (CIBA) request needs before the decision point allows it — the fewest, from 0 to
 * `maxFourEyesApprovals`, with which every decision of the issuance allows, the request otherwise
 * decided as it will be at the token endpoint after the person approved on their device (`acr`,
 * `authTime`, `approved` as given). It keeps asking only while every denial is determined by
 * `@approval("four-eyes")` forbids alone; any other denial (another forbid, no permit, an error)
 * is the issuance's own refusal, recorded and thrown as at the token endpoint, so nobody is asked
 * to approve what could never be issued. Nothing is recorded when it answers.
 */
export async function fourEyesApprovalsNeeded(ctx: Context, issuance: Issuance): Promise<{ approvals: number; policies: string[] }> {
  const none = { approvals: 0, policies: [] };
  if (isClearanceOwn(ctx, issuance.audience)) return none;
  const active = await ctx.policies.active();
  const set = active.set;
  if (!set || set.fourEyes.size === 0) return none;
  const server = await ctx.resourceServers.get(issuance.audience);
  if (!server) return none;
  const meta: DecisionMeta = { requestId: issuance.requestId, caller: issuance.clientId, via: issuance.grantType };
  // Every four-eyes forbid that fired on the way: the policies that ask for the approvals.
  const asking = new Set<string>();
  for (let approvals = 0; approvals <= maxFourEyesApprovals; approvals++) {
    const denied = (await decideIssuance(ctx, server, { ...issuance, approvals }, meta)).map((d) => d.decision).filter((d) => !d.allow);
    if (denied.length === 0) return { approvals, policies: [...asking].sort() };
    const onlyFourEyes = denied.every((d) => d.errors.length === 0 && d.reasons.length > 0 && d.reasons.every((id) => set.fourEyes.has(id)));
    if (!onlyFourEyes) break;
    for (const d of denied) d.reasons.forEach((id) => asking.add(id));
  }
  // Refused whatever the approvals: the token endpoint's refusal, recorded and thrown now.
  await authorizeIssuance(ctx, { ...issuance, approvals: maxFourEyesApprovals });
  return { approvals: maxFourEyesApprovals, policies: [...asking].sort() };
}

/** Sets each request's `new_instrument_class` / `new_settlement_account`, when the set reads them. */
async function markFirstUses(ctx: Context, set: CompiledPolicySet, userId: string, requests: DecisionRequest[]): Promise<void> {
  const use = (request: DecisionRequest): Use | undefined => {
    if (request.resource.type === 'Instrument' && request.resource.instrument_class !== undefined && readsContext(set, 'new_instrument_class')) {
      return { kind: 'instrument_class', value: request.resource.instrument_class };
    }
    if (request.resource.type === 'Account' && readsContext(set, 'new_settlement_account')) return { kind: 'settlement_account', value: request.resource.id };
    return undefined;
  };
  const uses = requests.flatMap((r) => use(r) ?? []);
  if (uses.length === 0) return;
  const known = await knownUses(ctx, userId, uses);
  for (const request of requests) {
    const u = use(request);
    if (!u) continue;
    request.context = { ...request.context, [u.kind === 'instrument_class' ? 'new_instrument_class' : 'new_settlement_account']: !isKnown(known, u) };
  }
}

/**
 * The uses a token for a person records in the first-use history (first-use.ts): the instrument
 * class of each `order` entry, the account of each `settlement_instruction` entry.
 */
export function usesOf(details: readonly AuthorizationDetail[]): Use[] {
  return details.flatMap((detail): Use[] => {
    const instrument = detail.instrument as { class?: unknown } | undefined;
    if (detail.type === 'order' && typeof instrument?.class === 'string') return [{ kind: 'instrument_class', value: instrument.class }];
    if (detail.type === 'settlement_instruction' && typeof detail.account === 'string') return [{ kind: 'settlement_account', value: detail.account }];
    return [];
  });
}

/** The determining constraint, as the error names it: the policy ids, never their text. */
function why(decision: Decision): string {
  if (decision.errors.length > 0) return 'the request could not be evaluated, so it is denied (fail closed)';
  if (decision.reasons.length > 0) return decision.reasons.join(', ');
  return 'no policy permits it';
}

/** Clearance's own resource servers (admin API, AuthZEN API, userinfo) are governed by registration. */
function isClearanceOwn(ctx: Context, audience: string): boolean {
  if (audience === userinfoAudience(ctx.config.issuer)) return true;
  return isBuiltinResourceServer(ctx.config.issuer, audience);
}

async function subjectLeis(ctx: Context, subject: Issuance['subject']): Promise<string[]> {
  if (subject.type === 'User') {
    const user = await findUser(ctx, subject.id);
    if (!user) return [];
    const snapshot = await ctx.entities.snapshot();
    return [...new Set(user.desks.flatMap((d) => snapshot.desks.get(d)?.lei ?? []))];
  }
  const client = await ctx.clients.get(subject.id);
  return client?.metadata.owner_lei ? [client.metadata.owner_lei] : [];
}

function decisionContext(server: ResourceServer, issuance: Issuance): DecisionContext {
  return {
    ...(server.region !== undefined ? { region: server.region } : {}),
    ...(issuance.acr !== undefined ? { acr: issuance.acr } : {}),
    ...(issuance.authTime !== undefined ? { auth_time: issuance.authTime } : {}),
    ...(issuance.mandate ? { mandate: mandateContext(issuance.mandate) } : {}),
    // Only a person's token issued under their verified passkey approval of these entries.
    ...(issuance.approved ? { approved: true } : {}),
    ...(issuance.approvals !== undefined ? { approvals: issuance.approvals } : {}),
  };
}

/** The Mandate record of the policy schema: the version's constraints, amounts in whole units. */
function mandateContext(version: MandateVersion): MandateContext {
  const c = version.terms.constraints;
  return {
    id: version.id,
    version: version.version,
    scopes: version.terms.scopes,
    ...(c.instrument_classes ? { instrument_classes: c.instrument_classes } : {}),
    ...(c.venues ? { venues: c.venues } : {}),
    ...(c.regions ? { regions: c.regions } : {}),
    ...(c.max_notional ? { max_notional: wholeUnits(c.max_notional.amount), currency: c.max_notional.currency } : {}),
  };
}

/**
 * Cedar has integers only: amounts are compared in whole units, rounded down (a limit never grows);
 * an amount Cedar cannot hold is the largest it can, so a limit check never passes by overflow.
 */
export function wholeUnits(amount: string | number): number {
  const value = Math.floor(Number(amount));
  return Number.isSafeInteger(value) ? value : Number.MAX_SAFE_INTEGER;
}

/**
 * The decisions an authorization_details entry needs: each of its actions (RFC 9396 `actions`,
 * the type's default when absent) as a business-verb scope on the entry's instrument or account,
 * with the entry's limits in the context.
 */
function detailRequests(principal: Issuance['subject'], detail: AuthorizationDetail, base: DecisionContext): DecisionRequest[] {
  const instrument = detail.instrument as { class: string; symbol: string } | undefined;
  if (detail.type === 'order' && instrument) {
    const limit = detail.max_notional as { amount: string | number; currency: string };
    const actions = (detail.actions as string[] | undefined) ?? ['create'];
    const context: DecisionContext = { ...base, instrument_class: instrument.class, venue: detail.venue as string, notional: wholeUnits(limit.amount), currency: limit.currency };
    return actions.map((a) => ({ principal, action: `order:${a}`, resource: { type: 'Instrument', id: instrument.symbol, instrument_class: instrument.class, venue: detail.venue as string }, context }));
  }
  if (detail.type === 'settlement_instruction') {
    const limit = detail.max_amount as { amount: string | number; currency: string };
    const actions = (detail.actions as string[] | undefined) ?? ['submit'];
    const context: DecisionContext = { ...base, notional: wholeUnits(limit.amount), currency: limit.currency, ...(instrument ? { instrument_class: instrument.class } : {}) };
    return actions.map((a) => ({ principal, action: `settlement:${a}`, resource: { type: 'Account', id: detail.account as string }, context }));
  }
  // A registered type without a mapping would go undecided: refuse it rather than let it through.
  return [{ principal, action: `${detail.type}:unmapped`, resource: { type: 'ResourceServer', id: detail.type }, context: base }];
}

function baselineAllow(issuance: Issuance, meta: DecisionMeta): AuditEvent {
  const details = { via: issuance.grantType, ...(issuance.authorizationDetails.length ? { authorization_details: issuance.authorizationDetails.length } : {}) };
  return issuanceEvent(issuance, meta, { allow: true, reasons: ['baseline: no policy set is active, registration decides'], policyVersion: baselinePolicyVersion }, details);
}

function refusal(issuance: Issuance, meta: DecisionMeta, reason: string, detail: string): AuditEvent {
  return issuanceEvent(issuance, meta, { allow: false, reasons: [reason] }, { via: issuance.grantType, constraint: detail });
}

/** A decision about a whole issuance that no policy evaluated (the baseline, data residency). */
function issuanceEvent(issuance: Issuance, meta: DecisionMeta, decision: NonNullable<AuditEvent['decision']>, details: Record<string, unknown>): AuditEvent {
  return {
    type: decision.allow ? 'policy.allowed' : 'policy.denied',
    requestId: issuance.requestId,
    ...(meta.txn ? { txn: meta.txn } : {}),
    actor: issuance.clientId,
    client: issuance.clientId,
    subject: issuance.subject.id,
    audience: issuance.audience,
    scopes: [...issuance.scopes],
    ...(meta.mandate ? { mandate: meta.mandate } : {}),
    decision,
    details,
  };
}
