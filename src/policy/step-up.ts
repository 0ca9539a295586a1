import type { CedarValueJson, PolicyJson } from '@cedar-policy/cedar-wasm/nodejs';
import { acrLadder, acrRank, isKnownAcr, strongestAcr, type Acr } from '../identity/acr.ts';
import type { CedarRequest, CompiledPolicySet, Evaluation } from './engine.ts';

/**
 * Step-up policies (docs/policy.md "Step-up policies"): a `forbid` annotated
 *
 *   @step_up("urn:clearance:acr:phr")      a level of the ladder (src/identity/acr.ts)
 *   @step_up_max_age("300")                optional: seconds; the authentication must be that recent
 *
 * still denies — fail closed — but its deny carries the level (and freshness) that would lift it,
 * so the caller can ask the person to authenticate again rather than refuse outright:
 * - a decision is a step-up only when it is a deny without errors, every determining forbid is a
 *   step-up forbid, and the principal is a person (`User`): any forbid without `@step_up`, any
 *   error, or a default deny (no permit) stays a plain deny;
 * - several step-up forbids: the strongest level, the shortest max age;
 * - and only when the same request at that level, just authenticated, is allowed: Clearance
 *   decides it again with `acr` = the level (its `acr_levels`) and `auth_time` = now (`auth_age` 0).
 *   A forbid whose condition does not depend on the authentication (it would fire again) is a
 *   plain deny; so is a request no permit allows. Sending the person to sign in can never loop.
 * The rest of the request is decided as it was: the step-up is only ever the answer to "what
 * would allow this", never a permit.
 *
 * Approval policies (what-you-see-is-what-you-sign, docs/authentication.md "Approving an order"):
 * a `forbid` annotated `@approval("passkey")` is lifted only by the person approving exactly the
 * request's order and settlement_instruction entries with a passkey: Clearance sets the context's
 * `approved` (never a caller) when the token it issues carries such an approval. Its deny carries
 * `approval` by the same rules as a step-up: every determining forbid is a step-up or an approval
 * forbid, the principal is a person, and the request with the approval (at the step-up's level,
 * if any) is allowed. A step-up beside an approval is lifted by the level and the approval together.
 *
 * Four-eyes policies (docs/approvals.md "Four-eyes policies"): a `forbid` annotated
 * `@approval("four-eyes")` is lifted only by second persons' approvals of a decoupled (CIBA)
 * request, counted in the context's `approvals` (set by Clearance from the token's `approvals`
 * claim, never by a caller). No sign-in and no passkey of the person lifts it, so its deny is a
 * plain one here (the authorization endpoint and the token endpoint refuse it); the CIBA endpoint
 * asks how many approvals would (src/approvals/four-eyes.ts).
 */

/** What a step-up forbid asks. */
export interface PolicyStepUp {
  acr: Acr;
  /** Seconds. */
  maxAge?: number;
}

/** A deny that a stronger or fresher authentication would lift. */
export interface StepUp extends PolicyStepUp {
  /** The step-up forbids that fired. */
  policies: string[];
}

/** A deny that the person's passkey approval of the order (with any step-up beside it) would lift. */
export interface ApprovalAsk {
  /** The approval forbids that fired. */
  policies: string[];
}

/** How an approval is given: the person's own passkey, or second persons' (four-eyes). */
const approvalMethods = ['passkey', 'four-eyes'];

/** Longest `@step_up_max_age`: a week. */
const maxMaxAge = 7 * 24 * 3600;

/** Reads a policy's step-up annotations; a problem message when they are wrong. */
export function readStepUpAnnotations(json: PolicyJson): { stepUp?: PolicyStepUp; approval?: true; fourEyes?: true; problem?: string } {
  const annotations = json.annotations ?? {};
  if (annotations.approval !== undefined) {
    if (json.effect !== 'forbid') return { problem: '@approval belongs on a forbid: it names what lifts the forbid' };
    if (!approvalMethods.includes(annotations.approval ?? '')) return { problem: `@approval must be one of: ${approvalMethods.join(', ')}` };
    if (annotations.step_up !== undefined || annotations.step_up_max_age !== undefined) return { problem: 'a policy is lifted by @step_up or by @approval, not both: write two forbids' };
    return annotations.approval === 'four-eyes' ? { fourEyes: true } : { approval: true };
  }
  const level = annotations.step_up;
  const age = annotations.step_up_max_age;
  if (level === undefined) return age === undefined ? {} : { problem: '@step_up_max_age needs a @step_up("<acr>") on the same policy' };
  if (json.effect !== 'forbid') return { problem: '@step_up belongs on a forbid: it names the level that would lift the forbid' };
  if (typeof level !== 'string' || !isKnownAcr(level)) return { problem: `@step_up must name a level of the ladder: ${acrLadder.join(', ')}` };
  if (age === undefined) return { stepUp: { acr: level } };
  if (typeof age !== 'string' || !/^\d{1,6}$/.test(age) || Number(age) > maxMaxAge) return { problem: `@step_up_max_age must be a number of seconds from 0 to ${maxMaxAge}` };
  return { stepUp: { acr: level, maxAge: Number(age) } };
}

/** The levels `acr` meets on the ladder, weakest first (the context's `acr_levels`). */
export function acrLevelsOf(acr: string): Acr[] {
  return acrLadder.slice(0, acrRank(acr) + 1);
}

/**
 * The context attributes Clearance derives from what it was given, never taken from the caller:
 * `acr_levels` from `acr`, `auth_age` from `auth_time` and `time` (never negative).
 */
export function withDerivedAuthentication(context: Record<string, CedarValueJson>): Record<string, CedarValueJson> {
  const out: Record<string, CedarValueJson> = { ...context };
  if (Object.hasOwn(out, 'acr_levels')) delete out.acr_levels;
  if (Object.hasOwn(out, 'auth_age')) delete out.auth_age;
  if (typeof context.acr === 'string') out.acr_levels = acrLevelsOf(context.acr);
  if (typeof context.auth_time === 'number' && typeof context.time === 'number') out.auth_age = Math.max(0, context.time - context.auth_time);
  return out;
}

/**
 * The step-up a decision carries, or undefined (a permit, a plain deny). `evaluate` is the engine's
 * (passed in to keep this module free of the wasm binding).
 */
export function stepUpOf(set: CompiledPolicySet, request: CedarRequest, evaluation: Evaluation, evaluate: (set: CompiledPolicySet, request: CedarRequest) => Evaluation): StepUp | undefined {
  const lift = liftOf(set, request, evaluation, evaluate);
  return lift?.stepUp;
}

/**
 * What lifts a deny: a step-up, an approval, or both — undefined for a permit or a plain deny.
 * One re-evaluation with everything the determining forbids ask.
 */
export function liftOf(
  set: CompiledPolicySet,
  request: CedarRequest,
  evaluation: Evaluation,
  evaluate: (set: CompiledPolicySet, request: CedarRequest) => Evaluation,
): { stepUp?: StepUp; approval?: ApprovalAsk } | undefined {
  if (evaluation.allow || evaluation.errors.length > 0 || evaluation.reasons.length === 0) return undefined;
  if (request.principal?.type !== 'User') return undefined;
  const stepUpIds = evaluation.reasons.filter((id) => set.stepUps.has(id));
  const approvalIds = evaluation.reasons.filter((id) => set.approvals.has(id));
  if (stepUpIds.length + approvalIds.length !== evaluation.reasons.length) return undefined;
  const asks = stepUpIds.map((id) => set.stepUps.get(id)!);
  const acr = strongestAcr(asks.map((a) => a.acr));
  const ages = asks.flatMap((a) => (a.maxAge !== undefined ? [a.maxAge] : []));
  const maxAge = ages.length > 0 ? Math.min(...ages) : undefined;
  // The same request, just authenticated at that level and approved: does it pass?
  const time = typeof request.context.time === 'number' ? request.context.time : 0;
  const context = { ...request.context, ...(acr !== undefined ? { acr, auth_time: time } : {}), ...(approvalIds.length > 0 ? { approved: true } : {}) };
  const lifted = evaluate(set, { ...request, context: acr !== undefined ? withDerivedAuthentication(context) : context });
  if (!lifted.allow) return undefined;
  return {
    ...(acr !== undefined ? { stepUp: { acr, ...(maxAge !== undefined ? { maxAge } : {}), policies: stepUpIds } } : {}),
    ...(approvalIds.length > 0 ? { approval: { policies: approvalIds } } : {}),
  };
}
