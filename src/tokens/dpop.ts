import { createHash, createHmac, createPublicKey, hkdfSync, timingSafeEqual, type JsonWebKey, type KeyObject } from 'node:crypto';
import { epochSeconds, type Clock } from '../clock.ts';
import { verifyCompactSignature } from '../keys/jws-verify.ts';
import { OAuthError } from '../oauth-error.ts';
import type { ReplayCache } from './replay-cache.ts';
import { accessTokenHash, normalizeHtu } from '../guard/dpop.ts';
import { hasControlCharacter } from '../parameters.ts';

/**
 * DPoP, Demonstrating Proof of Possession (RFC 9449): proof validation (§4.3), JWK thumbprints
 * (RFC 7638), the access-token hash `ath` (§4.2) and stateless server nonces (§8, §9). No HTTP:
 * the caller passes the request's DPoP header values, method and URL, and maps the errors to its
 * endpoint (JSON at the authorization server, a WWW-Authenticate challenge at a resource server).
 */

/** Proof algorithms accepted (RFC 9449 §4.3 (5): asymmetric, supported). Never `none`, RS256 or HS*. */
export const dpopAlgs = ['ES256', 'EdDSA', 'PS256'] as const;
export type DpopAlg = (typeof dpopAlgs)[number];

/** `iat` may be this many seconds before or after the server's clock (RFC 9449 §4.3 (11), §11.1). */
export const dpopIatWindowSeconds = 60;
/** Largest proof accepted, in bytes; larger is refused before parsing (a 400, never a 5xx). */
export const maxDpopProofBytes = 8 * 1024;
/** Longest `jti` accepted (it becomes part of a database key). */
export const maxDpopJtiLength = 256;

/** The typ of a DPoP proof (RFC 9449 §4.2), compared exactly. */
const dpopTyp = 'dpop+jwt';

/** A proof that passed every check of RFC 9449 §4.3, its `jti` consumed. */
export interface VerifiedDpopProof {
  /** RFC 7638 SHA-256 thumbprint of the proof's public key: the `cnf.jkt` of what it binds. */
  jkt: string;
  jti: string;
  iat: number;
  alg: DpopAlg;
}

/** What the HTTP layer hands over about one request. */
export interface DpopRequest {
  /** Every value of every DPoP header field of the request (more than one is refused, §4.3 (1)). */
  proofs: readonly string[];
  /** The request method, as received. */
  method: string;
  /**
   * The absolute URLs the request may have been addressed to (query and fragment ignored): the
   * issuer's origin and the mTLS alias origin, each with the request's path.
   */
  urls: readonly string[];
  /** The access token presented with the proof, at a resource: the proof must carry its `ath` (§4.3 (12)). */
  accessToken?: string;
}

/** What proof validation needs from the server. */
export interface DpopDeps {
  /** Single use of proof `jti`s across nodes (the database; DESIGN §6). */
  replay: ReplayCache;
  clock: Clock;
  /** Server nonces (RFC 9449 §8, §9). */
  nonces: DpopNonces;
  /** Whether every proof must carry a current server nonce (CLEARANCE_DPOP_NONCE=required). */
  requireNonce: boolean;
}

/**
 * Verifies the DPoP proof of a request (RFC 9449 §4.3) and consumes its `jti`. Resolves undefined
 * when the request carries no DPoP header at all (the caller decides whether one was required).
 * The checks, in the order of §4.3:
 * 1. exactly one DPoP header field;
 * 2. its value is one well-formed compact JWS (three canonical base64url segments, JSON objects);
 * 3. every required header parameter and claim is present: typ, alg, jwk; jti, htm, htu, iat;
 *    `ath` with an access token; `nonce` when nonces are required;
 * 4. typ is `dpop+jwt`;
 * 5. alg is an allowed asymmetric algorithm (ES256, EdDSA, PS256);
 * 6. jwk is a public key (no private members) of the type alg needs;
 * 7. the signature verifies with that key;
 * 8. htm is the request method; 9. htu is the request URL without query and fragment, normalised
 *    (RFC 3986 §6: scheme and host case-insensitive, default port removed);
 * 10. the nonce is current when nonces are required (else `use_dpop_nonce` with a fresh one);
 * 11. iat is within ±60 s of now; 12. ath is the hash of the access token presented;
 * then the `jti` is used once per key (§11.1), through the database, before any binding check.
 * Failures are OAuthError `invalid_dpop_proof` (400) or `use_dpop_nonce` (400, DPoP-Nonce header).
 */
export async function verifyDpopProof(request: DpopRequest, deps: DpopDeps): Promise<VerifiedDpopProof | undefined> {
  const proof = checkDpopProof(request, deps);
  if (proof) await useDpopProof(proof, deps);
  return proof;
}

/**
 * Every rule of `verifyDpopProof` except the single use of the `jti`: no database, no write. The
 * token and PAR endpoints check the proof before client authentication (so a nonce retry does not
 * cost the client its assertion) and use it after (so an unauthenticated caller writes nothing).
 */
export function checkDpopProof(request: DpopRequest, deps: Omit<DpopDeps, 'replay'>): VerifiedDpopProof | undefined {
  if (request.proofs.length === 0) return undefined;
  // RFC 9449 §4.3 (1): not more than one DPoP HTTP request header field.
  if (request.proofs.length > 1) throw invalidProof('more than one DPoP header field', 'send exactly one DPoP header');
  const proof = request.proofs[0]!;
  // §4.3 (2): a single well-formed JWT.
  const { header, claims } = parseProof(proof);

  // §4.3 (3), (4): typ dpop+jwt (a proof is no other kind of JWT, RFC 8725 §3.11).
  if (header.typ === undefined) throw invalidProof('DPoP proof has no typ', 'the DPoP proof must have typ dpop+jwt');
  if (header.typ !== dpopTyp) throw invalidProof(`DPoP proof typ ${describe(header.typ)}`, 'the DPoP proof must have typ dpop+jwt');
  // §4.3 (5): an asymmetric algorithm we support; `none` (any case), RS256 and HS* never.
  const alg = header.alg;
  if (alg === undefined) throw invalidProof('DPoP proof has no alg', 'the DPoP proof must have alg');
  if (typeof alg !== 'string' || !(dpopAlgs as readonly string[]).includes(alg)) {
    throw invalidProof(`DPoP proof alg ${describe(alg)} is not allowed`, `the DPoP proof alg must be one of ${dpopAlgs.join(', ')}`);
  }
  if (header.crit !== undefined) throw invalidProof('DPoP proof header has crit', 'the DPoP proof must not use crit');
  // §4.3 (6): the jwk header parameter is a public key, of the type the algorithm needs.
  if (header.jwk === undefined) throw invalidProof('DPoP proof has no jwk', 'the DPoP proof must carry its public key as jwk');
  const { key, jkt } = importProofKey(header.jwk, alg as DpopAlg);
  // §4.3 (7): the signature verifies with that key.
  if (!verifyCompactSignature(alg as DpopAlg, key, proof)) throw invalidProof('DPoP proof signature does not verify with its jwk', 'the DPoP proof signature is invalid');

  const { jti, htm, htu, iat, ath, nonce } = claims;
  if (jti === undefined) throw invalidProof('DPoP proof has no jti', 'the DPoP proof must have jti');
  // A control character could not be a database key (issue 20 item 4: NUL was a 500 on PostgreSQL).
  if (typeof jti !== 'string' || jti.length === 0 || jti.length > maxDpopJtiLength || hasControlCharacter(jti)) {
    throw invalidProof(`DPoP proof jti is not a string of 1-${maxDpopJtiLength} characters without control characters`, 'the DPoP proof jti is malformed');
  }
  if (htm === undefined) throw invalidProof('DPoP proof has no htm', 'the DPoP proof must have htm');
  if (htu === undefined) throw invalidProof('DPoP proof has no htu', 'the DPoP proof must have htu');
  if (iat === undefined) throw invalidProof('DPoP proof has no iat', 'the DPoP proof must have iat');
  // §4.3 (8): htm matches the method (methods are case-sensitive, RFC 9110 §9.1).
  if (htm !== request.method) throw invalidProof(`DPoP proof htm ${describe(htm)} for a ${request.method} request`, 'the DPoP proof htm does not match the request method');
  // §4.3 (9): htu matches the request URI, ignoring query and fragment.
  const presented = typeof htu === 'string' ? normalizeHtu(htu) : undefined;
  if (presented === undefined) throw invalidProof('DPoP proof htu is not an http(s) URL', 'the DPoP proof htu is malformed');
  if (!request.urls.some((url) => normalizeHtu(url) === presented)) {
    throw invalidProof(`DPoP proof htu ${describe(htu)} is not this endpoint`, 'the DPoP proof htu does not match the request URL');
  }
  // §4.3 (10), §8, §9: the server's nonce, when it requires one.
  if (deps.requireNonce && (typeof nonce !== 'string' || !deps.nonces.isValid(nonce))) {
    throw useDpopNonce(deps.nonces.current(), nonce === undefined ? 'DPoP proof has no nonce' : 'DPoP proof nonce is not current');
  }
  // §4.3 (11): iat within an acceptable window.
  // RFC 7519 §2: a NumericDate, which may have a fraction.
  if (typeof iat !== 'number' || !Number.isFinite(iat)) throw invalidProof('DPoP proof iat is not a number', 'the DPoP proof iat is malformed');
  const now = epochSeconds(deps.clock);
  if (Math.abs(iat - now) > dpopIatWindowSeconds) {
    throw invalidProof(`DPoP proof iat is ${iat - now} s from now (window ±${dpopIatWindowSeconds} s)`, 'the DPoP proof is too old or too far in the future');
  }
  // §4.3 (12): with an access token, ath is the base64url SHA-256 of its ASCII value.
  if (request.accessToken !== undefined) {
    if (ath === undefined) throw invalidProof('DPoP proof has no ath', 'the DPoP proof must have ath with an access token');
    if (typeof ath !== 'string' || !safeEqual(ath, accessTokenHash(request.accessToken))) {
      throw invalidProof('DPoP proof ath is not the hash of the access token presented', 'the DPoP proof ath does not match the access token');
    }
  }
  return { jkt, jti, iat, alg: alg as DpopAlg };
}

/**
 * RFC 9449 §11.1: a proof's jti is accepted once per key while its iat is in the window; the
 * database's primary key makes it hold across nodes. The last of the proof's rules, and always
 * before any binding check (a replayed proof is a replay, whatever key it is of).
 */
export async function useDpopProof(proof: VerifiedDpopProof, deps: Pick<DpopDeps, 'replay'>): Promise<void> {
  const fresh = await deps.replay.use(`dpop:${proof.jkt}:${proof.jti}`, Math.ceil(proof.iat + dpopIatWindowSeconds + 1) * 1000);
  if (!fresh) throw invalidProof(`DPoP proof jti ${describe(proof.jti)} was already used`, 'the DPoP proof was already used');
}

// One normalisation and one `ath` for the server and the guard library (which imports nothing of the server's).
export { accessTokenHash, normalizeHtu } from '../guard/dpop.ts';

/** A JWK thumbprint looks like this: base64url of 32 bytes (RFC 7638 with SHA-256). */
export const jktPattern = /^[A-Za-z0-9_-]{43}$/;

/**
 * RFC 7638 §3: the SHA-256 thumbprint of a public JWK, over its required members in
 * lexicographic order, as base64url. Undefined for a key type we do not accept.
 */
export function jwkThumbprint(jwk: Record<string, unknown>): string | undefined {
  let members: Record<string, unknown>;
  if (jwk.kty === 'EC') members = { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y };
  else if (jwk.kty === 'OKP') members = { crv: jwk.crv, kty: jwk.kty, x: jwk.x };
  else if (jwk.kty === 'RSA') members = { e: jwk.e, kty: jwk.kty, n: jwk.n };
  else return undefined;
  if (Object.values(members).some((v) => typeof v !== 'string')) return undefined;
  return createHash('sha256').update(JSON.stringify(members)).digest('base64url');
}

/** Members only a private or symmetric JWK has (RFC 7518 §6.2.2, §6.3.2, §6.4, OKP `d`). */
const privateMembers = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];

/** Imported proof keys by thumbprint: a client sends the same key with every proof. */
const keyCache = new Map<string, KeyObject>();
const keyCacheLimit = 1000;

/** §4.3 (6): the proof's `jwk` as a KeyObject and its thumbprint; a private or unsuitable key is refused. */
function importProofKey(jwk: unknown, alg: DpopAlg): { key: KeyObject; jkt: string } {
  if (typeof jwk !== 'object' || jwk === null || Array.isArray(jwk)) throw invalidProof('DPoP proof jwk is not a JSON object', 'the DPoP proof jwk is malformed');
  const members = jwk as Record<string, unknown>;
  const secret = privateMembers.find((m) => m in members);
  // RFC 9449 §4.3 (6): the jwk MUST NOT contain a private key.
  if (secret) throw invalidProof(`DPoP proof jwk has the private member "${secret}"`, 'the DPoP proof jwk must be a public key');
  const fits =
    (alg === 'ES256' && members.kty === 'EC' && members.crv === 'P-256') ||
    (alg === 'EdDSA' && members.kty === 'OKP' && members.crv === 'Ed25519') ||
    (alg === 'PS256' && members.kty === 'RSA');
  if (!fits) throw invalidProof(`DPoP proof jwk (kty ${describe(members.kty)}) does not fit alg ${alg}`, `the DPoP proof jwk is not a key for ${alg}`);
  const jkt = jwkThumbprint(members);
  if (jkt === undefined) throw invalidProof('DPoP proof jwk lacks required members', 'the DPoP proof jwk is malformed');
  let key = keyCache.get(jkt);
  if (!key) {
    try {
      const { kty, crv, x, y, n, e } = members;
      key = createPublicKey({ key: Object.fromEntries(Object.entries({ kty, crv, x, y, n, e }).filter(([, v]) => v !== undefined)) as JsonWebKey, format: 'jwk' });
    } catch {
      throw invalidProof('DPoP proof jwk cannot be imported', 'the DPoP proof jwk is not a valid public key');
    }
    if (keyCache.size >= keyCacheLimit) keyCache.delete(keyCache.keys().next().value!);
    keyCache.set(jkt, key);
  }
  return { key, jkt };
}

const base64url = /^[A-Za-z0-9_-]+$/;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** §4.3 (2): one compact JWS, three canonical base64url segments, header and claims JSON objects. */
function parseProof(proof: string): { header: Record<string, unknown>; claims: Record<string, unknown> } {
  if (Buffer.byteLength(proof, 'utf8') > maxDpopProofBytes) throw invalidProof('DPoP proof is too large', 'the DPoP proof is too large');
  const segments = proof.split('.');
  if (segments.length !== 3 || segments.some((s) => s === '' || !base64url.test(s) || Buffer.from(s, 'base64url').toString('base64url') !== s)) {
    throw invalidProof('DPoP header is not a compact JWS', 'the DPoP proof must be a signed JWT');
  }
  return { header: decodeObject(segments[0]!), claims: decodeObject(segments[1]!) };
}

function decodeObject(segment: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(utf8.decode(Buffer.from(segment, 'base64url')));
  } catch {
    throw invalidProof('DPoP proof segment is not UTF-8 JSON', 'the DPoP proof is malformed');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalidProof('DPoP proof segment is not a JSON object', 'the DPoP proof is malformed');
  return value as Record<string, unknown>;
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** A short, printable rendering of a value from the proof, for details. */
function describe(value: unknown): string {
  const text = typeof value === 'string' ? value : JSON.stringify(value) ?? String(value);
  return JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}...` : text);
}

/** RFC 9449 §7.1 error code for an invalid proof; 400 at the authorization server (§5). */
export function invalidProof(detail: string, description = 'the DPoP proof is invalid'): OAuthError {
  return new OAuthError('invalid_dpop_proof', description, { status: 400, detail });
}

/** RFC 9449 §8: the client must retry with the server's nonce, given in the DPoP-Nonce header. */
export function useDpopNonce(nonce: string, detail: string): OAuthError {
  return new OAuthError('use_dpop_nonce', 'the DPoP proof must carry the nonce given in the DPoP-Nonce header', {
    status: 400,
    detail,
    headers: { 'dpop-nonce': nonce },
  });
}

/**
 * Server nonces for DPoP proofs (RFC 9449 §8, §9), stateless so that every node accepts every
 * node's nonce: a nonce is the truncated HMAC-SHA-256, under a secret derived from the master key,
 * of a time window's number. The current and the previous window are accepted (and the next, for
 * clock differences between nodes), so a nonce lives one to two periods; no storage, no
 * coordination.
 */
export class DpopNonces {
  readonly #secret: Buffer;
  readonly #clock: Clock;
  readonly #periodMs: number;
  #cached: { window: number; nonce: string } | undefined;

  constructor(secret: Buffer, clock: Clock, periodSeconds = 120) {
    this.#secret = secret;
    this.#clock = clock;
    this.#periodMs = periodSeconds * 1000;
  }

  /** The nonce of the current window (what the DPoP-Nonce header carries). */
  current(): string {
    const window = Math.floor(this.#clock.now() / this.#periodMs);
    if (this.#cached?.window !== window) this.#cached = { window, nonce: this.#nonceOf(window) };
    return this.#cached.nonce;
  }

  /** True for the nonce of the current, previous or next window. */
  isValid(nonce: string): boolean {
    if (nonce.length !== 24) return false;
    const window = Math.floor(this.#clock.now() / this.#periodMs);
    return [window, window - 1, window + 1].some((w) => safeEqual(nonce, this.#nonceOf(w)));
  }

  #nonceOf(window: number): string {
    return createHmac('sha256', this.#secret).update(`dpop-nonce:${window}`).digest().subarray(0, 18).toString('base64url');
  }
}

/** The nonce secret: HKDF-SHA-256 of the master key with a label of its own (never the key itself). */
export function dpopNonceSecret(masterKey: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', masterKey, Buffer.alloc(0), 'clearance dpop-nonce v1', 32));
}
