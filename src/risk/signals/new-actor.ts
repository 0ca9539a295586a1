import type { RiskSignal } from '../engine.ts';
import { listed, noteAll, unseen } from './history.ts';

/**
 * `new_actor` at a token exchange: an actor in the new token's act chain was never seen in this
 * subject's chains, while the subject was delegated before (its first chain sets the baseline).
 * The subject is the issuance's principal (a person, or the client vouching for a partner's
 * subject); actors are named as the `token.exchanged` event names them (`sub`, `sub (iss)`).
 */
export const newActor: RiskSignal = {
  name: 'new_actor',
  moments: ['issuance'],
  async evaluate(ctx, facts) {
    if (!facts.actors?.length) return undefined;
    const fresh = await unseen(ctx, facts.principal, 'actor', facts.actors);
    return fresh.length > 0 ? { detail: `never acted for this subject: ${listed(fresh)}` } : undefined;
  },
  async observe(ctx, facts) {
    if (facts.actors?.length) await noteAll(ctx, facts.principal, 'actor', facts.actors);
  },
};
