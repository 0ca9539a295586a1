import type { Context } from '../../context.ts';
import type { RiskFacts, RiskPrincipal } from '../engine.ts';
import type { SightingKind } from '../sightings.ts';

/**
 * What the "new" signals share (docs/risk.md "Signals"): whom they remember things for, and what
 * "new" means. New is relative to a history: the first network, scope or actor ever seen for a
 * principal sets its baseline and fires nothing (there is nothing usual yet to differ from); after
 * that, a value never seen (or not within the signal's memory) fires.
 */

/**
 * The client an action is made through, for the signals that remember per client (networks,
 * scopes, audiences, resources): the token request's client, or an AuthZEN subject that is a client
 * or agent. Undefined for a person evaluated at the AuthZEN API (no client is named).
 */
export function clientPrincipal(facts: RiskFacts): RiskPrincipal | undefined {
  if (facts.clientId !== undefined) return { type: 'Client', id: facts.clientId };
  return facts.principal.type === 'Client' ? facts.principal : undefined;
}

/**
 * The values of `values` never seen for the principal as `kind` — none when the principal has no
 * sighting of `historyKind` at all (its first action sets the baseline). Known values and a
 * principal with history are answered from the sightings' cache: no round trip.
 */
export async function unseen(ctx: Context, principal: RiskPrincipal, kind: SightingKind, values: Iterable<string>, historyKind: SightingKind = kind): Promise<string[]> {
  const distinct = [...new Set(values)];
  const seen = await Promise.all(distinct.map((v) => ctx.risk.sightings.lastSeen(principal, kind, v)));
  const fresh = distinct.filter((_, i) => seen[i] === undefined);
  if (fresh.length === 0) return [];
  return (await ctx.risk.sightings.anySeen(principal, historyKind)) ? fresh : [];
}

/** Notes each value as seen now (only a new one, or one not refreshed within the hour, is written). */
export async function noteAll(ctx: Context, principal: RiskPrincipal, kind: SightingKind, values: Iterable<string>): Promise<void> {
  await Promise.all([...new Set(values)].map((v) => ctx.risk.sightings.note(principal, kind, v)));
}

/** A list for an audit detail: the first few values, and how many more. */
export function listed(values: readonly string[], most = 3): string {
  const shown = values.slice(0, most).map((v) => (v.length > 80 ? `${v.slice(0, 77)}...` : v));
  return values.length > most ? `${shown.join(', ')} and ${values.length - most} more` : shown.join(', ');
}
