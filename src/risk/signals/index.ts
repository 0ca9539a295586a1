import type { RiskSignal } from '../engine.ts';

/**
 * Every signal the engine runs, in the order their hits are listed. Each lives in its own file of
 * this folder (docs/risk.md "Signals" describes each).
 */
export const riskSignals: RiskSignal[] = [];
