import { createHash, randomUUID, type KeyObject } from 'node:crypto';
import { importJWK, SignJWT, type CryptoKey, type JWK } from 'jose';
import { checkAccessTokenClaims, checkedUrl, TokenRefused, type AccessTokenClaims } from './token.ts';
import { traceContextHeaders } from './trace-context.ts';
import { BoundedMap } from '../jose/bounded-map.ts';

/**
 * Token introspection from the resource server (RFC 7662): how the guard validates a Clearance
 * reference token — an opaque handle (`clr_at_…`) that carries nothing a resource server could
 * read — and, when configured, every token. The guard asks `<issuer>/introspect` as the resource
 * server's own client (an `introspection_clients` entry of its audience, or the client the token
 * was issued to), then holds the answer to the same rules as a JWT's claims: our issuer, this
 * audience alone, unexpired, Clearance's claim shapes; the binding (`cnf`) is then checked by the
 * guard against the request's DPoP proof or certificate exactly as for a JWT.
 *
 * Caching: none by default — every request asks, so a revocation is in force at the next request.
 * With `cacheSeconds` (at most 60), an active answer is reused for that long, never past the
 * token's `exp`; a revocation then takes effect at the resource server within `cacheSeconds`.
 * Inactive answers are never cached (a later issuance cannot make a handle active, but nothing is
 * gained by remembering garbage), and failures never are.
 */

/** The handle prefix of Clearance's reference tokens (src/tokens/reference-tokens.ts). */
export const referenceTokenPrefix = 'clr_at_';

/** Longest cache time accepted: a revocation must reach the resource server quickly. */
export const maxIntrospectionCacheSeconds = 60;

/** How the guard introspects tokens (GuardOptions.introspection). */
export interface IntrospectionOptions {
  /**
   * How the resource server authenticates as its client at the introspection endpoint:
   * client_secret_basic (RFC 6749 §2.3.1), or private_key_jwt (RFC 7523 §2.2; the assertion's
   * `aud` is the issuer identifier, as Clearance requires).
   */
  credentials: { clientId: string; clientSecret: string } | { clientId: string; privateKey: CryptoKey | KeyObject | JWK; alg?: string; kid?: string };
  /** Default `<issuer>/introspect`. */
  endpoint?: string;
  /**
   * `reference` (default): only reference tokens (`clr_at_…`) are introspected; JWTs are verified
   * locally with the issuer's keys. `all`: every token is introspected, JWTs too (their revocation,
   * mandate and person state are then in force at once at this resource server).
   */
  mode?: 'reference' | 'all';
  /** Seconds an active answer is reused (never past the token's `exp`); default 0: no cache. At most 60. */
  cacheSeconds?: number;
  /** Give up (503, retry later) after this many milliseconds. Default 2000. */
  timeoutMs?: number;
  /** Most answers cached at once (default 10 000); the oldest go first. */
  maxCacheEntries?: number;
}

/** The introspection endpoint could not give an answer (network, time-out, status, malformed): not the token's fault. */
export class IntrospectionUnavailable extends Error {}

const maxAnswerBytes = 64 * 1024;

/** What verifying one token by introspection needs from the guard. */
export interface IntrospectionCheck {
  issuer: string;
  audience: string;
  clockSkewSeconds: number;
  now(): number;
}

/** An introspecting validator: `introspect(token)` resolves the token's claims or throws TokenRefused / IntrospectionUnavailable. */
export interface Introspector {
  /** True when this token is to be introspected rather than verified locally. */
  handles(token: string): boolean;
  introspect(token: string): Promise<AccessTokenClaims>;
}

/** Checks the options (TypeError at start-up) and makes the introspector. */
export function createIntrospector(options: IntrospectionOptions, check: IntrospectionCheck, allowHttp: boolean): Introspector {
  const endpoint = checkedUrl(options.endpoint ?? `${check.issuer}/introspect`, 'introspection.endpoint', allowHttp);
  const mode = options.mode ?? 'reference';
  if (mode !== 'reference' && mode !== 'all') throw new TypeError('guard option introspection.mode must be reference or all');
  const cacheSeconds = options.cacheSeconds ?? 0;
  if (!Number.isInteger(cacheSeconds) || cacheSeconds < 0 || cacheSeconds > maxIntrospectionCacheSeconds) {
    throw new TypeError(`guard option introspection.cacheSeconds must be an integer from 0 to ${maxIntrospectionCacheSeconds}`);
  }
  const timeoutMs = options.timeoutMs ?? 2_000;
  if (!Number.isInteger(timeoutMs) || timeoutMs < 1) throw new TypeError('guard option introspection.timeoutMs must be a positive integer');
  const credentials = options.credentials;
  if (typeof credentials?.clientId !== 'string' || credentials.clientId.length === 0) throw new TypeError('guard option introspection.credentials.clientId is required');
  if (!('clientSecret' in credentials) && !('privateKey' in credentials)) throw new TypeError('guard option introspection.credentials needs clientSecret or privateKey');
  const cache = new AnswerCache(options.maxCacheEntries ?? 10_000);

  async function authenticate(form: URLSearchParams): Promise<Record<string, string>> {
    if ('clientSecret' in credentials) {
      // RFC 6749 §2.3.1: both parts form-urlencoded, then Basic.
      const encode = (s: string) => encodeURIComponent(s).replace(/%20/g, '+');
      return { authorization: `Basic ${Buffer.from(`${encode(credentials.clientId)}:${encode(credentials.clientSecret)}`).toString('base64')}` };
    }
    const alg = credentials.alg ?? 'ES256';
    const key = isJwk(credentials.privateKey) ? await importJWK(credentials.privateKey, alg) : credentials.privateKey;
    const now = Math.floor(check.now() / 1000);
    // RFC 7523 §3: iss = sub = client_id; aud the issuer identifier (Clearance's rule); a fresh jti, short-lived.
    const assertion = await new SignJWT({ jti: randomUUID() })
      .setProtectedHeader({ alg, ...(credentials.kid !== undefined ? { kid: credentials.kid } : {}) })
      .setIssuer(credentials.clientId)
      .setSubject(credentials.clientId)
      .setAudience(check.issuer)
      .setIssuedAt(now)
      .setExpirationTime(now + 60)
      .sign(key as CryptoKey);
    form.set('client_assertion_type', 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer');
    form.set('client_assertion', assertion);
    return {};
  }

  async function ask(token: string): Promise<Record<string, unknown>> {
    // RFC 7662 §2.1: token, and the hint that it is an access token.
    const form = new URLSearchParams({ token, token_type_hint: 'access_token' });
    let text: string;
    let status: number;
    try {
      const headers = await authenticate(form);
      const response = await fetch(endpoint, {
        method: 'POST',
        redirect: 'error',
        signal: AbortSignal.timeout(timeoutMs),
        headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json', ...traceContextHeaders(), ...headers },
        body: form.toString(),
      });
      status = response.status;
      text = await response.text();
    } catch (error) {
      throw new IntrospectionUnavailable(`the introspection endpoint could not be asked: ${(error as Error).message}`, { cause: error });
    }
    // A refusal of our own credentials is a configuration fault, not the token's: 503, logged.
    if (status !== 200) throw new IntrospectionUnavailable(`the introspection endpoint answered ${status}: ${text.slice(0, 200)}`);
    if (text.length > maxAnswerBytes) throw new IntrospectionUnavailable('the introspection answer is too large');
    let answer: unknown;
    try {
      answer = JSON.parse(text);
    } catch {
      throw new IntrospectionUnavailable('the introspection answer is not JSON');
    }
    // RFC 7662 §2.2: `active` is a boolean, REQUIRED.
    if (typeof answer !== 'object' || answer === null || Array.isArray(answer) || typeof (answer as { active?: unknown }).active !== 'boolean') {
      throw new IntrospectionUnavailable('the introspection answer has no boolean active');
    }
    return answer as Record<string, unknown>;
  }

  return {
    handles: (token) => mode === 'all' || token.startsWith(referenceTokenPrefix),
    async introspect(token) {
      const key = createHash('sha256').update(token).digest('base64url');
      const nowMs = check.now();
      const cached = cache.get(key, nowMs);
      if (cached) return cached;
      const answer = await ask(token);
      // RFC 7662 §2.2: inactive — unknown, expired, revoked, or not ours to see.
      if (answer.active !== true) throw new TokenRefused('introspection: not active');
      const { active: _active, token_type: _type, ...claims } = answer;
      const verified = checkAccessTokenClaims(claims, { issuer: check.issuer, audience: check.audience, clockSkewSeconds: check.clockSkewSeconds, nowSeconds: Math.floor(nowMs / 1000) });
      if (cacheSeconds > 0) cache.set(key, verified, nowMs, Math.min(nowMs + cacheSeconds * 1000, verified.exp * 1000));
      return verified;
    },
  };
}

function isJwk(key: unknown): key is JWK {
  return typeof key === 'object' && key !== null && typeof (key as { kty?: unknown }).kty === 'string' && !('type' in key && 'algorithm' in key);
}

/** Active answers by token digest, until their time; insertion-ordered, so the oldest go first when full. */
class AnswerCache {
  readonly #entries: BoundedMap<string, { claims: AccessTokenClaims; since: number; until: number }>;

  constructor(max: number) {
    this.#entries = new BoundedMap(Math.max(1, max));
  }

  /**
   * The answer cached for `key` while `now` is between when it was asked and `until`. A clock
   * stepped back (an NTP step, a VM resumed) ends it: otherwise a revoked token's answer would be
   * reused for the step longer than `cacheSeconds`.
   */
  get(key: string, now: number): AccessTokenClaims | undefined {
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    if (now < entry.since || entry.until <= now) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry.claims;
  }

  set(key: string, claims: AccessTokenClaims, since: number, until: number): void {
    this.#entries.delete(key);
    this.#entries.set(key, { claims, since, until });
  }
}
