import type { ActivePrincipal } from '../anomalies/activity.ts';
import { isAnomalous } from '../anomalies/baselines.ts';
import type { RiskFacts, RiskSignal } from '../engine.ts';

/**
 * `velocity` (docs/risk.md "Signals"): at a login, the principal's logins in the current window;
 * at an issuance, its tokens (and, for a person's token, the client's too) — each this node's live
 * count plus the other nodes' last flushed counts — against the principal's baseline, by the same
 * rule as an anomaly (src/risk/anomalies/baselines.ts `isAnomalous`: enough history, at least
 * `velocityFactor` × the baseline and at least `velocityMinimum`). It fires while a burst is still
 * under way, before its window closes and is judged. Memory only: the counts and baselines are
 * refreshed by the activity counter's flush, never read on the request path.
 */
export const velocity: RiskSignal = {
  name: 'velocity',
  moments: ['login', 'issuance'],
  async evaluate(ctx, facts, settings) {
    const kind = facts.moment === 'login' ? 'login_rate' : 'token_rate';
    const { minimumHistory } = await ctx.risk.anomalySettings.get();
    for (const [i, principal] of countedPrincipals(facts).entries()) {
      const current = ctx.risk.activity.current(principal);
      const observed = kind === 'login_rate' ? current.logins : current.tokens;
      const baseline = ctx.risk.activity.baseline(principal, kind);
      if (!isAnomalous(observed, baseline, kind, current.windowMs, { factor: settings.velocityFactor, minimum: settings.velocityMinimum, minimumHistory })) continue;
      const noun = kind === 'login_rate' ? 'logins' : 'tokens';
      return { detail: `${i > 0 ? 'the client: ' : ''}${observed} ${noun} this window, baseline ${baseline!.ewma.toFixed(1)}` };
    }
    return undefined;
  },
};

/** Whose counts an action is judged by: its principal, and at an issuance for someone else, the client. */
export function countedPrincipals(facts: RiskFacts): ActivePrincipal[] {
  if (facts.principal.type === 'Admin') return [];
  const principals: ActivePrincipal[] = [{ type: facts.principal.type, id: facts.principal.id }];
  if (facts.moment === 'issuance' && facts.clientId !== undefined && !(facts.principal.type === 'Client' && facts.principal.id === facts.clientId)) {
    principals.push({ type: 'Client', id: facts.clientId });
  }
  return principals;
}
