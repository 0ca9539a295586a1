import type { RiskSignal } from '../engine.ts';
import { noteAll, unseen } from './history.ts';

/**
 * `deep_chain` at a token exchange: the new token's act chain is deeper than any chain seen for
 * this subject, while the subject was delegated before. Depths are remembered as sightings of
 * kind `chain_depth`: observing a chain of depth d notes every depth from 1 to d, so "deeper than
 * any seen" is "depth d never noted" — one cached look-up, no scan.
 */
export const deepChain: RiskSignal = {
  name: 'deep_chain',
  moments: ['issuance'],
  async evaluate(ctx, facts) {
    const depth = facts.actors?.length ?? 0;
    if (depth === 0) return undefined;
    const fresh = await unseen(ctx, facts.principal, 'chain_depth', [String(depth)]);
    return fresh.length > 0 ? { detail: `a chain of ${depth} actors, deeper than any seen for this subject` } : undefined;
  },
  async observe(ctx, facts) {
    const depth = facts.actors?.length ?? 0;
    if (depth > 0) await noteAll(ctx, facts.principal, 'chain_depth', Array.from({ length: depth }, (_, i) => String(i + 1)));
  },
};
