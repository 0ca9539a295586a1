import { userInfo } from 'node:os';
import type { AuditEvent } from '../audit/events.ts';
import type { Context } from '../context.ts';
import { alertInsert } from '../signals/alerts.ts';
import { riskAuditDetail, type RiskAssessment } from './assessment.ts';
import { assessRisk, observeRisk, type RiskFacts } from './engine.ts';

/** One write action of the admin API or the CLI, as the intrusion signals see it. */
export interface AdminAction {
  /** The administrator: the admin token's subject (a person's id, or the admin client's id), or `cli:<OS user>`. */
  admin: string;
  /** What it changes: `PUT /admin/users/:username` (the route), `apply`, `policy.activate`, … */
  action: string;
  /** The request's source address (the admin API); none for the CLI. */
  address?: string;
  /** The client whose admin token made the request. */
  clientId?: string;
  /** `policy.activate`: when the activated version was stored (epoch ms). */
  createdAt?: number;
  requestId?: string;
}

/**
 * Assesses an admin API or CLI write at moment `admin` (intrusion signals: src/risk/signals
 * admin_new_network, admin_off_hours, admin_burst, quick_activation; docs/risk.md "Intrusion
 * signals"), then lets the signals remember it (the network, the action for the burst count).
 * Admin actions are alerted, never refused: an assessment at level `medium` or above records a
 * `risk.admin_unusual` audit event and raises a `risk.admin_unusual` alert (src/signals/alerts.ts)
 * in one transaction, naming the action, the administrator and the signals. The outcome is not
 * applied (a locked-out administrator could not stop an intrusion). A failing store fails the
 * request (fail closed: no write goes unassessed).
 */
export async function assessAdminAction(ctx: Context, action: AdminAction): Promise<RiskAssessment> {
  const facts: RiskFacts = {
    moment: 'admin',
    principal: { type: 'Admin', id: action.admin },
    action: action.action,
    ...(action.address !== undefined ? { address: action.address } : {}),
    ...(action.clientId !== undefined ? { clientId: action.clientId } : {}),
    ...(action.createdAt !== undefined ? { createdAt: action.createdAt } : {}),
  };
  const assessment = await assessRisk(ctx, facts);
  await observeRisk(ctx, facts);
  if (assessment.level === 'low') return assessment;
  const signals = assessment.signals.map((s) => s.signal);
  const where = action.address !== undefined ? { source_address: action.address } : {};
  const flight = ctx.storage.flight();
  void flight.run(
    alertInsert(ctx.storage.db, ctx.clock, {
      type: 'risk.admin_unusual',
      data: { action: action.action, admin: action.admin, score: assessment.score, level: assessment.level, signals, ...where, ...(action.clientId ? { client: action.clientId } : {}) },
    }),
  );
  const event: AuditEvent = {
    type: 'risk.admin_unusual',
    actor: action.admin,
    ...(action.clientId ? { client: action.clientId } : {}),
    ...(action.requestId ? { requestId: action.requestId } : {}),
    // Alerted, not refused: the action goes ahead.
    decision: { allow: true, reasons: signals },
    details: { action: action.action, risk: riskAuditDetail(assessment), ...where },
  };
  await ctx.audit.commit(flight, [event]);
  return assessment;
}

/** The administrator a CLI action is made by: `cli:<OS user>`, as the CLI's audit events name it. */
export function cliAdmin(): string {
  return `cli:${userInfo().username}`;
}
