import type { RiskSignal } from '../engine.ts';
import { clientPrincipal, listed, noteAll, unseen } from './history.ts';

/**
 * `new_scope` at a token issuance or an AuthZEN evaluation: the client (or agent) asks for a scope
 * — at the AuthZEN API, an action — it was never issued, while it was issued tokens before (its
 * first token sets the baseline: history is the audiences it was issued, see ./new-audience.ts).
 */
export const newScope: RiskSignal = {
  name: 'new_scope',
  moments: ['issuance', 'evaluation'],
  async evaluate(ctx, facts) {
    const client = clientPrincipal(facts);
    if (!client || !facts.scopes?.length) return undefined;
    const fresh = await unseen(ctx, client, 'scope', facts.scopes, 'audience');
    return fresh.length > 0 ? { detail: `never seen for this client: ${listed(fresh)}` } : undefined;
  },
  async observe(ctx, facts) {
    const client = clientPrincipal(facts);
    if (client && facts.scopes?.length) await noteAll(ctx, client, 'scope', facts.scopes);
  },
};
