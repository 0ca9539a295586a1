import type { AuditEvent } from '../audit/events.ts';
import type { Context } from '../context.ts';
import { evaluateDecision, type Decision, type DecisionMeta, type Resolutions } from '../policy/decide.ts';
import type { DecisionRequest } from '../policy/request.ts';
import { riskContextValue, type RiskAssessment } from './assessment.ts';
import { recordRiskDenial, withRiskDetail } from './denial.ts';
import { assessRisk, observeRisk, type RiskFacts } from './engine.ts';
import { riskResourceName } from './resources.ts';

/**
 * The risk assessment of an AuthZEN evaluation (issue 16, docs/risk.md "Outcomes"): at moment
 * `evaluation`, for the request's principal — the action as its scope, the resource as what it
 * asks for; the caller's address is the enforcement point's, so it is not the principal's network
 * (nothing is assessed on it). Cedar sees the assessment as `context.risk`; the stricter of the
 * two wins: a risk `deny` denies what the policies permit (reason `risk`). A `step_up` is left to
 * policy (`context.risk.level`): the enforcement point has no way to ask a person for more here
 * other than a policy step-up's answer.
 */

/** A decision with the assessment that informed it (undefined: the engine is switched off). */
export interface RiskedDecision {
  decision: Decision;
  /** Its `policy.allowed` / `policy.denied` event, with `details.risk`. */
  event: AuditEvent;
  risk?: RiskAssessment;
  facts: RiskFacts;
}

/** What the signals read about an evaluation. */
export function evaluationRiskFacts(request: DecisionRequest): RiskFacts {
  const r = request.resource;
  return {
    moment: 'evaluation',
    // An agent is a client registered as one: the signals remember it as a client.
    principal: { type: request.principal.type === 'User' ? 'User' : 'Client', id: request.principal.id },
    scopes: [request.action],
    ...(r.type === 'ResourceServer' ? { audience: r.id } : { resources: [riskResourceName(r.type, r.id)] }),
  };
}

/** Assesses and decides one evaluation; nothing is recorded (`recordEvaluation`). */
export async function evaluateWithRisk(ctx: Context, request: DecisionRequest, meta: DecisionMeta, resolutions?: Resolutions): Promise<RiskedDecision> {
  const facts = evaluationRiskFacts(request);
  const settings = await ctx.risk.settings.get();
  const risk = settings.enabled ? await assessRisk(ctx, facts) : undefined;
  if (!risk) return { ...(await evaluateDecision(ctx, request, meta, resolutions)), facts };
  const { decision, event } = await evaluateDecision(ctx, { ...request, context: { ...request.context, risk: riskContextValue(risk) } }, meta, resolutions);
  if (risk.outcome !== 'deny' || !decision.allow) return { decision, event: withRiskDetail(event, risk), risk, facts };
  // AMENDMENTS "Risk, limits, KYC/AML": a risk deny is not overturned by a permit. No step-up or
  // approval lifts it either.
  const denied: Decision = { allow: false, reasons: ['risk'], policyVersion: decision.policyVersion, errors: [] };
  const deniedEvent: AuditEvent = {
    ...event,
    type: 'policy.denied',
    decision: { allow: false, reasons: ['risk'], policyVersion: decision.policyVersion },
    details: { ...event.details, permitted_by: decision.reasons },
  };
  return { decision: denied, event: withRiskDetail(deniedEvent, risk), risk, facts };
}

/**
 * Makes an evaluation's events durable: its decision event, and on a risk `deny` the `risk.denied`
 * event and alert with it (one transaction).
 */
export async function recordEvaluation(ctx: Context, evaluated: RiskedDecision, meta: DecisionMeta, request: DecisionRequest): Promise<void> {
  if (evaluated.risk?.outcome !== 'deny') return ctx.audit.record(evaluated.event);
  await recordRiskDenial(
    ctx,
    {
      moment: 'evaluation',
      ...(meta.requestId !== undefined ? { requestId: meta.requestId } : {}),
      ...(meta.caller !== undefined ? { client: meta.caller } : {}),
      ...(meta.txn !== undefined ? { txn: meta.txn } : {}),
      subject: request.principal.id,
      person: request.principal.type === 'User',
      ...(request.resource.type === 'ResourceServer' ? { audience: request.resource.id } : {}),
      scopes: [request.action],
      ...(meta.via !== undefined ? { via: meta.via } : {}),
    },
    evaluated.risk,
    [evaluated.event],
  );
}

/** After an allowed evaluation: the signals remember what they saw (an action, a resource now used). */
export async function observeEvaluation(ctx: Context, evaluated: RiskedDecision): Promise<void> {
  if (!evaluated.decision.allow || !evaluated.risk) return;
  try {
    await observeRisk(ctx, evaluated.facts);
  } catch (error) {
    // The decision stands; a signal that did not remember fires again next time (the stricter side).
    ctx.log.warn({ err: error }, 'risk: the signals could not remember what an evaluation saw');
  }
}
