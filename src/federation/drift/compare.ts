import type { BaselineKey } from './observe.ts';

/** What drifted between the baseline and a look at the partner (the details of `partner.drifted`). */
export interface DriftChanges {
  keys_added: { thumbprint: string; kid?: string; algorithms: string[] }[];
  keys_removed: { thumbprint: string; kid?: string; algorithms: string[] }[];
  /** A key still published (same thumbprint) whose algorithms changed (its `alg`, `use` or `key_ops`). */
  algorithms_changed: { thumbprint: string; kid?: string; old: string[]; new: string[] }[];
  /** The metadata's issuer changed (null: the metadata named none). */
  issuer?: { old: string | null; new: string | null };
}

/** The baseline side of a comparison: what was recorded last. */
export interface Baseline {
  keys: BaselineKey[];
  /** The metadata's issuer at the baseline; the profile's issuer when the partner published no metadata then. */
  issuer: string | null;
}

/**
 * Compares keys by RFC 7638 thumbprint (a kid is only a name: a new key under an old kid is a
 * key removed and one added) and the metadata's issuer. Undefined when nothing drifted.
 * `observed.issuer` undefined: the metadata was not read this time, so its issuer is not compared.
 */
export function compareBaseline(baseline: Baseline, observed: { keys?: BaselineKey[]; issuer?: string | null }): DriftChanges | undefined {
  const changes: DriftChanges = { keys_added: [], keys_removed: [], algorithms_changed: [] };
  if (observed.keys) {
    const before = new Map(baseline.keys.map((k) => [k.thumbprint, k]));
    const after = new Map(observed.keys.map((k) => [k.thumbprint, k]));
    for (const key of observed.keys) {
      const old = before.get(key.thumbprint);
      if (!old) changes.keys_added.push(key);
      else if (old.algorithms.join(' ') !== key.algorithms.join(' ')) {
        changes.algorithms_changed.push({ thumbprint: key.thumbprint, ...(key.kid !== undefined ? { kid: key.kid } : {}), old: old.algorithms, new: key.algorithms });
      }
    }
    for (const key of baseline.keys) if (!after.has(key.thumbprint)) changes.keys_removed.push(key);
  }
  // Metadata that appears naming the profile's issuer is recorded, not a drift; another issuer is.
  if (observed.issuer !== undefined && observed.issuer !== baseline.issuer) {
    changes.issuer = { old: baseline.issuer, new: observed.issuer };
  }
  const drifted = changes.keys_added.length + changes.keys_removed.length + changes.algorithms_changed.length > 0 || changes.issuer !== undefined;
  return drifted ? changes : undefined;
}
