import { createLocalJWKSet, createRemoteJWKSet, errors as joseErrors, jwtVerify, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';
import { asymmetricJwsAlgorithms, decodeCompactJws, describe, mediaType } from '../jose/index.ts';
import { isLoopbackHost } from '../jose/loopback.ts';

/**
 * Verification of a Clearance access token (a JWT per RFC 9068) at a resource server: the keys
 * (a JWKS URI, the issuer's discovery document, or a static set), the header rules, the
 * signature and the registered claims, then the shapes of Clearance's own claims.
 */

/**
 * Access token signature algorithms accepted by default: the ones Clearance signs with (src/config.ts
 * signingAlgs), and `Ed25519`, the fully-specified name of EdDSA over Ed25519 (RFC 9864 §2.2).
 */
export const defaultAlgorithms = ['ES256', 'EdDSA', 'Ed25519', 'PS256'] as const;
/** Asymmetric JWS algorithms an allowlist may name; `none` and MACs (HS*) never (RFC 8725 §3.1, §3.2). */
export const permittedAlgorithms = asymmetricJwsAlgorithms;
/** Largest access token looked at; anything longer is refused unparsed. */
const maxTokenLength = 16 * 1024;
/** Deepest `act` chain accepted. */
const maxActDepth = 16;
/** RFC 9068 §2.1: the media type of JWT access tokens, as `typ`. */
const accessTokenTyp = 'at+jwt';

/** RFC 8705 §3.1 / RFC 9449 §6.1: what a token is bound to. */
export interface Confirmation {
  jkt?: string;
  'x5t#S256'?: string;
  [member: string]: unknown;
}

/** The claims of a Clearance access token: RFC 9068 §2.2 plus Clearance's vocabulary (docs/guard.md). */
export interface AccessTokenClaims {
  iss: string;
  sub: string;
  aud: string | string[];
  exp: number;
  iat: number;
  jti: string;
  client_id: string;
  scope?: string;
  cnf?: Confirmation;
  authorization_details?: AuthorizationDetail[];
  /** RFC 8693 §4.1: the delegation chain, newest actor outermost. */
  act?: Actor;
  txn?: string;
  /** An algorithmic agent's identity and approved model version (docs/agents.md). */
  agent?: { id: string; strategy: string; environment: string; model_version: string; model_digest: string; approval: string };
  mandate?: { id: string; v: number };
  /**
   * What-you-see-is-what-you-sign: the approval digest (src/jose/approval-digest.ts) of the
   * order and settlement_instruction entries the person approved with a passkey.
   */
  authorization_details_digest?: string;
  auth_time?: number;
  acr?: string;
  amr?: string[];
  [claim: string]: unknown;
}

/** One RFC 9396 authorization_details entry: its `type` and the type's fields. */
export interface AuthorizationDetail {
  type: string;
  [field: string]: unknown;
}

/** One actor of an RFC 8693 §4.1 `act` claim (its own `act`, the previous actor, is in the chain). */
export interface Actor {
  sub: string;
  iss?: string;
  client_id?: string;
  [claim: string]: unknown;
}

/** The key source of a guard: a JWKS URI, a static JWK set, or the issuer's discovery document. */
export interface KeySourceOptions {
  issuer: string;
  jwksUri?: string | undefined;
  jwks?: JSONWebKeySet | undefined;
  allowHttp: boolean;
}

/** A key set could not be obtained (network, time-out, a bad document): not the token's fault. */
export class KeySourceUnavailable extends Error {}

/**
 * The key resolver for jwtVerify: jose's remote JWK set (fetched on first use, cached ten
 * minutes, refetched at most every 30 s for an unknown `kid`, RFC 8725 §3.10 — a token's own
 * jku/x5u/jwk/x5c are never looked at) or a local one. Without a jwksUri or static set, the
 * issuer's discovery document names the JWKS URI (its `issuer` must be ours, RFC 8414 §3.3).
 */
export function keyResolver(options: KeySourceOptions): JWTVerifyGetKey {
  if (options.jwks) {
    const local = createLocalJWKSet(options.jwks);
    return (header, token) => local(header, token);
  }
  let remote: Promise<JWTVerifyGetKey> | undefined;
  const resolve = (): Promise<JWTVerifyGetKey> => {
    remote ??= (async () => {
      const uri = options.jwksUri ?? (await discoverJwksUri(options.issuer, options.allowHttp));
      return createRemoteJWKSet(checkedUrl(uri, 'jwksUri', options.allowHttp), { timeoutDuration: 5_000 });
    })();
    // A failed discovery is retried by the next request.
    remote.catch(() => (remote = undefined));
    return remote;
  };
  return async (header, token) => {
    let get: JWTVerifyGetKey;
    try {
      get = await resolve();
    } catch (error) {
      throw new KeySourceUnavailable(`discovery failed: ${(error as Error).message}`, { cause: error });
    }
    try {
      return await get(header, token);
    } catch (error) {
      // An unknown or ambiguous kid is the token's problem; a failed fetch is ours.
      if (error instanceof joseErrors.JWKSNoMatchingKey || error instanceof joseErrors.JWKSMultipleMatchingKeys) throw error;
      throw new KeySourceUnavailable(`the JWK set could not be fetched: ${(error as Error).message}`, { cause: error });
    }
  };
}

/** RFC 8414 §3 and OIDC Discovery §4: the issuer's metadata, whose `jwks_uri` we use. */
async function discoverJwksUri(issuer: string, allowHttp: boolean): Promise<string> {
  const base = checkedUrl(issuer, 'issuer', allowHttp);
  const path = base.pathname === '/' ? '' : base.pathname;
  // RFC 8414 §3.1 puts the well-known segment before the issuer's path; OIDC Discovery after it.
  const candidates = [`${base.origin}/.well-known/oauth-authorization-server${path}`, `${base.origin}${path}/.well-known/openid-configuration`];
  let lastError: unknown;
  for (const candidate of candidates) {
    try {
      const response = await fetch(candidate, { redirect: 'error', signal: AbortSignal.timeout(5_000), headers: { accept: 'application/json' } });
      if (response.status !== 200) throw new Error(`${candidate} answered ${response.status}`);
      const text = await response.text();
      if (text.length > 256 * 1024) throw new Error(`${candidate} is too large`);
      const metadata = JSON.parse(text) as { issuer?: unknown; jwks_uri?: unknown };
      // RFC 8414 §3.3: the issuer in the metadata is exactly the one we asked about.
      if (metadata.issuer !== issuer) throw new Error(`${candidate} names issuer ${describe(metadata.issuer)}`);
      if (typeof metadata.jwks_uri !== 'string') throw new Error(`${candidate} has no jwks_uri`);
      return metadata.jwks_uri;
    } catch (error) {
      lastError = error;
    }
  }
  throw lastError instanceof Error ? lastError : new Error('discovery failed');
}

/** An https URL (http only on loopback, or when allowed), without userinfo. */
export function checkedUrl(value: string, name: string, allowHttp: boolean): URL {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new TypeError(`guard option ${name} is not a URL: ${value}`);
  }
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && (isLoopbackHost(url.hostname) || allowHttp))) {
    throw new TypeError(`guard option ${name} must be an https URL (http only on loopback or with allowHttp): ${value}`);
  }
  if (url.username || url.password) throw new TypeError(`guard option ${name} must not carry credentials`);
  return url;
}

export interface TokenCheckOptions {
  issuer: string;
  audience: string;
  algorithms: readonly string[];
  clockSkewSeconds: number;
  keys: JWTVerifyGetKey;
  /** Milliseconds since the epoch. */
  now(): number;
}

/** Why a token is refused (for the log; the client hears only "invalid or expired"). */
export class TokenRefused extends Error {}

/**
 * Verifies an access token. The rules, in order:
 * 1. a compact JWS of at most 16 KiB (no JSON serialization, no JWE: RFC 8725 §3.3);
 * 2. `typ` is `at+jwt` (RFC 9068 §4; `application/at+jwt` too), so an ID token or any other JWT
 *    is never taken for an access token (RFC 8725 §3.11);
 * 3. `alg` is on the allowlist: never `none` in any case, never a MAC (RFC 8725 §3.1);
 * 4. the signature verifies with the issuer's key for the `kid`, used with its own `alg`;
 * 5. `iss` is the issuer; `exp`, `iat`, `jti`, `sub`, `client_id`, `aud` are present (RFC 9068
 *    §2.2); `exp` has not passed and `nbf`/`iat` are not in the future, each within the skew;
 * 6. `aud` is this resource server, alone (RFC 9068 §4; DESIGN §4: one audience per token — a
 *    token several servers accept could be replayed by one against another);
 * 7. Clearance's claims have their shapes: scope, cnf, act, txn, mandate, authorization_details,
 *    authorization_details_digest.
 * Throws TokenRefused (the token's fault) or KeySourceUnavailable (ours).
 */
export async function verifyAccessToken(token: string, options: TokenCheckOptions): Promise<AccessTokenClaims> {
  const decoded = decodeCompactJws(token, { maxBytes: maxTokenLength });
  if (!decoded.ok) throw new TokenRefused(`not a compact JWS: ${decoded.reason}`);
  const { header } = decoded.jws;
  // RFC 9068 §4: typ MUST be at+jwt (the media type's "application/" prefix may be there).
  if (mediaType(header.typ) !== accessTokenTyp) {
    throw new TokenRefused(`typ ${describe(header.typ)} is not at+jwt`);
  }
  // RFC 8725 §3.1: the algorithm comes from our allowlist, never `none`.
  if (typeof header.alg !== 'string' || !options.algorithms.includes(header.alg)) throw new TokenRefused(`alg ${describe(header.alg)} is not allowed`);

  const skew = options.clockSkewSeconds;
  const nowSeconds = Math.floor(options.now() / 1000);
  let payload: Record<string, unknown>;
  try {
    ({ payload } = await jwtVerify(token, options.keys, {
      algorithms: [...options.algorithms],
      typ: accessTokenTyp,
      issuer: options.issuer,
      currentDate: new Date(nowSeconds * 1000),
      clockTolerance: skew,
      requiredClaims: ['iss', 'exp', 'iat', 'jti', 'sub', 'aud', 'client_id'],
    }));
  } catch (error) {
    if (error instanceof KeySourceUnavailable) throw error;
    throw new TokenRefused(error instanceof joseErrors.JOSEError ? `${error.code}: ${error.message}` : 'verification failed');
  }
  // RFC 9068 §4: aud contains this resource server; Clearance issues exactly one (DESIGN §4).
  const aud = payload.aud;
  const audiences = Array.isArray(aud) ? aud : [aud];
  if (audiences.length !== 1 || audiences[0] !== options.audience) throw new TokenRefused(`aud ${describe(aud)} is not ${describe(options.audience)} alone`);
  // RFC 7519 §4.1.6: a token issued in the future is not yet valid (jose checks iat's type only).
  if (typeof payload.iat !== 'number' || payload.iat > nowSeconds + skew) throw new TokenRefused('iat is in the future');
  return readClaims(payload);
}

/**
 * The claims of an introspection answer (RFC 7662 §2.2, ./introspection.ts), held to the rules a
 * JWT's claims meet in `verifyAccessToken` steps 5–7: `iss` is the issuer; `exp`, `iat`, `jti`,
 * `sub`, `client_id`, `aud` present; `exp` not passed and `iat` not in the future (within the
 * skew); `aud` this resource server alone; Clearance's claims of their shapes. Throws TokenRefused.
 */
export function checkAccessTokenClaims(payload: Record<string, unknown>, options: { issuer: string; audience: string; clockSkewSeconds: number; nowSeconds: number }): AccessTokenClaims {
  if (payload.iss !== options.issuer) throw new TokenRefused(`iss ${describe(payload.iss)} is not the issuer`);
  for (const name of ['exp', 'iat', 'jti', 'sub', 'aud', 'client_id']) if (payload[name] === undefined) throw new TokenRefused(`${name} is missing`);
  const skew = options.clockSkewSeconds;
  // RFC 7519 §4.1.4: not on or after exp (within the skew).
  if (typeof payload.exp !== 'number' || payload.exp + skew <= options.nowSeconds) throw new TokenRefused('expired');
  if (typeof payload.iat !== 'number' || payload.iat > options.nowSeconds + skew) throw new TokenRefused('iat is in the future');
  const audiences = Array.isArray(payload.aud) ? payload.aud : [payload.aud];
  // RFC 9068 §4 / DESIGN §4: this resource server, alone — a handle for another audience is refused here too.
  if (audiences.length !== 1 || audiences[0] !== options.audience) throw new TokenRefused(`aud ${describe(payload.aud)} is not ${describe(options.audience)} alone`);
  return readClaims(payload);
}

/** Step 7: the claims beyond RFC 9068 have the shapes Clearance gives them; anything else is refused. */
function readClaims(payload: Record<string, unknown>): AccessTokenClaims {
  const nonEmpty = (name: string, value: unknown) => {
    if (typeof value !== 'string' || value.length === 0) throw new TokenRefused(`${name} is not a non-empty string`);
  };
  nonEmpty('sub', payload.sub);
  nonEmpty('client_id', payload.client_id);
  nonEmpty('jti', payload.jti);
  if (payload.scope !== undefined && typeof payload.scope !== 'string') throw new TokenRefused('scope is not a string');
  if (payload.txn !== undefined) nonEmpty('txn', payload.txn);
  if (payload.cnf !== undefined) {
    const cnf = payload.cnf as Record<string, unknown>;
    if (typeof cnf !== 'object' || cnf === null || Array.isArray(cnf)) throw new TokenRefused('cnf is not an object');
    if (cnf.jkt !== undefined) nonEmpty('cnf.jkt', cnf.jkt);
    if (cnf['x5t#S256'] !== undefined) nonEmpty('cnf.x5t#S256', cnf['x5t#S256']);
  }
  if (payload.mandate !== undefined) {
    const mandate = payload.mandate as Record<string, unknown>;
    if (typeof mandate !== 'object' || mandate === null || typeof mandate.id !== 'string' || !Number.isInteger(mandate.v)) {
      throw new TokenRefused('mandate is not {id, v}');
    }
  }
  if (payload.authorization_details !== undefined) {
    const details = payload.authorization_details;
    if (!Array.isArray(details) || details.some((d) => typeof d !== 'object' || d === null || Array.isArray(d) || typeof (d as { type?: unknown }).type !== 'string')) {
      throw new TokenRefused('authorization_details is not an array of objects with a type');
    }
  }
  if (payload.authorization_details_digest !== undefined) {
    if (typeof payload.authorization_details_digest !== 'string' || !/^[A-Za-z0-9_-]{43}$/.test(payload.authorization_details_digest)) {
      throw new TokenRefused('authorization_details_digest is not a base64url SHA-256 digest');
    }
  }
  if (payload.act !== undefined) actorChain(payload.act);
  return payload as AccessTokenClaims;
}

/**
 * RFC 8693 §4.1: the `act` claim as a list, newest actor first (the outermost `act` is the current
 * actor; each nested `act` the one before it). Refuses a chain that is not objects with a `sub`.
 */
export function actorChain(act: unknown): Actor[] {
  const chain: Actor[] = [];
  let current = act;
  while (current !== undefined) {
    if (typeof current !== 'object' || current === null || Array.isArray(current)) throw new TokenRefused('act is not an object');
    const { act: previous, ...actor } = current as Record<string, unknown>;
    if (typeof actor.sub !== 'string' || actor.sub.length === 0) throw new TokenRefused('an actor in act has no sub');
    chain.push(actor as Actor);
    if (chain.length > maxActDepth) throw new TokenRefused(`act is nested more than ${maxActDepth} deep`);
    current = previous;
  }
  return chain;
}
