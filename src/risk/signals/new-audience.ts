import type { RiskSignal } from '../engine.ts';
import { clientPrincipal, noteAll, unseen } from './history.ts';

/**
 * `new_audience` at a token issuance or an AuthZEN evaluation about a resource server: the client
 * (or agent) asks for a token to a resource server it was never issued one for, while it was
 * issued tokens for others before. The audiences a client was issued are also its history for
 * `new_scope` and `new_resource`: every issuance notes one.
 */
export const newAudience: RiskSignal = {
  name: 'new_audience',
  moments: ['issuance', 'evaluation'],
  async evaluate(ctx, facts) {
    const client = clientPrincipal(facts);
    if (!client || facts.audience === undefined) return undefined;
    const fresh = await unseen(ctx, client, 'audience', [facts.audience]);
    return fresh.length > 0 ? { detail: `never seen for this client: ${fresh[0]}` } : undefined;
  },
  async observe(ctx, facts) {
    const client = clientPrincipal(facts);
    if (client && facts.audience !== undefined) await noteAll(ctx, client, 'audience', [facts.audience]);
  },
};
