import { acr, acrLadder, acrRank, amr, type Acr } from '../../identity/acr.ts';
import type { IdentityProvider } from './definition.ts';

/**
 * The source of assurance of an upstream sign-in (docs/identity-brokering.md "Assurance"): the
 * level on Clearance's ladder that the upstream's `acr` stands for by the provider's declaration,
 * never above what the provider is trusted to assert (`acr.max`). An `acr` the declaration does
 * not map — or none — is a password's level: an upstream sign-in is at least one factor, and
 * nothing more is believed without a declaration. `amr` carries the upstream's RFC 8176 values
 * only when its `acr` was declared and believed as asserted; an undeclared or capped one keeps none
 * of them (a relying party reading `mfa` must be able to rely on it), and every upstream sign-in
 * has `urn:clearance:amr:upstream` (src/identity/acr.ts), so what was done elsewhere stays visible.
 */

/** RFC 8176 §2's registered values: the only ones passed on from an upstream. */
const registeredAmr = new Set(['face', 'fpt', 'geo', 'hwk', 'iris', 'kba', 'mca', 'mfa', 'otp', 'pin', 'pwd', 'rba', 'retina', 'sc', 'sms', 'swk', 'tel', 'user', 'vbm', 'wia']);

export interface Assurance {
  /** The level the session holds. */
  acr: Acr;
  amr: string[];
  /** The upstream's issuer: the source of assurance named in the session, tokens and events. */
  source: string;
  provider: string;
  /** What the upstream asserted, for the audit event. */
  asserted: { acr?: string; amr: string[] };
  /** The upstream asserted more than it is trusted for: the level was lowered to its `max`. */
  capped: boolean;
}

export function assuranceOf(provider: Pick<IdentityProvider, 'id' | 'issuer' | 'acr'>, asserted: { acr?: string; amr: string[] }): Assurance {
  // Own keys only: an asserted "constructor" or "__proto__" maps to nothing.
  const declared = asserted.acr !== undefined && Object.hasOwn(provider.acr.map, asserted.acr) ? provider.acr.map[asserted.acr] : undefined;
  const mapped: Acr = declared ?? acr.password;
  const capped = acrRank(mapped) > acrRank(provider.acr.max);
  const level = capped ? provider.acr.max : mapped;
  // The upstream's amr is believed only with its acr: declared for this upstream and not capped.
  const passed = declared !== undefined && !capped ? asserted.amr.filter((value) => registeredAmr.has(value)) : [];
  return {
    acr: acrLadder[acrRank(level)]!,
    amr: [...new Set([...passed, amr.upstream])],
    source: provider.issuer,
    provider: provider.id,
    // What was asserted, bounded (it goes into the audit event as it came).
    asserted: { ...(asserted.acr !== undefined ? { acr: asserted.acr.slice(0, 200) } : {}), amr: asserted.amr.slice(0, 10).map((value) => value.slice(0, 64)) },
    capped,
  };
}
