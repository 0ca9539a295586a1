/**
 * Compact JWS decoding (RFC 7515 §7.1) under the rules of RFC 8725 §3.3 and 8725bis: the one
 * decoder every JWT Clearance reads goes through (client assertions, request objects, DPoP proofs,
 * partner tokens, our own tokens, and the guard's access tokens and proofs). It checks structure
 * only; the signature, the algorithm and the claims are the caller's rules.
 *
 * Dependency-free (node: built-ins only): the guard library imports this folder too.
 */

/** A structurally valid compact JWS whose signature has not been checked. */
export interface DecodedJws {
  /** The JOSE header (RFC 7515 §4), a JSON object. */
  header: Record<string, unknown>;
  /** The payload as a JSON object: a JWT claims set (RFC 7519 §4), unverified. */
  claims: Record<string, unknown>;
}

/** Why a string is not a compact JWS of a JSON object; `reason` is for details and logs. */
export type JwsProblem =
  | 'empty'
  | 'too_large'
  | 'json_serialization'
  | 'jwe'
  | 'segments'
  | 'unsecured'
  | 'base64url'
  | 'header'
  | 'claims';

export type DecodeResult = { ok: true; jws: DecodedJws } | { ok: false; problem: JwsProblem; reason: string };

/** Caps used when the caller names none: what any JWT of ours, or sent to us, fits in. */
export const defaultMaxJwsBytes = 16 * 1024;

const base64urlPattern = /^[A-Za-z0-9_-]+$/;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Decodes a compact JWS whose payload is a JSON object (a JWT). Refuses, before any key is
 * touched: an empty or oversized input (a cap in UTF-8 bytes, default 16 KiB); the JWS JSON
 * serialization; a JWE (five segments) where a JWS is expected; anything but exactly three
 * segments; an empty signature (an unsecured JWT, RFC 7519 §6); a segment that is not canonical
 * unpadded base64url (RFC 7515 §2: no padding, no `+` or `/`, no stray bits, so one token has one
 * spelling); a header or payload that is not UTF-8 JSON of an object (RFC 7515 §5.2 (3)-(4),
 * RFC 7519 §7.2 (10)). Never throws.
 */
export function decodeCompactJws(token: string, options: { maxBytes?: number } = {}): DecodeResult {
  const maxBytes = options.maxBytes ?? defaultMaxJwsBytes;
  if (typeof token !== 'string' || token.length === 0) return fail('empty', 'the token is empty');
  // Counted only when it could fit: a string has at least as many UTF-8 bytes as UTF-16 units.
  const bytes = token.length > maxBytes ? token.length : Buffer.byteLength(token, 'utf8');
  if (bytes > maxBytes) return fail('too_large', `the token is ${token.length > maxBytes ? 'at least ' : ''}${bytes} bytes (limit ${maxBytes})`);
  // RFC 8725 §3.3: only the compact serialization.
  if (token.trimStart().startsWith('{')) return fail('json_serialization', 'the token uses the JWS JSON serialization; only the compact serialization is accepted');
  const segments = token.split('.');
  // RFC 7516 §9: five segments are a JWE; a signed JWT is expected (8725bis: never accept one in its place).
  if (segments.length === 5) return fail('jwe', 'the token is a JWE; a signed JWT (JWS) is required');
  if (segments.length !== 3) return fail('segments', `the token has ${segments.length} segments, not 3 (compact JWS)`);
  const [h, p, s] = segments as [string, string, string];
  if (s === '') return fail('unsecured', 'the token is unsecured (empty signature)');
  if (!isCanonicalBase64url(h) || !isCanonicalBase64url(p) || !isCanonicalBase64url(s)) {
    return fail('base64url', 'the token has a segment that is not canonical base64url');
  }
  const header = decodeJsonObject(h);
  if (!header) return fail('header', 'the token header is not a JSON object');
  const claims = decodeJsonObject(p);
  if (!claims) return fail('claims', 'the token claims set is not a JSON object');
  return { ok: true, jws: { header, claims } };
}

/**
 * The JOSE header of a compact JWS (any payload), or undefined: what `decodeProtectedHeader` gave,
 * under the same structural rules as `decodeCompactJws` minus the payload's shape.
 */
export function decodeJwsHeader(token: string, options: { maxBytes?: number } = {}): Record<string, unknown> | undefined {
  const decoded = decodeCompactJws(token, options);
  return decoded.ok ? decoded.jws.header : undefined;
}

/** A token that is not a compact JWS of a JSON object, from `decodeJwt`. */
export class JwsFormatError extends Error {
  readonly problem: JwsProblem;
  constructor(problem: JwsProblem, reason: string) {
    super(reason);
    this.problem = problem;
  }
}

/**
 * The claims of a compact JWS, unverified — only to read what chooses who verifies it (an `iss`),
 * as jose's `decodeJwt` does, under `decodeCompactJws`'s rules. Throws JwsFormatError.
 */
export function decodeJwt(token: string, options: { maxBytes?: number } = {}): Record<string, unknown> {
  const decoded = decodeCompactJws(token, options);
  if (!decoded.ok) throw new JwsFormatError(decoded.problem, decoded.reason);
  return decoded.jws.claims;
}

/**
 * RFC 7515 §2: base64url without padding, and canonical (re-encoding the bytes gives it back).
 * Canonical is decided from the length and the last character, without decoding: a length of 4n
 * is always canonical, 4n+1 never (no byte ends there), and the last character of 4n+2 or 4n+3
 * carries 4 or 2 bits that no byte uses, which must be zero (RFC 4648 §3.5).
 */
export function isCanonicalBase64url(segment: string): boolean {
  if (segment === '' || !base64urlPattern.test(segment)) return false;
  const spare = segment.length % 4;
  if (spare === 0) return true;
  if (spare === 1) return false;
  const last = base64urlValue(segment.charCodeAt(segment.length - 1));
  return (last & (spare === 2 ? 0b1111 : 0b11)) === 0;
}

/** The 6-bit value of a base64url character (RFC 4648 §5) already known to be one. */
function base64urlValue(code: number): number {
  if (code >= 97) return code - 71; // a-z: 26-51
  if (code >= 65) return code === 95 ? 63 : code - 65; // A-Z: 0-25, _: 63
  return code === 45 ? 62 : code + 4; // 0-9: 52-61, -: 62
}

/** The JSON object a base64url segment holds, or undefined (not UTF-8, not JSON, not an object). */
function decodeJsonObject(segment: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(utf8.decode(Buffer.from(segment, 'base64url')));
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A `typ` (or `cty`) for comparison: lower case, without an `application/` prefix (RFC 7515
 * §4.1.9); undefined for a non-string.
 */
export function mediaType(typ: unknown): string | undefined {
  return typeof typ === 'string' ? typ.toLowerCase().replace(/^application\//, '') : undefined;
}

/** A short, printable rendering of a value from a token or proof, for details. */
export function describe(value: unknown): string {
  const text = typeof value === 'string' ? value : (JSON.stringify(value) ?? String(value));
  return JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}...` : text);
}

function fail(problem: JwsProblem, reason: string): DecodeResult {
  return { ok: false, problem, reason };
}
