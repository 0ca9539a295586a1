import type { RiskSignal } from '../engine.ts';
import { clientPrincipal, listed, noteAll, unseen } from './history.ts';

/**
 * `new_resource` at a token issuance or an AuthZEN evaluation: the client (or agent) asks for an
 * instrument or account (`Instrument:EURUSD`, `Account:ACC-1`: an authorization_details entry's,
 * an AuthZEN resource) it was never issued, while it was issued tokens before.
 */
export const newResource: RiskSignal = {
  name: 'new_resource',
  moments: ['issuance', 'evaluation'],
  async evaluate(ctx, facts) {
    const client = clientPrincipal(facts);
    if (!client || !facts.resources?.length) return undefined;
    const fresh = await unseen(ctx, client, 'resource', facts.resources, 'audience');
    return fresh.length > 0 ? { detail: `never seen for this client: ${listed(fresh)}` } : undefined;
  },
  async observe(ctx, facts) {
    const client = clientPrincipal(facts);
    if (client && facts.resources?.length) await noteAll(ctx, client, 'resource', facts.resources);
  },
};
