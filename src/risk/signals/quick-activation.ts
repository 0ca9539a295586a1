import type { RiskSignal } from '../engine.ts';

/**
 * `quick_activation` (intrusion signal): a policy set version is activated less than
 * `quickActivationSeconds` after it was stored (`policy_sets.created_at`, passed as the facts'
 * `createdAt` by the activating action) — too soon for the review four eyes are meant to give.
 */
export const quickActivation: RiskSignal = {
  name: 'quick_activation',
  moments: ['admin'],
  evaluate(deps, facts, settings) {
    if (facts.createdAt === undefined) return undefined;
    const age = deps.clock.now() - facts.createdAt;
    if (age >= settings.quickActivationSeconds * 1000) return undefined;
    return { detail: `activated ${Math.max(0, Math.round(age / 1000))} s after it was stored` };
  },
};
