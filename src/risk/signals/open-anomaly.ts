import type { RiskSignal } from '../engine.ts';
import { countedPrincipals } from './velocity.ts';

/**
 * `open_anomaly` (docs/risk.md "Signals"): the principal (at an issuance for a person, also the
 * client) has an anomaly open whose class's reaction is `step_up` — its points (50 by default)
 * reach the step-up outcome on their own, so the principal's next login or token steps up until an
 * administrator resolves the anomaly. Read from the reactions cache (src/risk/anomalies/reactions.ts):
 * no round trip per request.
 */
export const openAnomaly: RiskSignal = {
  name: 'open_anomaly',
  moments: ['login', 'issuance'],
  async evaluate(ctx, facts) {
    for (const [i, principal] of countedPrincipals(facts).entries()) {
      if (await ctx.risk.reactions.stepUp(principal)) {
        return { detail: i > 0 ? 'the client has an open anomaly' : 'an open anomaly asks for step-up' };
      }
    }
    return undefined;
  },
};
