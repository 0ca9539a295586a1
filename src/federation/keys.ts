import type { KeyObject } from 'node:crypto';
import type { Clock } from '../clock.ts';
import { algorithmsForKeyType, asymmetricJwsAlgorithms, importPublicJwk, jwkAlgorithms, privateMemberOf, type JwsAlgorithm } from '../jose/index.ts';
import { fetchJson, type JsonFetcher } from './fetch.ts';
import { RemoteSets, type HeldSet } from './remote-sets.ts';
import type { Partner } from './definition.ts';

/**
 * Signature algorithms a partner profile may allow: asymmetric only (never `none`, never HMAC:
 * a partner's public key must never serve as a shared secret, RFC 8725 §2.1, §3.1).
 */
export const partnerAlgorithms = asymmetricJwsAlgorithms;
export type PartnerAlg = JwsAlgorithm;

/** One public key of a partner, imported once. */
export interface PartnerKey {
  /** An opaque lookup key (RFC 7517 §4.5; RFC 8725 §3.10). */
  kid: string | undefined;
  /** `EC P-256`, `OKP Ed25519`, `RSA 2048`: for messages. */
  type: string;
  /** The algorithms this key may verify: fixed by its type, narrowed by its `alg`, `use` and `key_ops`. */
  algorithms: PartnerAlg[];
  key: KeyObject;
}

/**
 * Imports one JWK as a public key, or says why it cannot be used. A private member refuses the
 * key (the caller refuses the whole set); only the members that define the public key reach the
 * import, so an `x5c` or `x5u` in a JWK is never looked at.
 */
export function importPartnerKey(jwk: unknown): { key: PartnerKey } | { error: string } {
  if (typeof jwk !== 'object' || jwk === null || Array.isArray(jwk)) return { error: 'is not a JSON object' };
  const j = jwk as Record<string, unknown>;
  const secret = privateMemberOf(j);
  if (secret) return { error: `is not a public key (has private member "${secret}")` };
  if (j.kid !== undefined && (typeof j.kid !== 'string' || j.kid === '')) return { error: 'has a kid that is not a non-empty string' };
  const byType = algorithmsForKeyType(j);
  if (byType.length === 0) return { error: `has an unsupported key type (${String(j.kty)}${j.crv ? ` ${String(j.crv)}` : ''}); EC P-256/P-384/P-521, OKP Ed25519 or RSA` };
  const imported = importPublicJwk(j);
  if ('error' in imported) return imported;
  const { key } = imported;
  const bits = key.asymmetricKeyDetails?.modulusLength;
  // RFC 7518 §3.3, §3.5: RSA keys of 2048 bits or more.
  if (j.kty === 'RSA' && (bits ?? 0) < 2048) return { error: `is an RSA key of ${bits} bits (at least 2048 are required)` };
  // RFC 7517 §4.2-4.4: a key restricted to another use, operation or algorithm verifies nothing
  // here; a JWK's `alg` of EdDSA or Ed25519 allows both names of that one algorithm (RFC 9864 §2.2).
  const algorithms = jwkAlgorithms(j);
  const type = j.kty === 'RSA' ? `RSA ${bits}` : `${String(j.kty)} ${String(j.crv)}`;
  return { key: { kid: typeof j.kid === 'string' ? j.kid : undefined, type, algorithms, key } };
}

/**
 * Reads a JWK Set (RFC 7517 §5): an object with a `keys` array. A set that holds a private key is
 * refused whole (its owner leaked it, or sent the wrong file); keys of unsupported types, or for
 * encryption, are left out and named in `skipped`.
 */
export function readKeySet(document: unknown): { keys: PartnerKey[]; skipped: string[] } | { error: string } {
  if (typeof document !== 'object' || document === null || !Array.isArray((document as { keys?: unknown }).keys)) {
    return { error: 'is not a JWK Set (a JSON object with a "keys" array)' };
  }
  const keys: PartnerKey[] = [];
  const skipped: string[] = [];
  for (const [i, jwk] of ((document as { keys: unknown[] }).keys).entries()) {
    const imported = importPartnerKey(jwk);
    const name = `keys[${i}]${typeof (jwk as { kid?: unknown })?.kid === 'string' ? ` (kid ${(jwk as { kid: string }).kid})` : ''}`;
    if ('error' in imported) {
      if (imported.error.startsWith('is not a public key')) return { error: `${name} ${imported.error}` };
      skipped.push(`${name} ${imported.error}`);
    } else if (imported.key.algorithms.length === 0) {
      skipped.push(`${name} is not for signatures`);
    } else {
      keys.push(imported.key);
    }
  }
  return { keys, skipped };
}

/** What a key set lookup found. */
export interface KeySetResult {
  keys: PartnerKey[];
  /** Where they came from: `inline jwks` or the jwks_uri. */
  source: string;
  /** True when this lookup fetched the jwks_uri. */
  fetched: boolean;
}

export interface PartnerKeysOptions {
  fetch?: JsonFetcher;
  /** How long a fetched key set is used before it is fetched again; default 10 minutes. */
  cacheMs?: number;
  /** Fewest milliseconds between two fetches of one partner's jwks_uri; default 60 s. */
  minRefreshMs?: number;
}

export const defaultKeyCacheMs = 10 * 60_000;
export const defaultMinRefreshMs = 60_000;

/**
 * The partners' key sets: inline ones imported once per profile version, remote ones (jwks_uri)
 * fetched with the SSRF rules (fetch.ts) and kept for `cacheMs`. A refresh (for a kid not in the
 * set) and a retry after a failure happen at most once per `minRefreshMs` per partner
 * (./remote-sets.ts, shared with the clients' jwks_uri).
 */
export class PartnerKeys {
  readonly #clock: Clock;
  readonly #fetch: JsonFetcher;
  readonly #cacheMs: number;
  readonly #minRefreshMs: number;
  readonly #inline = new WeakMap<Partner, PartnerKey[]>();
  readonly #remote: RemoteSets<PartnerKey[]>;

  constructor(clock: Clock, options: PartnerKeysOptions = {}) {
    this.#clock = clock;
    this.#fetch = options.fetch ?? fetchJson;
    this.#cacheMs = options.cacheMs ?? defaultKeyCacheMs;
    this.#minRefreshMs = options.minRefreshMs ?? defaultMinRefreshMs;
    this.#remote = new RemoteSets(clock, { minRefreshMs: this.#minRefreshMs });
  }

  /**
   * The partner's keys. With `refresh` (a kid was not found), a jwks_uri is fetched again unless
   * it was fetched less than `minRefreshMs` ago. Resolves `{ error }` when no usable set is at hand.
   */
  async get(partner: Partner, options: { refresh?: boolean } = {}): Promise<KeySetResult | { error: string }> {
    if (!partner.jwks_uri) {
      let keys = this.#inline.get(partner);
      if (!keys) {
        const read = readKeySet(partner.jwks);
        keys = 'error' in read ? [] : read.keys;
        this.#inline.set(partner, keys);
      }
      return { keys, source: 'inline jwks', fetched: false };
    }
    const uri = partner.jwks_uri;
    // Keyed by everything the fetch depends on: a changed profile starts afresh.
    const cacheKey = `${partner.id}\n${uri}\n${partner.allow_private_network}`;
    const { entry, fresh, fetched, mayFetch } = await this.#remote.get(cacheKey, options.refresh ?? false, (target) => this.#load(partner, uri, target));
    if (fresh) return { keys: fresh, source: uri, fetched };
    const why = entry.error ?? 'it was not fetched yet';
    const wait = mayFetch ? '' : ` (next attempt in at most ${Math.ceil(this.#minRefreshMs / 1000)} s)`;
    return { error: `the keys of partner ${partner.id} are not available: ${why}${wait}` };
  }

  /** Drops every fetched key set (tests, and after a profile change seen by this process). */
  clear(): void {
    this.#remote.clear();
  }

  async #load(partner: Partner, uri: string, entry: HeldSet<PartnerKey[]>): Promise<void> {
    try {
      const document = await this.#fetch(uri, { allowPrivateNetwork: partner.allow_private_network });
      const read = readKeySet(document);
      if ('error' in read) throw new Error(`${uri} ${read.error}`);
      entry.value = read.keys;
      // Used for `cacheMs` from when it arrived.
      entry.freshUntil = this.#clock.now() + this.#cacheMs;
      entry.error = undefined;
    } catch (error) {
      entry.error = (error as Error).message;
    }
  }
}
