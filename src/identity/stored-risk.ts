import type { RiskAssessment, SignalHit } from '../risk/assessment.ts';

/*
 * A sign-in's risk assessment as it is kept with its session and its pending sign-in
 * (`sessions.risk`, `pending_sign_ins.risk`; src/identity/login-risk.ts).
 */

/** What a sign-in stores of its assessment (sessions.risk, pending_sign_ins.risk): JSON, or null when there was none. */
export function storedRisk(assessment: RiskAssessment | undefined): string | null {
  return assessment ? JSON.stringify(assessment) : null;
}

/** The assessment stored with a session or pending sign-in (undefined for none, or one stored before migration 0028). */
export function readStoredRisk(value: string | null | undefined): RiskAssessment | undefined {
  if (value === null || value === undefined) return undefined;
  return JSON.parse(value) as RiskAssessment;
}

/** The signals a session's codes and refresh tokens carry into each issuance: undefined when none fired. */
export function loginSignals(assessment: RiskAssessment | undefined): SignalHit[] | undefined {
  return assessment && assessment.signals.length > 0 ? assessment.signals : undefined;
}
