import { createHash } from 'node:crypto';
import { jwkThumbprint } from '../../jose/jwk.ts';
import { canonicalize } from '../../jose/canonical-json.ts';
import { fetchMetadata } from '../check.ts';
import type { Partner } from '../definition.ts';
import { fetchJson, type JsonFetcher } from '../fetch.ts';
import { importPartnerKey } from '../keys.ts';

/** One key of a partner as the baseline keeps it: never key material beyond the RFC 7638 thumbprint. */
export interface BaselineKey {
  thumbprint: string;
  kid?: string;
  /** The algorithms it may verify (its type narrowed by `alg`, `use`, `key_ops`), sorted. */
  algorithms: string[];
}

/** What one look at the partner found: its keys and its metadata, or why each could not be read. */
export interface Observation {
  keys: { keys: BaselineKey[] } | { error: string };
  /** Absent metadata is `found: false` (a partner need not publish any, docs/federation.md). */
  metadata: { found: true; issuer: string | null; digest: string } | { found: false; error: string };
}

/**
 * Looks at the partner's live keys (its jwks_uri, fetched with the SSRF rules of ../fetch.ts;
 * inline keys as the profile has them) and metadata (../check.ts fetchMetadata). Never throws:
 * a failure is part of the observation.
 */
export async function observePartner(partner: Partner, fetch: JsonFetcher = fetchJson): Promise<Observation> {
  let keys: Observation['keys'];
  let document: unknown = partner.jwks;
  try {
    if (partner.jwks_uri) document = await fetch(partner.jwks_uri, { allowPrivateNetwork: partner.allow_private_network });
    keys = readBaselineKeys(document);
  } catch (error) {
    keys = { error: (error as Error).message };
  }
  let metadata: Observation['metadata'];
  try {
    const found = await fetchMetadata(partner, fetch);
    metadata =
      'error' in found
        ? { found: false, error: found.error }
        : { found: true, issuer: typeof found.document.issuer === 'string' ? found.document.issuer : null, digest: digest(found.document) };
  } catch (error) {
    metadata = { found: false, error: (error as Error).message };
  }
  return { keys, metadata };
}

/** The usable signing keys of a JWK Set, by thumbprint; an error for a set that is not one or holds a private key. */
export function readBaselineKeys(document: unknown): { keys: BaselineKey[] } | { error: string } {
  if (typeof document !== 'object' || document === null || !Array.isArray((document as { keys?: unknown }).keys)) {
    return { error: 'the key set is not a JWK Set (a JSON object with a "keys" array)' };
  }
  const keys: BaselineKey[] = [];
  for (const jwk of (document as { keys: unknown[] }).keys) {
    const imported = importPartnerKey(jwk);
    if ('error' in imported) {
      if (imported.error.startsWith('is not a public key')) return { error: `the key set holds a key that ${imported.error}` };
      continue;
    }
    const thumbprint = jwkThumbprint(jwk as Record<string, unknown>);
    if (!thumbprint || imported.key.algorithms.length === 0) continue;
    keys.push({ thumbprint, ...(imported.key.kid !== undefined ? { kid: imported.key.kid } : {}), algorithms: [...imported.key.algorithms].sort() });
  }
  keys.sort((a, b) => (a.thumbprint < b.thumbprint ? -1 : 1));
  return { keys };
}

/** SHA-256 of a JSON document's RFC 8785 canonical form: the same metadata always digests the same. */
function digest(document: unknown): string {
  return createHash('sha256').update(canonicalize(document)).digest('base64url');
}
