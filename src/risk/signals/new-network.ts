import type { RiskSignal } from '../engine.ts';
import { networkOf } from '../network.ts';
import { clientPrincipal } from './history.ts';

const dayMs = 86_400_000;

/**
 * `new_network` at a token issuance: the token request comes from a network (IPv4 /24, IPv6 /48:
 * ../network.ts) not seen for its client within `network_memory_days` — while the client has been
 * seen on some network before (its first token sets the baseline). Not at an AuthZEN evaluation:
 * the caller there is the enforcement point, whose address says nothing of the principal's.
 */
export const newNetwork: RiskSignal = {
  name: 'new_network',
  moments: ['issuance'],
  async evaluate(ctx, facts, settings) {
    const client = clientPrincipal(facts);
    if (!client || facts.address === undefined) return undefined;
    const network = networkOf(facts.address);
    const seen = await ctx.risk.sightings.lastSeen(client, 'network', network);
    if (seen !== undefined && seen >= ctx.clock.now() - settings.networkMemoryDays * dayMs) return undefined;
    if (seen === undefined && !(await ctx.risk.sightings.anySeen(client, 'network'))) return undefined;
    return { detail: seen === undefined ? `network ${network} never seen for this client` : `network ${network} not seen for this client in ${settings.networkMemoryDays} days` };
  },
  async observe(ctx, facts) {
    const client = clientPrincipal(facts);
    if (!client || facts.address === undefined) return;
    await ctx.risk.sightings.note(client, 'network', networkOf(facts.address));
  },
};
