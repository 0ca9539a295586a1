import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { calculateJwkThumbprint, compactVerify, importJWK, type JWK } from 'jose';

/**
 * DPoP proof verification at a resource server (RFC 9449 §4.3, §7.1), on its own: the guard runs
 * inside other services, so it shares no code with the authorization server's internals. The
 * replay cache and the nonces are the guard's (in memory by default; pluggable for a cluster).
 */

/** Proof algorithms accepted by default: what Clearance's clients use (RFC 9449 §4.3 (5): asymmetric only). */
export const defaultDpopAlgorithms = ['ES256', 'EdDSA', 'PS256'] as const;
/** Default window for a proof's `iat` around the guard's clock, in seconds (RFC 9449 §4.3 (11), §11.1). */
export const defaultDpopIatWindowSeconds = 60;
/** Largest proof accepted, in bytes. */
const maxProofBytes = 8 * 1024;
/** Longest `jti` accepted. */
const maxJtiLength = 256;

/** Single use of proof `jti`s (RFC 9449 §11.1). `use` resolves false when the key was already used and has not expired. */
export interface DpopReplayStore {
  use(key: string, expiresAt: number): boolean | Promise<boolean>;
}

/** Server nonces (RFC 9449 §9): when a guard has a nonce source, every proof must carry a valid nonce. */
export interface DpopNonceSource {
  /** The nonce to hand out now (the DPoP-Nonce header). */
  current(): string;
  isValid(nonce: string): boolean;
}

export interface DpopCheckOptions {
  algorithms: readonly string[];
  iatWindowSeconds: number;
  replay: DpopReplayStore;
  nonces: DpopNonceSource | undefined;
  /** Milliseconds since the epoch. */
  now(): number;
}

/** What the resource request carried. */
export interface DpopProofInput {
  /** The DPoP header value(s) as received (more than one is refused). */
  header: string | readonly string[] | undefined;
  method: string;
  /** The absolute URL the client addressed. */
  url: string;
  /** The access token presented with the proof (its hash is the proof's `ath`). */
  accessToken: string;
}

/** A proof that passed every check, its `jti` consumed. */
export interface VerifiedProof {
  /** RFC 7638 SHA-256 thumbprint of the proof key: compared with the token's `cnf.jkt`. */
  jkt: string;
  jti: string;
  iat: number;
}

/** A proof refusal, before it becomes a GuardError with a DPoP challenge. */
export class DpopProofError extends Error {
  readonly code: 'invalid_dpop_proof' | 'use_dpop_nonce';
  readonly description: string;
  readonly detail: string;
  constructor(code: 'invalid_dpop_proof' | 'use_dpop_nonce', description: string, detail: string) {
    super(detail);
    this.code = code;
    this.description = description;
    this.detail = detail;
  }
}

function invalid(detail: string, description = 'the DPoP proof is invalid'): DpopProofError {
  return new DpopProofError('invalid_dpop_proof', description, detail);
}

/** Members only a private or symmetric JWK has (RFC 7518 §6.2.2, §6.3.2, §6.4; OKP `d`). */
const privateMembers = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];
const base64url = /^[A-Za-z0-9_-]+$/;

/**
 * Verifies the request's DPoP proof (RFC 9449 §4.3), in the order of the RFC:
 * 1. exactly one DPoP header; 2. one compact JWS, header and claims JSON objects;
 * 3. typ, alg, jwk, jti, htm, htu, iat and ath present; 4. typ `dpop+jwt`; 5. alg on the
 * allowlist (never `none` or a MAC); 6. jwk a public key; 7. the signature verifies with it;
 * 8. htm the request method; 9. htu the request URL (normalised, query and fragment ignored);
 * 10. the nonce, when the guard requires nonces; 11. iat within the window; 12. ath the hash of
 * the access token; then the `jti` is used once per key (§11.1). The caller compares the proof
 * key with the token's `cnf.jkt` afterwards (§7.1), so a replay is refused as a replay.
 */
export async function verifyDpopProof(input: DpopProofInput, options: DpopCheckOptions): Promise<VerifiedProof> {
  const values = input.header === undefined ? [] : typeof input.header === 'string' ? [input.header] : [...input.header];
  if (values.length === 0) throw invalid('no DPoP header', 'the DPoP scheme needs a DPoP proof');
  // RFC 9449 §4.3 (1): not more than one DPoP header field (node joins repeated ones with ", ").
  if (values.length > 1 || values[0]!.includes(',')) throw invalid('more than one DPoP header field', 'send exactly one DPoP header');
  const proof = values[0]!.trim();
  // §4.3 (2): a single well-formed JWT.
  if (Buffer.byteLength(proof) > maxProofBytes) throw invalid('DPoP proof is too large');
  const segments = proof.split('.');
  if (segments.length !== 3 || segments.some((s) => !base64url.test(s))) throw invalid('DPoP header is not a compact JWS', 'the DPoP proof must be a signed JWT');
  const header = decodeObject(segments[0]!);
  const claims = decodeObject(segments[1]!);

  // §4.3 (3), (4): typ dpop+jwt, compared exactly (a proof is no other kind of JWT, RFC 8725 §3.11).
  if (header.typ !== 'dpop+jwt') throw invalid(`DPoP proof typ ${describe(header.typ)}`, 'the DPoP proof must have typ dpop+jwt');
  // §4.3 (5): an allowed asymmetric algorithm; `none` (any case) and MACs never.
  const alg = header.alg;
  if (typeof alg !== 'string' || !options.algorithms.includes(alg)) {
    throw invalid(`DPoP proof alg ${describe(alg)} is not allowed`, `the DPoP proof alg must be one of ${options.algorithms.join(', ')}`);
  }
  if (header.crit !== undefined) throw invalid('DPoP proof header has crit', 'the DPoP proof must not use crit');
  // §4.3 (6): jwk is a public key.
  const jwk = header.jwk;
  if (typeof jwk !== 'object' || jwk === null || Array.isArray(jwk)) throw invalid('DPoP proof has no jwk object', 'the DPoP proof must carry its public key as jwk');
  const secret = privateMembers.find((m) => m in jwk);
  if (secret !== undefined) throw invalid(`DPoP proof jwk has the private member "${secret}"`, 'the DPoP proof jwk must be a public key');
  // §4.3 (7): the signature verifies with that key (jose checks the key type fits alg and RSA size).
  let jkt: string;
  try {
    const key = await importJWK(jwk as JWK, alg);
    await compactVerify(proof, key, { algorithms: [alg] });
    jkt = await calculateJwkThumbprint(jwk as JWK, 'sha256');
  } catch (error) {
    throw invalid(`DPoP proof does not verify with its jwk: ${(error as Error).message}`, 'the DPoP proof signature is invalid');
  }

  const { jti, htm, htu, iat, ath, nonce } = claims;
  if (typeof jti !== 'string' || jti.length === 0 || jti.length > maxJtiLength) throw invalid('DPoP proof jti is missing or malformed', 'the DPoP proof must have a jti');
  // §4.3 (8): htm is the method (methods are case-sensitive, RFC 9110 §9.1).
  if (htm !== input.method) throw invalid(`DPoP proof htm ${describe(htm)} for a ${input.method} request`, 'the DPoP proof htm does not match the request method');
  // §4.3 (9): htu is the request URI, ignoring query and fragment, after normalisation.
  const presented = typeof htu === 'string' ? normalizeHtu(htu) : undefined;
  if (presented === undefined) throw invalid('DPoP proof htu is missing or not an http(s) URL', 'the DPoP proof htu is malformed');
  if (presented !== normalizeHtu(input.url)) throw invalid(`DPoP proof htu ${describe(htu)} is not ${describe(input.url)}`, 'the DPoP proof htu does not match the request URL');
  // §4.3 (10), §9: the guard's nonce, when it requires one.
  if (options.nonces && (typeof nonce !== 'string' || !options.nonces.isValid(nonce))) {
    throw new DpopProofError('use_dpop_nonce', 'the DPoP proof must carry the nonce given in the DPoP-Nonce header', nonce === undefined ? 'DPoP proof has no nonce' : 'DPoP proof nonce is not current');
  }
  // §4.3 (11): iat within the window (RFC 7519 §2: a NumericDate).
  if (typeof iat !== 'number' || !Number.isFinite(iat)) throw invalid('DPoP proof iat is missing or not a number', 'the DPoP proof must have iat');
  const now = options.now() / 1000;
  if (Math.abs(iat - now) > options.iatWindowSeconds) {
    throw invalid(`DPoP proof iat is ${Math.round(iat - now)} s from now (window ±${options.iatWindowSeconds} s)`, 'the DPoP proof is too old or too far in the future');
  }
  // §4.3 (12), §7.1: ath is the base64url SHA-256 of the access token's ASCII value.
  if (typeof ath !== 'string' || !safeEqual(ath, accessTokenHash(input.accessToken))) {
    throw invalid(ath === undefined ? 'DPoP proof has no ath' : 'DPoP proof ath is not the hash of the access token', 'the DPoP proof ath does not match the access token');
  }
  // §11.1: the jti once per key while the iat is in the window; last, before any binding check.
  const fresh = await options.replay.use(`${jkt}:${jti}`, Math.ceil((iat + options.iatWindowSeconds + 1) * 1000));
  if (!fresh) throw invalid(`DPoP proof jti ${describe(jti)} was already used`, 'the DPoP proof was already used');
  return { jkt, jti, iat };
}

/** RFC 9449 §4.2 `ath`: base64url of the SHA-256 of the access token. */
export function accessTokenHash(accessToken: string): string {
  return createHash('sha256').update(accessToken, 'ascii').digest('base64url');
}

/**
 * Normalises an htu or request URL for comparison (RFC 9449 §4.3 (9); RFC 3986 §6.2.2, §6.2.3):
 * scheme and host lower case, default port removed, dot segments resolved, percent-encoded
 * unreserved characters decoded and other escapes upper case, an empty path `/`; query and
 * fragment dropped. Undefined for anything but an http(s) URL without userinfo.
 */
export function normalizeHtu(value: string): string | undefined {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return undefined;
  }
  if ((url.protocol !== 'https:' && url.protocol !== 'http:') || url.username !== '' || url.password !== '') return undefined;
  const path = url.pathname.replace(/%([0-9a-fA-F]{2})/g, (_match, hex: string) => {
    const char = String.fromCharCode(parseInt(hex, 16));
    return /[A-Za-z0-9\-._~]/.test(char) ? char : `%${hex.toUpperCase()}`;
  });
  return `${url.protocol}//${url.host}${path || '/'}`;
}

/**
 * The guard's default replay cache: in memory, bounded, each entry kept until its proof's `iat`
 * leaves the window. Expired entries are swept every few seconds and whenever the cache is full;
 * a cache full of live entries refuses new proofs (it never forgets a live `jti`: that would let a
 * replay through). One process only: several instances of a resource server behind a load
 * balancer share a store of their own (a database unique key, Redis SET NX) through
 * `DpopReplayStore`, or route a client to one instance.
 */
export class MemoryDpopReplayStore implements DpopReplayStore {
  readonly #entries = new Map<string, number>();
  readonly #maxEntries: number;
  readonly #now: () => number;
  #lastSweep = 0;

  constructor(options: { maxEntries?: number; now?: () => number } = {}) {
    this.#maxEntries = options.maxEntries ?? 100_000;
    this.#now = options.now ?? Date.now;
  }

  use(key: string, expiresAt: number): boolean {
    const now = this.#now();
    if (now - this.#lastSweep > 5_000 || this.#entries.size >= this.#maxEntries) this.#sweep(now);
    const seen = this.#entries.get(key);
    if (seen !== undefined && seen >= now) return false;
    if (this.#entries.size >= this.#maxEntries) throw new Error('the DPoP replay cache is full');
    this.#entries.set(key, expiresAt);
    return true;
  }

  /** Entries held (for monitoring and tests). */
  get size(): number {
    return this.#entries.size;
  }

  #sweep(now: number): void {
    this.#lastSweep = now;
    for (const [key, expiresAt] of this.#entries) if (expiresAt < now) this.#entries.delete(key);
  }
}

/**
 * Stateless server nonces (RFC 9449 §9) for a guard that wants them: the truncated HMAC of a time
 * window's number under a secret (random per process unless given; give every instance the same
 * secret so each accepts the others' nonces). The current, previous and next windows are valid.
 */
export function createDpopNonces(options: { secret?: Uint8Array; periodSeconds?: number; now?: () => number } = {}): DpopNonceSource {
  const secret = options.secret ?? randomBytes(32);
  const periodMs = (options.periodSeconds ?? 120) * 1000;
  const now = options.now ?? Date.now;
  const nonceOf = (window: number) => createHmac('sha256', secret).update(`dpop-nonce:${window}`).digest().subarray(0, 18).toString('base64url');
  return {
    current: () => nonceOf(Math.floor(now() / periodMs)),
    isValid(nonce) {
      const window = Math.floor(now() / periodMs);
      return nonce.length === 24 && [window, window - 1, window + 1].some((w) => safeEqual(nonce, nonceOf(w)));
    },
  };
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function decodeObject(segment: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(utf8.decode(Buffer.from(segment, 'base64url')));
  } catch {
    throw invalid('DPoP proof segment is not UTF-8 JSON', 'the DPoP proof is malformed');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalid('DPoP proof segment is not a JSON object', 'the DPoP proof is malformed');
  return value as Record<string, unknown>;
}

export function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** A short, printable rendering of a value from a proof or token, for details. */
export function describe(value: unknown): string {
  const text = typeof value === 'string' ? value : (JSON.stringify(value) ?? String(value));
  return JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}...` : text);
}
