import { networkOf } from '../network.ts';
import type { RiskSignal } from '../engine.ts';

const dayMs = 86_400_000;

/**
 * `admin_new_network` (intrusion signal): an admin API write from a network (IPv4 /24, IPv6 /48)
 * this administrator has not used within `networkMemoryDays` (`risk_sightings`, kind
 * `admin_network`, remembered after each action). A CLI action has no source address: it fires
 * nothing (the CLI runs where the database is reachable from).
 */
export const adminNewNetwork: RiskSignal = {
  name: 'admin_new_network',
  moments: ['admin'],
  async evaluate(deps, facts, settings) {
    if (facts.address === undefined) return undefined;
    const network = networkOf(facts.address);
    const seen = await deps.risk.sightings.lastSeen(facts.principal, 'admin_network', network);
    if (seen === undefined) return { detail: `network ${network} never used by this administrator` };
    if (seen < deps.clock.now() - settings.networkMemoryDays * dayMs) return { detail: `network ${network} not used for ${settings.networkMemoryDays} days` };
    return undefined;
  },
  async observe(deps, facts) {
    if (facts.address !== undefined) await deps.risk.sightings.note(facts.principal, 'admin_network', networkOf(facts.address));
  },
};
