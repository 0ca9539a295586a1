import type { AgentClaim } from '../tokens/claims.ts';
import type { AuditEvent } from '../audit/events.ts';
import type { AuthorizationDetail } from '../authorization/authorization-details.ts';
import { userinfoAudience } from '../authorization/scopes.ts';
import type { Context } from '../context.ts';
import { findUser } from '../identity/users.ts';
import type { MandateVersion } from '../mandates/store.ts';
import { OAuthError } from '../oauth-error.ts';
import type { ResourceServer } from '../resource-servers/definition.ts';
import { isBuiltinResourceServer } from '../resource-servers/builtins.ts';
import { evaluateDecision, Resolutions, type Decision, type DecisionMeta } from './decide.ts';
import type { AgentContext, DecisionContext, DecisionRequest, MandateContext } from './request.ts';
import { checkResidency } from './residency.ts';
import { personTokenLeavesRegion } from '../federation/regions.ts';
import { readsContext, type CompiledPolicySet } from './engine.ts';
import { isKnown, knownUses, type Use } from './first-use.ts';
import type { StepUp } from './step-up.ts';
import { strongestAcr } from '../identity/acr.ts';
import { insufficientUserAuthentication } from '../grants/step-up.ts';
import { riskContextValue, type RiskAssessment, type SignalHit } from '../risk/assessment.ts';
import { recordRiskDenial, withRiskDetail, type RiskDenialScene } from '../risk/denial.ts';
import type { RiskFacts } from '../risk/engine.ts';
import { asksRiskStepUp, assessIssuance, issuanceRiskFacts, riskStepUpAcr } from './issuance-risk.ts';
import { refuseFrozenOrSanctioned } from '../risk/kyc/enforce.ts';
import { transferFacts, type TransferDetail } from '../transfers/detail.ts';
import { enforceTransfers, type EnforcedTransfers, type TransferRecord } from '../transfers/enforce.ts';

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
  /** The agent and its approved model version, when the client is an algorithmic agent (src/agents/authority.ts): the context's `agent`. */
  agent?: AgentClaim & { envelope?: { venues: string[]; instrument_classes: string[]; max_notional?: number; currency?: string } };
  /** The managed device the person signed in from (src/pki, a `device` profile certificate): the context's `managed_device` and `device_id`. */
  deviceId?: string;
  /** The issuer of the upstream identity provider that signed the person in (src/federation/upstream): the context's `assurance`. */
  assuranceSource?: string;
  /**
   * The signals that fired when the person signed in (src/risk: kept with the session and the
   * grant), carried into this issuance's risk assessment: a risky sign-in stays risky at refresh.
   */
  loginRisk?: readonly SignalHit[];
  /** The source address of the token request (after trusted proxies), for the risk signals. */
  address?: string;
  /** Token exchange: the subject token's subject and the new token's act chain (newest actor first), for the delegation signals. */
  delegation?: { subject: string; actors: string[] };
  /** The token presented to get this one, and whether by its holder (src/risk/signals/concurrent-networks.ts). */
  presented?: { token: string; byHolder: boolean };
  requestId: string;
  txn?: string;
  grantType: string;
}

/** The version a decision names when no operator policy set has ever been activated. */
export const baselinePolicyVersion = 'baseline';

/** An issuance the decision point allowed: its allows, and the risk assessment that informed them. */
export interface AuthorizedIssuance {
  /** The allows, for the issuance path to fold into its token event (issuance-audit.ts). */
  allows: AuditEvent[];
  /** The risk assessment (undefined: the engine is switched off), for the token event's `details.risk`. */
  risk?: RiskAssessment;
  /** What it assessed, for `observeRisk` once the token is issued. */
  riskFacts: RiskFacts;
  /** The transfers enforcement let through (src/transfers/enforce.ts), for the token event's `details.transfers`. */
  transfers?: TransferRecord[];
  /**
   * Takes back what enforcement reserved (the transfers' rolling totals, a destination's first
   * use), for the issuance path to call when it fails after this answer and before its events are
   * durable (src/tokens/issue.ts). Present only when the request carries transfers: nothing else
   * reserves anything. Never throws.
   */
  release?: EnforcedTransfers['release'];
}

/**
 * Asks the decision point about an issuance (issue 7, DESIGN §2 `policy/`), before anything is
 * signed or written:
 * 0. KYC/AML (src/risk/kyc/enforce.ts), whatever the policies: a frozen principal → invalid_grant,
 *    a counterparty the screening list names → invalid_authorization_details;
 *    then transfers (src/transfers/enforce.ts): the address book, approval thresholds, risk
 *    holds and the rolling 24-hour totals of each `transfer` entry (reserved here, released when a
 *    step below refuses the issuance; on success returned as `release`, for the issuance path to
 *    call when anything after this fails before its events are durable);
 *    then the risk engine assesses it (issue 16, issuance-risk.ts): its signals, and those the
 *    person's sign-in carried; the assessment is `context.risk` of every decision below;
 * 1. regions: a person's token for a resource server of another region than this instance's,
 *    by any grant but token exchange (whose crossing names them by a pseudonym) → invalid_target
 *    (src/federation/regions.ts personTokenLeavesRegion; docs/privacy.md "Regions");
 *    data residency: a resource server in a region the subject's legal entities do not permit →
 *    invalid_target (RFC 8707 §2: a resource the client may not have a token for);
 * 2. each scope, as an action on the resource server, and each authorization_details entry, as
 *    its actions on its instrument or account (RFC 9396 §6), with the context (resource server
 *    region, acr, the mandate's constraints, the entry's notional, venue and class, the risk);
 * 3. all or nothing: one denied scope → invalid_scope, one denied entry →
 *    invalid_authorization_details, naming the scope or entry and the determining policy ids
 *    (never the policy text). Partial grants are not made: no client can ask for one here.
 * 4. the stricter of the risk outcome and the decisions wins (AMENDMENTS "Risk, limits, KYC/AML"):
 *    a risk `deny` refuses whatever the policies permit (invalid_grant, with a `risk.denied` event
 *    and alert); a risk `step_up` of a person below a passkey sign-in is RFC 9470's
 *    insufficient_user_authentication (with any policy step-up, the stronger level); a client's
 *    `step_up` is left to policy (`context.risk.level`); a forbid is never lifted by a low score.
 * Any evaluation error denies (decide.ts). A refusal records every decision of the request, the
 * allows too, as `policy.allowed` / `policy.denied` with `details.risk` before the error is thrown
 * (or the one data residency or risk `policy.denied`). A success records nothing here: the allows
 * and the assessment are returned, and the issuance path folds them into its one `token.issued` /
 * `token.exchanged` event (issuance-audit.ts).
 * Until an operator activates a policy set, the built-in baseline applies: registration (the
 * client's allowed scopes and resource servers, already checked) decides, and the one allow has
 * policy version `baseline` — the risk assessment still refuses or steps up. A set that was
 * activated but no longer compiles denies everything (it is never replaced by the baseline).
 * Tokens for Clearance's own APIs are governed by registration, and assessed all the same.
 * `assessRisk: false` (a forecast before the token endpoint: four-eyes at /bc-authorize) decides
 * without an assessment.
 */
export async function authorizeIssuance(ctx: Context, issuance: Issuance, options: { assessRisk?: boolean } = {}): Promise<AuthorizedIssuance> {
  // KYC/AML, in code and for every audience: a frozen principal gets no token, a sanctioned counterparty no entry.
  await refuseFrozenOrSanctioned(ctx, issuance);
  const meta: DecisionMeta = {
    requestId: issuance.requestId,
    caller: issuance.clientId,
    via: issuance.grantType,
    ...(issuance.txn ? { txn: issuance.txn } : {}),
    ...(issuance.mandate ? { mandate: { id: issuance.mandate.id, v: issuance.mandate.version } } : {}),
  };
  // Transfers, in code like KYC/AML (src/transfers/enforce.ts): destination control, thresholds,
  // risk holds, the rolling totals' reservation — taken back when the issuance is refused below.
  const forecast = options.assessRisk === false;
  const transfers = await enforceTransfers(ctx, issuance, meta, { forecast });
  try {
    const authorized = await decideAuthorized(ctx, issuance, meta, options);
    if (transfers.transfers.length === 0) return authorized;
    return { ...authorized, transfers: transfers.transfers, ...(forecast ? {} : { release: transfers.release }) };
  } catch (error) {
    await transfers.release();
    throw error;
  }
}

/** authorizeIssuance after KYC/AML and transfers: the risk assessment, data residency, the decision point. */
async function decideAuthorized(ctx: Context, issuance: Issuance, meta: DecisionMeta, options: { assessRisk?: boolean }): Promise<AuthorizedIssuance> {
  const riskFacts = issuanceRiskFacts(issuance);
  // A forecast (/bc-authorize's four-eyes) decides without the assessment: it is the token endpoint's.
  const risk = options.assessRisk === false ? undefined : await assessIssuance(ctx, issuance, riskFacts);
  const authorized = (allows: AuditEvent[]): AuthorizedIssuance => ({ allows, ...(risk ? { risk } : {}), riskFacts });
  if (isClearanceOwn(ctx, issuance.audience)) {
    await enforceRisk(ctx, issuance, meta, risk, []);
    return authorized([]);
  }
  const server = await ctx.resourceServers.get(issuance.audience);
  if (!server) throw new OAuthError('invalid_target', 'the resource server no longer exists');

  // docs/privacy.md "Regions": a person's token leaves the region only as token exchange's pseudonym.
  const leaves = personTokenLeavesRegion(ctx, issuance, server);
  if (leaves !== undefined) {
    const refused = refusal(issuance, meta, 'region', leaves);
    if (risk?.outcome === 'deny') throw await refuseByRisk(ctx, issuance, meta, risk, [refused]);
    await ctx.audit.record(withRiskDetail(refused, risk));
    throw new OAuthError('invalid_target', leaves);
  }
  if (server.region !== undefined) {
    const residency = checkResidency(await ctx.entities.snapshot(), issuance.subjectLeis ?? (await subjectLeis(ctx, issuance.subject)), issuance.subject.id, server);
    if (!residency.ok) {
      const refused = refusal(issuance, meta, 'data residency', residency.reason);
      if (risk?.outcome === 'deny') throw await refuseByRisk(ctx, issuance, meta, risk, [refused]);
      await ctx.audit.record(withRiskDetail(refused, risk));
      throw new OAuthError('invalid_target', residency.reason);
    }
  }

  const active = await ctx.policies.active();
  if (!active.set && active.version === null) {
    const allow = baselineAllow(issuance, meta);
    await enforceRisk(ctx, issuance, meta, risk, [allow]);
    return authorized([allow]);
  }

  const decided = await decideIssuance(ctx, server, issuance, meta, risk);
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
    // A risk deny is the stricter refusal: it is the answer, with the policies' decisions as evidence.
    if (risk?.outcome === 'deny') throw await refuseByRisk(ctx, issuance, meta, risk, events);
    // Every decision is evidence, the allows of a refused request too.
    await Promise.all(events.map((e) => ctx.audit.record(withRiskDetail(e, risk))));
    // Refused only by step-up policies: the person authenticating again would lift it (RFC 9470),
    // at the stronger of the policies' level and the risk assessment's.
    const stepUp = combinedStepUp(decided.map((d) => d.decision));
    if (stepUp && issuance.subject.type === 'User') {
      const byRisk = asksRiskStepUp(issuance, risk);
      throw await insufficientUserAuthentication(
        ctx,
        {
          triggers: byRisk ? ['policy', 'risk'] : ['policy'],
          acr: byRisk ? strongestAcr([stepUp.acr, riskStepUpAcr])! : stepUp.acr,
          ...(stepUp.maxAge !== undefined ? { maxAge: stepUp.maxAge } : {}),
          policies: stepUp.policies,
          policyVersion: stepUp.policyVersion,
          ...(byRisk ? { risk: risk! } : {}),
        },
        stepUpScene(issuance),
      );
    }
    throw refused;
  }
  await enforceRisk(ctx, issuance, meta, risk, events);
  return authorized(events);
}

/**
 * The risk outcome of an issuance the decision point allowed: a `deny` refuses it, a `step_up` of a
 * person below a passkey sign-in asks for one (RFC 9470); anything else passes (a client's
 * `step_up` is policy's to act on, through `context.risk`). `evidence`: the allows, recorded with
 * the refusal.
 */
async function enforceRisk(ctx: Context, issuance: Issuance, meta: DecisionMeta, risk: RiskAssessment | undefined, evidence: AuditEvent[]): Promise<void> {
  if (!risk) return;
  if (risk.outcome === 'deny') throw await refuseByRisk(ctx, issuance, meta, risk, evidence);
  if (!asksRiskStepUp(issuance, risk)) return;
  await Promise.all(evidence.map((e) => ctx.audit.record(withRiskDetail(e, risk))));
  throw await insufficientUserAuthentication(ctx, { triggers: ['risk'], acr: riskStepUpAcr, risk }, stepUpScene(issuance));
}

/**
 * Refuses an issuance on the risk assessment's `deny` (whatever the policies said): records the
 * evidence, a `policy.denied` for the issuance (reason `risk`), `risk.denied` and its alert in one
 * transaction, and returns invalid_grant (RFC 6749 §5.2: the grant cannot be used now).
 */
async function refuseByRisk(ctx: Context, issuance: Issuance, meta: DecisionMeta, risk: RiskAssessment, evidence: AuditEvent[]): Promise<OAuthError> {
  const signals = risk.signals.map((s) => s.signal).join(', ');
  const scene: RiskDenialScene = {
    moment: 'issuance',
    requestId: issuance.requestId,
    ...(issuance.txn !== undefined ? { txn: issuance.txn } : {}),
    client: issuance.clientId,
    subject: issuance.subject.id,
    person: issuance.subject.type === 'User',
    audience: issuance.audience,
    scopes: issuance.scopes,
    via: issuance.grantType,
  };
  await recordRiskDenial(ctx, scene, risk, [...evidence, refusal(issuance, meta, 'risk', `score ${risk.score}: ${signals}`)]);
  return new OAuthError('invalid_grant', 'refused by the risk assessment', { detail: `risk score ${risk.score} (${signals})` });
}

function stepUpScene(issuance: Issuance): { subject: string; clientId: string; requestId: string; grantType: string; acrBefore?: string } {
  return { subject: issuance.subject.id, clientId: issuance.clientId, requestId: issuance.requestId, grantType: issuance.grantType, ...(issuance.acr !== undefined ? { acrBefore: issuance.acr } : {}) };
}

/** One decision of an issuance, and what it was about. */
interface IssuanceDecision {
  decision: Decision;
  event: AuditEvent;
  what: { kind: 'scope'; scope: string } | { kind: 'detail'; index: number; action: string; resource: string };
}

/**
 * Every decision an issuance needs (each scope, each entry's actions), evaluated, none recorded;
 * with the risk assessment as `context.risk` when there is one (the token endpoint's; the
 * authorization endpoint's and /bc-authorize's forecasts have none: a policy reading it tests
 * `context has risk`).
 */
async function decideIssuance(ctx: Context, server: ResourceServer, issuance: Issuance, meta: DecisionMeta, risk?: RiskAssessment): Promise<IssuanceDecision[]> {
  const active = await ctx.policies.active();
  const context: DecisionContext = { ...decisionContext(server, issuance, ctx.config.issuer), ...(risk ? { risk: riskContextValue(risk) } : {}) };
  const decided: IssuanceDecision[] = [];
  // The subject and resource are resolved once, for every scope and entry.
  const resolutions = new Resolutions();
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
  await authorizeIssuance(ctx, { ...issuance, approvals: maxFourEyesApprovals }, { assessRisk: false });
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

function decisionContext(server: ResourceServer, issuance: Issuance, ownIssuer: string): DecisionContext {
  return {
    ...(server.region !== undefined ? { region: server.region } : {}),
    ...(issuance.acr !== undefined ? { acr: issuance.acr } : {}),
    ...(issuance.authTime !== undefined ? { auth_time: issuance.authTime } : {}),
    ...(issuance.mandate ? { mandate: mandateContext(issuance.mandate) } : {}),
    // Only a person's token issued under their verified passkey approval of these entries.
    ...(issuance.approved ? { approved: true } : {}),
    ...(issuance.approvals !== undefined ? { approvals: issuance.approvals } : {}),
    // Only an agent's token, issued with a certificate attested for an approved model version.
    ...(issuance.deviceId !== undefined ? { managed_device: true, device_id: issuance.deviceId } : issuance.subject.type === 'User' ? { managed_device: false } : {}),
    // Who authenticated the person: an upstream identity provider (src/federation/upstream), else Clearance itself.
    ...(issuance.subject.type === 'User' ? { assurance: { source: issuance.assuranceSource ?? ownIssuer, federated: issuance.assuranceSource !== undefined } } : {}),
    ...(issuance.agent ? { agent: agentContext(issuance.agent) } : {}),
  };
}

/** The schema's AgentModel record: the agent, its approved model version and its trading envelope. */
function agentContext(agent: NonNullable<Issuance['agent']>): AgentContext {
  const envelope = agent.envelope;
  return {
    id: agent.id,
    strategy: agent.strategy,
    environment: agent.environment,
    model_version: agent.model_version,
    model_digest: agent.model_digest,
    model_approved: true,
    venues: envelope?.venues ?? [],
    instrument_classes: envelope?.instrument_classes ?? [],
    ...(envelope?.max_notional !== undefined ? { max_notional: envelope.max_notional, envelope_currency: envelope.currency! } : {}),
  };
}

/** The Mandate record of the policy schema: the version's constraints, amounts in whole units. */
export function mandateContext(version: MandateVersion): MandateContext {
  const c = version.terms.constraints;
  return {
    id: version.id,
    version: version.version,
    scopes: version.terms.scopes,
    ...(c.instrument_classes ? { instrument_classes: c.instrument_classes } : {}),
    ...(c.venues ? { venues: c.venues } : {}),
    ...(c.regions ? { regions: c.regions } : {}),
    ...(c.max_notional ? { max_notional: limitUnits(c.max_notional.amount), currency: c.max_notional.currency } : {}),
  };
}

/**
 * Cedar has integers only: a requested amount (an order's notional, a settlement's or transfer's
 * amount) is compared with thresholds and limits in whole units, rounded UP — 30,000,000.99 is
 * above 30,000,000, never equal to it (as transfers count micro-units: src/transfers/amounts.ts
 * `parseAmount(…, 'up')`). A decimal string is rounded from its digits, not through a float
 * (30000000.0000000001 is above 30000000 too). An amount Cedar cannot hold is the largest it can,
 * so a limit check never passes by overflow (nor one that is no number).
 */
export function wholeUnits(amount: string | number): number {
  const text = typeof amount === 'string' ? amount.trim() : undefined;
  const digits = text !== undefined ? /^(\d+)(?:\.(\d*))?$/.exec(text) : null;
  const value = digits ? Number(digits[1]) + (/[1-9]/.test(digits[2] ?? '') ? 1 : 0) : Math.ceil(Number(amount));
  return Number.isSafeInteger(value) ? value : Number.MAX_SAFE_INTEGER;
}

/**
 * A limit (a mandate's max_notional) in whole units, rounded DOWN: a limit never grows. A limit
 * Cedar cannot hold is the largest it can.
 */
export function limitUnits(amount: string | number): number {
  const value = Math.floor(Number(amount));
  return Number.isSafeInteger(value) ? value : Number.MAX_SAFE_INTEGER;
}

/**
 * The decisions an authorization_details entry needs: each of its actions (RFC 9396 `actions`,
 * the type's default when absent) as a business-verb scope on the entry's instrument or account,
 * with the entry's limits in the context.
 */
export function detailRequests(principal: Issuance['subject'], detail: AuthorizationDetail, base: DecisionContext): DecisionRequest[] {
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
  if (detail.type === 'transfer') {
    // One decision per action, on the source account, with every field in the context (docs/transfers.md).
    const transfer = detail as unknown as TransferDetail;
    const { transfer_type, ...facts } = transferFacts(transfer);
    const amount = wholeUnits(transfer.amount);
    const context: DecisionContext = { ...base, transfer_type, ...facts, amount, notional: amount };
    return (transfer.actions ?? ['initiate']).map(() => ({ principal, action: `transfer:${transfer_type}`, resource: { type: 'Account', id: transfer.source_account }, context }));
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
  return issuanceEventOf(decision.allow ? 'policy.allowed' : 'policy.denied', issuance, meta, decision, details);
}

/** An event about an issuance, by type: who asked, about whom, for which audience and scopes, under which txn and mandate. */
export function issuanceEventOf(type: AuditEvent['type'], issuance: Issuance, meta: DecisionMeta, decision: NonNullable<AuditEvent['decision']>, details: Record<string, unknown>): AuditEvent {
  return {
    type,
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
