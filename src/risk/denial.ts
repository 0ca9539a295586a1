import type { AuditEvent } from '../audit/events.ts';
import type { Context } from '../context.ts';
import { alertInsert, type Alert } from '../signals/alerts.ts';
import { riskAuditDetail, type RiskAssessment, type RiskMoment } from './assessment.ts';

/**
 * What an action refused by the risk assessment leaves behind (docs/risk.md "Outcomes"): the
 * events of its decisions, each with `details.risk`; a `risk.denied` event naming the signals; and a
 * `risk.denied` alert for a human — all in one transaction, so the alert exists if and only if the
 * events do. Protocol-free: the caller answers with its own error.
 */

/** The event with the assessment as `details.risk` (unchanged when there is none: the engine is off). */
export function withRiskDetail(event: AuditEvent, assessment: RiskAssessment | undefined): AuditEvent {
  return assessment ? { ...event, details: { ...event.details, risk: riskAuditDetail(assessment) } } : event;
}

/** Whom and what a refusal was about, as its events name them. */
export interface RiskDenialScene {
  moment: RiskMoment;
  requestId?: string;
  txn?: string;
  /** The client that asked (a grant's client, the enforcement point at the AuthZEN API). */
  client?: string;
  /** The principal the action was about (a person's id, a client_id). */
  subject: string;
  /** Whether the subject is a person (the alert names them). */
  person: boolean;
  audience?: string;
  scopes?: readonly string[];
  /** Where: a grant type, `authzen`. */
  via?: string;
}

/** The `risk.denied` event and alert of a refusal. */
export function riskDenial(scene: RiskDenialScene, assessment: RiskAssessment): { event: AuditEvent; alert: Alert } {
  const signals = assessment.signals.map((s) => s.signal);
  const event: AuditEvent = {
    type: 'risk.denied',
    ...(scene.requestId !== undefined ? { requestId: scene.requestId } : {}),
    ...(scene.txn !== undefined ? { txn: scene.txn } : {}),
    ...(scene.client !== undefined ? { actor: scene.client, client: scene.client } : {}),
    subject: scene.subject,
    ...(scene.audience !== undefined ? { audience: scene.audience } : {}),
    ...(scene.scopes ? { scopes: [...scene.scopes] } : {}),
    decision: { allow: false, reasons: signals },
    details: { moment: scene.moment, ...(scene.via !== undefined ? { via: scene.via } : {}), risk: riskAuditDetail(assessment) },
  };
  const alert: Alert = {
    type: 'risk.denied',
    ...(scene.person ? { subject: scene.subject } : {}),
    data: {
      moment: scene.moment,
      subject: scene.subject,
      ...(scene.client !== undefined ? { client: scene.client } : {}),
      ...(scene.audience !== undefined ? { audience: scene.audience } : {}),
      ...(scene.via !== undefined ? { via: scene.via } : {}),
      ...(scene.requestId !== undefined ? { request_id: scene.requestId } : {}),
      score: assessment.score,
      signals,
    },
  };
  return { event, alert };
}

/**
 * Records a refusal by the risk assessment: `evidence` (the refusal's decision events, given
 * `details.risk` here), the `risk.denied` event and its alert, in one transaction (one flight).
 */
export async function recordRiskDenial(ctx: Pick<Context, 'storage' | 'clock' | 'audit'>, scene: RiskDenialScene, assessment: RiskAssessment, evidence: readonly AuditEvent[]): Promise<void> {
  const { event, alert } = riskDenial(scene, assessment);
  const flight = ctx.storage.flight();
  void flight.run(alertInsert(ctx.storage.db, ctx.clock, alert));
  await ctx.audit.commit(flight, [...evidence.map((e) => withRiskDetail(e, assessment)), event]);
}
