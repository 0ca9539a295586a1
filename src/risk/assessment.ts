/**
 * A risk assessment (issue 16, docs/risk.md): what the risk engine (./engine.ts) concluded about
 * one login, token issuance, AuthZEN evaluation or admin action, from the signals that fired.
 * Protocol-free and deterministic: the same hits and settings give the same assessment.
 *
 * The score is the sum of the fired signals' points, capped at 100. The level and the outcome
 * are read off the score with the thresholds of the settings (./settings.ts). The outcome is an
 * input to policy, not a verdict that policy can overturn (AMENDMENTS "Risk, limits, KYC/AML"):
 * the stricter of the risk outcome and the policy decision wins (`stricterOutcome`), and Cedar
 * sees the assessment as `context.risk` (`riskContextValue`) to decide what a level means.
 */
import type { RiskSettings, SignalName } from './settings.ts';

/** When the engine is asked. */
export const riskMoments = ['login', 'issuance', 'evaluation', 'admin'] as const;
export type RiskMoment = (typeof riskMoments)[number];

export const riskLevels = ['low', 'medium', 'high'] as const;
export type RiskLevel = (typeof riskLevels)[number];

/** Ordered from the most to the least permissive: a later one is stricter. */
export const riskOutcomes = ['allow', 'step_up', 'deny'] as const;
export type RiskOutcome = (typeof riskOutcomes)[number];

/** One signal that fired, with the points it added and a short reason (never a secret or token). */
export interface SignalHit {
  signal: SignalName;
  points: number;
  detail?: string;
}

export interface RiskAssessment {
  /** 0 (nothing unusual) to 100. */
  score: number;
  level: RiskLevel;
  outcome: RiskOutcome;
  /** The signals that fired, in the order of the engine's signal list. */
  signals: SignalHit[];
}

/** Nothing fired: what a request with no signal, or with the engine switched off, is assessed as. */
export const quietAssessment: Readonly<RiskAssessment> = Object.freeze({ score: 0, level: 'low', outcome: 'allow', signals: [] });

/** Scores the hits: points summed and capped at 100, level and outcome by the settings' thresholds. */
export function scoreRisk(hits: readonly SignalHit[], settings: RiskSettings): RiskAssessment {
  const score = Math.min(100, Math.max(0, Math.round(hits.reduce((sum, hit) => sum + hit.points, 0))));
  const level: RiskLevel = score >= settings.levels.high ? 'high' : score >= settings.levels.medium ? 'medium' : 'low';
  const outcome: RiskOutcome = score >= settings.outcomes.deny ? 'deny' : score >= settings.outcomes.step_up ? 'step_up' : 'allow';
  return { score, level, outcome, signals: [...hits] };
}

/**
 * Hits of two assessments of one action as one list — a token issuance's own and the signals its
 * person's sign-in carried (`Issuance.loginRisk`) — each signal once, with the higher points, in
 * the order first seen. To be scored again (`scoreRisk`).
 */
export function mergeSignalHits(own: readonly SignalHit[], carried: readonly SignalHit[]): SignalHit[] {
  const merged = new Map<string, SignalHit>();
  for (const hit of [...own, ...carried]) {
    const kept = merged.get(hit.signal);
    // Replacing a key keeps its place in the Map: the order is the first sighting's.
    if (!kept || hit.points > kept.points) merged.set(hit.signal, hit);
  }
  return [...merged.values()];
}

/** The stricter of two outcomes (AMENDMENTS: a risk deny beats a permit; a forbid beats a low score). */
export function stricterOutcome(a: RiskOutcome, b: RiskOutcome): RiskOutcome {
  return riskOutcomes.indexOf(a) >= riskOutcomes.indexOf(b) ? a : b;
}

/** The Cedar value of `context.risk` (the `Risk` type of the policy schema, src/policy/schema.ts). */
export interface RiskContext {
  score: number;
  level: RiskLevel;
  /** The names of the signals that fired. */
  signals: string[];
}

export function riskContextValue(assessment: RiskAssessment): RiskContext {
  return { score: assessment.score, level: assessment.level, signals: assessment.signals.map((s) => s.signal) };
}

/**
 * The assessment as it is recorded in the audit event of the decision it informed
 * (`details.risk`): score, level, outcome and each signal with its points and reason.
 */
export function riskAuditDetail(assessment: RiskAssessment): Record<string, unknown> {
  return {
    score: assessment.score,
    level: assessment.level,
    outcome: assessment.outcome,
    signals: assessment.signals.map((s) => (s.detail === undefined ? { signal: s.signal, points: s.points } : { signal: s.signal, points: s.points, detail: s.detail })),
  };
}
