import { acr, isKnownAcr, type Acr } from '../../identity/acr.ts';
import { Validator, join } from '../../validation.ts';

/**
 * Which `acr` values an asserting party (an upstream identity provider, src/federation/upstream; a partner,
 * src/federation) is trusted for: each of its values that stands for one of Clearance's levels,
 * and the most it may assert (docs/identity-brokering.md "Assurance").
 */
export interface AcrTrust {
  map: Record<string, Acr>;
  max: Acr;
}

/** Trusted for nothing above a password unless the declaration says so. */
export const defaultAcrTrust: AcrTrust = { map: {}, max: acr.password };

/** Reads an `acr` block: `{ map: { <their value>: <our level> }, max: <our level> }`. */
export function readAcrTrust(v: Validator, path: string, value: unknown): AcrTrust | undefined {
  const o = v.object(path, value);
  if (!o) return undefined;
  v.knownKeys(path, o, ['map', 'max']);
  const level = (p: string, x: unknown): Acr | undefined => {
    const text = v.string(p, x);
    if (text === undefined) return undefined;
    if (!isKnownAcr(text)) return v.fail(p, `must be one of Clearance's levels (${Object.values(acr).join(', ')})`);
    return text;
  };
  const max = o.max === undefined ? acr.password : level(join(path, 'max'), o.max);
  const map: Record<string, Acr> = {};
  if (o.map !== undefined) {
    const m = v.object(join(path, 'map'), o.map);
    if (!m) return undefined;
    for (const [upstream, local] of Object.entries(m)) {
      const mapped = level(join(join(path, 'map'), upstream), local);
      if (mapped) map[upstream] = mapped;
    }
  }
  return max ? { map, max } : undefined;
}
