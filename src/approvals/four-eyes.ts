import type { CedarValueJson } from '@cedar-policy/cedar-wasm/nodejs';
import type { AuthorizationDetail } from '../authorization/authorization-details.ts';
import { epochSeconds } from '../clock.ts';
import type { Context } from '../context.ts';
import { acr } from '../identity/acr.ts';
import { findUser } from '../identity/users.ts';
import { entriesToApprove } from '../jose/approval-digest.ts';
import { evaluateBuilt } from '../policy/decide.ts';
import { approveAction, type CedarEntity } from '../policy/engine.ts';
import { fourEyesApprovalsNeeded, wholeUnits, type Issuance } from '../policy/issuance.ts';
import { microDecimals, parseAmount } from '../transfers/amounts.ts';
import { transferFacts, type TransferDetail } from '../transfers/detail.ts';
import { transferApprovalsNeeded } from '../transfers/enforce.ts';
import { addUser, uidText, type DecisionRequest } from '../policy/request.ts';
import { withDerivedAuthentication } from '../policy/step-up.ts';
import type { Approver } from './independence.ts';
import type { ApprovalDecision, ApprovalRequest, ApproverProof } from './requests.ts';

/**
 * Four-eyes rules as policy (docs/approvals.md "Four-eyes policies"): Cedar decides how many second
 * persons a token's request needs, and who may be one; src/approvals/independence.ts decides, in
 * code, who never may.
 */

/** What a token request needs before it may be issued. */
export interface FourEyesRequirement {
  /** Second persons' approvals needed (0: none). */
  approvals: number;
  /** The `@approval("four-eyes")` policies that ask for them. */
  policies: string[];
}

/** What is asked: the token a CIBA request would issue. */
export interface FourEyesQuestion {
  /** The person the token is for. */
  userId: string;
  clientId: string;
  /** The audience (resource server identifier) and scopes. */
  audience: string;
  scopes: string[];
  authorizationDetails: Record<string, unknown>[];
  requestId?: string;
}

/**
 * How many second persons' approvals the active policy set asks before this token may be issued
 * (src/policy/issuance.ts `fourEyesApprovalsNeeded`): the token is decided as the CIBA grant will
 * issue it once the person approved on their own device with a passkey — so at the strongest level
 * they could reach, just authenticated, with the order entries approved. A request no number of
 * approvals would let through is refused now, with the token endpoint's error (invalid_scope,
 * invalid_authorization_details, …), its decisions recorded.
 */
export async function fourEyesRequirement(ctx: Context, question: FourEyesQuestion): Promise<FourEyesRequirement> {
  const details = question.authorizationDetails as AuthorizationDetail[];
  const issuance: Issuance = {
    subject: { type: 'User', id: question.userId },
    clientId: question.clientId,
    audience: question.audience,
    scopes: question.scopes,
    authorizationDetails: details,
    acr: acr.phishingResistantHardware,
    authTime: epochSeconds(ctx.clock),
    ...(entriesToApprove(details).length > 0 ? { approved: true } : {}),
    requestId: question.requestId ?? 'ciba',
    grantType: 'urn:openid:params:grant-type:ciba',
  };
  // Transfers first, as at the token endpoint: one at or above its threshold (or in its first-use
  // hold) needs a second person whatever the policies say (src/transfers/enforce.ts).
  const transfers = await transferApprovalsNeeded(ctx, issuance);
  const policies = await fourEyesApprovalsNeeded(ctx, issuance);
  if (transfers.approvals <= policies.approvals) return policies;
  return { approvals: transfers.approvals, policies: [...new Set([...policies.policies, ...transfers.policies])].sort() };
}

/**
 * Whether `approver` may approve a request (kind `ciba`) as a second person: the active policy set
 * decides `Action::"approve"` with the approver as principal and the person the token is for as
 * resource (both with their roles, desks, supervised desks and approval limit), the approver's
 * proof as the authentication in the context (`acr`, `auth_time`), once per order, settlement or
 * transfer entry of the request (its amount: see entryContexts) or once when it has none. Every
 * decision must allow, by a permit that names the approve action itself (a broad permit never makes
 * anyone an approver). Fail closed: no active set, an unknown or inactive person, an entry whose
 * amount cannot be read, any error — refused. Each decision is recorded (`policy.allowed` /
 * `policy.denied`, via `approve`, txn = the request), except when only `listing` what to show.
 * Undefined when they may; else why not.
 */
export async function fourEyesEligible(ctx: Context, request: ApprovalRequest, approver: Approver, proof: ApproverProof, options: { listing?: boolean } = {}): Promise<string | undefined> {
  const time = epochSeconds(ctx.clock);
  return approveDecisions(ctx, request, approver.userId, { time, acr: proof.acr, authTime: proof.method === 'token' ? proof.authTime : time }, !options.listing);
}

/**
 * Whether a second person's approval given earlier still stands (docs/approvals.md "When an
 * approval stops counting"): the same decisions as fourEyesEligible, about the approver as they
 * are NOW — still an active person, still holding what the policies ask (role, supervised desks,
 * approval limit) — with the authentication they approved with, as at their decision (its `acr`;
 * `time` and `auth_time` = the decision's: it was checked fresh then, and a later check must not
 * refuse it for having aged). Nothing is recorded: the caller records the outcome.
 */
export async function fourEyesStillEligible(ctx: Context, request: ApprovalRequest, decision: ApprovalDecision): Promise<string | undefined> {
  const time = Math.floor(decision.at / 1000);
  return approveDecisions(ctx, request, decision.approver, { time, acr: decision.acr, authTime: time }, false);
}

async function approveDecisions(ctx: Context, request: ApprovalRequest, approverId: string, auth: { time: number; acr: string; authTime: number }, record: boolean): Promise<string | undefined> {
  const [person, subject] = await Promise.all([findUser(ctx, approverId), findUser(ctx, request.subject)]);
  if (!person || person.status !== 'active') return 'the approver is not an active person';
  if (!subject) return 'the person the request is for is unknown';
  const base = withDerivedAuthentication({ time: auth.time, acr: auth.acr, auth_time: auth.authTime, approval_kind: request.kind });
  const contexts = entryContexts(request, base);
  if (typeof contexts === 'string') return contexts;
  const records = { snapshot: await ctx.entities.snapshot(), kyc: await ctx.risk.kyc.lookup([person.id, subject.id]) };
  const entities = new Map<string, CedarEntity>();
  const add = (entity: CedarEntity) => entities.set(uidText(entity.uid), entity);
  const principal = addUser(add, records, person);
  const resource = addUser(add, records, subject);
  const named = { principal: { type: 'User', id: person.id }, action: approveAction, resource: { type: 'User', id: subject.id } } as unknown as DecisionRequest;
  const meta = { txn: request.id, caller: approverId, via: 'approve' };
  for (const context of contexts) {
    const { decision, event, set } = await evaluateBuilt(ctx, { principal, action: approveAction, resource, context, entities: [...entities.values()] }, named, meta);
    // Listing what a person may decide records nothing (each view would add decisions); deciding does.
    if (record) await ctx.audit.record(event);
    if (!decision.allow) {
      if (decision.errors.length > 0) return 'the approval could not be evaluated, so it is refused (fail closed)';
      return decision.reasons.length > 0 ? `refused by policy: ${decision.reasons.join(', ')}` : 'no policy lets this person approve it';
    }
    if (!set || !decision.reasons.some((id) => set.approvePermits.has(id))) return 'no policy that names the approve action lets this person approve it';
  }
  return undefined;
}

/**
 * The approve action's context for each entry to approve, or the base alone when there is none:
 * - an order or settlement instruction: its limit as `notional` (whole units), `currency`, and the
 *   instrument's class, as at issuance (src/policy/issuance.ts detailRequests);
 * - a transfer (docs/transfers.md: it goes through the same four-eyes approve check): what Cedar
 *   sees of it at issuance (src/transfers/detail.ts transferFacts: `transfer_type`, `asset`,
 *   `currency` or `chain`, the destination) and its amount as `notional` and `amount` — rounded UP
 *   to whole units, as the transfer controls count it (src/transfers/amounts.ts parseAmount 'up'),
 *   since a policy compares it with an approver's limit: 1,000,000.01 is above a limit of 1,000,000.
 * A string when an entry's amount cannot be read: nobody may approve what they cannot be checked
 * against (fail closed).
 */
function entryContexts(request: ApprovalRequest, base: Record<string, CedarValueJson>): Record<string, CedarValueJson>[] | string {
  const details = Array.isArray(request.content.authorization_details) ? (request.content.authorization_details as Record<string, unknown>[]) : [];
  const contexts: Record<string, CedarValueJson>[] = [];
  for (const [index, entry] of details.entries()) {
    if (entry?.type === 'transfer') {
      const context = transferContext(entry as unknown as TransferDetail);
      if (!context) return `authorization_details[${index}]: the transfer's amount cannot be read, so nobody may approve it (fail closed)`;
      contexts.push({ ...base, ...context });
      continue;
    }
    if (entriesToApprove([entry]).length === 0) continue;
    const limit = (entry.type === 'order' ? entry.max_notional : entry.max_amount) as { amount?: unknown; currency?: unknown } | undefined;
    const instrument = entry.instrument as { class?: unknown } | undefined;
    contexts.push({
      ...base,
      notional: wholeUnits(limit?.amount as string | number),
      ...(typeof limit?.currency === 'string' ? { currency: limit.currency } : {}),
      ...(typeof instrument?.class === 'string' ? { instrument_class: instrument.class } : {}),
    });
  }
  return contexts.length > 0 ? contexts : [base];
}

/** A transfer entry's approve context (see entryContexts), or undefined when its amount or facts cannot be read. */
function transferContext(entry: TransferDetail): Record<string, CedarValueJson> | undefined {
  if (typeof entry.amount !== 'string' && typeof entry.amount !== 'number') return undefined;
  const micro = parseAmount(entry.amount, 'up');
  if (micro === undefined) return undefined;
  const scale = 10n ** BigInt(microDecimals);
  const whole = (micro + scale - 1n) / scale;
  // Cedar's Long is 64-bit; beyond 2^53 the largest safe integer, so a limit check never passes by overflow.
  const amount = whole > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(whole);
  try {
    return { ...(transferFacts(entry) as unknown as Record<string, CedarValueJson>), notional: amount, amount };
  } catch {
    return undefined;
  }
}
