import type { AnomalyClass } from './settings.ts';

/**
 * A principal's baseline for one metric (docs/risk.md "Baselines and anomalies"): the EWMA of the
 * metric's value per evaluation window, over the windows in which the principal was active for that
 * metric — a window without any of its tokens (or logins) leaves the baseline as it was, so a desk's
 * quiet night does not make its morning look like a burst. Pure arithmetic: the evaluation pass
 * (./evaluate.ts) reads and writes the rows, the `velocity` signal reads cached copies.
 */
export interface Baseline {
  /** The typical value per window. */
  ewma: number;
  /** How many active windows it was built from (the principal's history). */
  windows: number;
  /** The window length the EWMA was measured with. */
  windowMs: number;
  /** The start of the last window folded in. */
  lastWindow: number;
}

/** What a metric counts in one window, per anomaly class. */
export interface WindowActivity {
  tokens: number;
  logins: number;
  /** Distinct audiences of the tokens. */
  audiences: number;
}

export function observedValue(activity: WindowActivity, kind: AnomalyClass): number {
  return kind === 'token_rate' ? activity.tokens : kind === 'login_rate' ? activity.logins : activity.audiences;
}

/**
 * The baseline's EWMA for a window of `windowMs`: a rate scales with the window's length (the window
 * setting changed since it was measured); the distinct audiences of a window are not rescaled.
 */
export function expectedValue(baseline: Baseline, kind: AnomalyClass, windowMs: number): number {
  return kind === 'audience_spread' || baseline.windowMs === windowMs ? baseline.ewma : (baseline.ewma * windowMs) / baseline.windowMs;
}

export interface Thresholds {
  /** An anomaly is at least this many times the baseline (risk settings' velocityFactor)... */
  factor: number;
  /** ...and at least this value (velocityMinimum; audience_minimum for audience_spread). */
  minimum: number;
  /** Active windows of history before a principal is judged at all. */
  minimumHistory: number;
}

/**
 * Whether `observed` is anomalous against the baseline: judged only with enough history, then
 * at least `factor` × the baseline and at least `minimum`.
 */
export function isAnomalous(observed: number, baseline: Baseline | undefined, kind: AnomalyClass, windowMs: number, thresholds: Thresholds): boolean {
  if (!baseline || baseline.windows < thresholds.minimumHistory) return false;
  return observed >= thresholds.minimum && observed >= thresholds.factor * expectedValue(baseline, kind, windowMs);
}

/** The weight of a new window in an EWMA of span N (the usual 2/(N+1)). */
export function smoothingOf(baselineWindows: number): number {
  return 2 / (baselineWindows + 1);
}

/** The baseline after folding in one more active window (the first window starts it). */
export function fold(baseline: Baseline | undefined, observed: number, kind: AnomalyClass, window: { start: number; ms: number }, baselineWindows: number): Baseline {
  if (!baseline) return { ewma: observed, windows: 1, windowMs: window.ms, lastWindow: window.start };
  const before = expectedValue(baseline, kind, window.ms);
  return {
    ewma: before + smoothingOf(baselineWindows) * (observed - before),
    windows: Math.min(baseline.windows + 1, 1_000_000),
    windowMs: window.ms,
    lastWindow: window.start,
  };
}
