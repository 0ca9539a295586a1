import { networkOf } from '../network.ts';
import type { RiskSignal } from '../engine.ts';

const dayMs = 86_400_000;

/**
 * `new_network` at a sign-in: the request comes from a network (IPv4 /24, IPv6 /48: src/risk/network.ts) not
 * seen for this principal within `networkMemoryDays`. After a success the network is remembered
 * (`risk_sightings`, kind `network`). A request without a source address fires nothing, nor does
 * a person's first sign-in (no network seen yet: it sets the baseline).
 */
export const loginNewNetwork: RiskSignal = {
  name: 'new_network',
  moments: ['login'],
  async evaluate(deps, facts, settings) {
    if (facts.address === undefined) return undefined;
    const network = networkOf(facts.address);
    const seen = await deps.risk.sightings.lastSeen(facts.principal, 'network', network);
    if (seen === undefined && !(await deps.risk.sightings.anySeen(facts.principal, 'network'))) return undefined;
    if (seen === undefined) return { detail: `network ${network} never seen` };
    if (seen < deps.clock.now() - settings.networkMemoryDays * dayMs) return { detail: `network ${network} not seen for ${settings.networkMemoryDays} days` };
    return undefined;
  },
  async observe(_deps, facts, _settings, notes) {
    if (facts.address !== undefined) await notes.note(facts.principal, 'network', networkOf(facts.address));
  },
};
