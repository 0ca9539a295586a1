import type { JSONWebKeySet } from 'jose';
import { challengeValue, GuardError, type ChallengeOptions, type GuardErrorCode, type Scheme } from './errors.ts';
import {
  defaultDpopAlgorithms,
  defaultDpopIatWindowSeconds,
  DpopProofError,
  MemoryDpopReplayStore,
  safeEqual,
  verifyDpopProof,
  type DpopNonceSource,
  type DpopReplayStore,
} from './dpop.ts';
import { withBothEd25519Names } from '../jose/index.ts';
import { approvalDigest, entriesToApprove } from '../jose/approval-digest.ts';
import { askPolicy, type PolicyDecision, type PolicyOptions, type PolicyQuestion } from './policy.ts';
import type { SecurityEventRevocations } from './ssf.ts';
import { createIntrospector, IntrospectionUnavailable, referenceTokenPrefix, type IntrospectionOptions } from './introspection.ts';
import { acrLadder, acrRank, acrSatisfies } from './acr.ts';
import {
  actorChain,
  checkedUrl,
  defaultAlgorithms,
  KeySourceUnavailable,
  keyResolver,
  permittedAlgorithms,
  TokenRefused,
  verifyAccessToken,
  type AccessTokenClaims,
  type Actor,
  type AuthorizationDetail,
} from './token.ts';

/** Options of `createGuard`. */
export interface GuardOptions {
  /** Clearance's issuer identifier, exactly as its tokens carry it in `iss`. */
  issuer: string;
  /** This resource server's identifier (its registered `identifier`): the one `aud` accepted. */
  audience: string;
  /** Where the signing keys are published (`<issuer>/jwks`). Without it and without `jwks`, the issuer's discovery document names it. */
  jwksUri?: string;
  /** A static JWK set instead of fetching one (tests, air-gapped set-ups; rotation is then yours). */
  jwks?: JSONWebKeySet;
  /** Access token algorithms accepted. Default ES256, EdDSA, Ed25519, PS256 (what Clearance signs with; Ed25519 is EdDSA's fully-specified name, RFC 9864). `none` and HS* are never accepted. */
  algorithms?: readonly string[];
  /** Tolerance for `exp`, `nbf` and `iat` against this server's clock, in seconds: default 5, at most 60. */
  clockSkewSeconds?: number;
  /** Refuse bearer tokens: only DPoP- or certificate-bound tokens pass. Default false. */
  requireSenderConstraint?: boolean;
  /** DPoP proof checks (RFC 9449). */
  dpop?: {
    /** Proof algorithms accepted. Default ES256, EdDSA, Ed25519, PS256. */
    algorithms?: readonly string[];
    /** Allowed distance of a proof's `iat` from now, in seconds. Default 60. */
    iatWindowSeconds?: number;
    /** Where used proof `jti`s are remembered. Default: in memory, this process only. */
    replay?: DpopReplayStore;
    /** With a nonce source, every proof must carry a valid nonce (RFC 9449 §9); see createDpopNonces. */
    nonces?: DpopNonceSource;
  };
  /** How to ask Clearance's AuthZEN endpoint (for askPolicy). */
  policy?: PolicyOptions;
  /** The realm of WWW-Authenticate challenges. */
  realm?: string;
  /** Allow http:// issuer, JWKS and policy URLs on hosts other than loopback (development only). */
  allowHttp?: boolean;
  /** The clock, in milliseconds since the epoch (tests). */
  now?: () => number;
  /**
   * Called with every approval check (`requireApprovedDetails`), matched or not, before it
   * returns or throws: where the resource server records that it executed (or refused) exactly
   * what the person approved — its audit trail, or evidence sent to Clearance.
   */
  onApprovalCheck?: (record: ApprovalCheckRecord) => void;
  /**
   * Tokens revoked by Shared Signals security events (./ssf.ts: the same object the SSF receiver
   * writes): a token they name is refused with 401 invalid_token after it verified.
   */
  revocations?: SecurityEventRevocations;
  /**
   * Token introspection (RFC 7662, ./introspection.ts): how reference tokens (`clr_at_…`, for a
   * resource server registered with `access_token_format: reference`) are validated — or, with
   * `mode: 'all'`, every token. Without it a reference token is refused as invalid_token.
   */
  introspection?: IntrospectionOptions;
}

/** One approval check, as `onApprovalCheck` receives it (no token: only what identifies it). */
export interface ApprovalCheckRecord {
  /** The token's jti, subject, client and transaction id. */
  jti: string;
  subject: string;
  clientId: string;
  txn: string | undefined;
  /** The digest the token carries (undefined: the token carries no approval). */
  approved: string | undefined;
  /** The digest of the entries the resource server is about to execute. */
  presented: string | undefined;
  matched: boolean;
  /** Epoch ms. */
  at: number;
}

/** What a resource server hands the guard about one request. */
export interface GuardRequest {
  /** The request method, as received (`POST`). */
  method: string;
  /** The full URL as the client addressed it, e.g. `https://orders.example.com/api/orders?x=1` (DPoP `htu`). */
  url: string;
  /** Request headers; only `authorization` and `dpop` are read (any letter case). */
  headers: Record<string, string | readonly string[] | undefined>;
  /** RFC 8705 §3.1: base64url SHA-256 of the DER client certificate of the TLS connection, if any. */
  clientCertificateThumbprint?: string | undefined;
}

/** How the token is sender-constrained. */
export type Binding = { method: 'dpop'; jkt: string } | { method: 'mtls'; x5tS256: string } | { method: 'none' };

/** A verified access token and what it says. */
export interface VerifiedAccess {
  /** The access token itself (to forward or exchange; never log it). */
  token: string;
  /** The scheme it came with. */
  scheme: Scheme;
  claims: AccessTokenClaims;
  /** `sub`: a user id, or the client itself when no person is involved. */
  subject: string;
  clientId: string;
  scopes: string[];
  /** RFC 9396 entries the token carries (empty when none). */
  authorizationDetails: AuthorizationDetail[];
  /** RFC 8693 delegation chain as a list, newest (current) actor first; empty when no one acts for the subject. */
  actors: Actor[];
  /** The raw nested `act` claim. */
  act: Actor | undefined;
  /** The transaction id carried across every hop. */
  txn: string | undefined;
  /** The mandate version the token was issued under. */
  mandate: { id: string; v: number } | undefined;
  /**
   * How the person authenticated, as the token says (RFC 9068 §2.2.1): the level on Clearance's
   * ladder, the methods (RFC 8176), and when (epoch seconds). Absent in a client's own token.
   */
  acr: string | undefined;
  amr: string[] | undefined;
  authTime: number | undefined;
  binding: Binding;
  /** Headers to add to the response (a fresh DPoP-Nonce when the guard uses nonces). */
  headers: Record<string, string>;
}

/** A guard: verifies requests and checks what their tokens allow. */
export interface Guard {
  readonly options: Readonly<Pick<GuardOptions, 'issuer' | 'audience'>>;
  /** Verifies the request's access token and its binding; throws GuardError (401/400/503). */
  verify(request: GuardRequest): Promise<VerifiedAccess>;
  /** Throws 403 insufficient_scope unless the token has every scope named. */
  requireScopes(access: VerifiedAccess, scopes: readonly string[]): void;
  /** Returns the first authorization_details entry of `type` that `match` accepts; else throws 403 insufficient_scope. */
  requireAuthorizationDetail<T extends AuthorizationDetail = AuthorizationDetail>(access: VerifiedAccess, check: AuthorizationDetailCheck<T>): T;
  /**
   * Asks Clearance's AuthZEN endpoint; resolves a deny on any error or time-out (fail closed).
   * Never throws, but rejects with a TypeError for a question whose context sets `acr` or
   * `auth_time` (only the token says how the person signed in).
   */
  askPolicy(access: VerifiedAccess, question: PolicyQuestion): Promise<PolicyDecision>;
  /**
   * askPolicy, throwing unless the decision is true: a deny the person's stronger authentication
   * would lift (the PDP's `step_up`) is 401 insufficient_user_authentication with the RFC 9470
   * challenge; any other deny is 403 access_denied.
   */
  requirePolicy(access: VerifiedAccess, question: PolicyQuestion): Promise<PolicyDecision>;
  /**
   * Throws 401 insufficient_user_authentication (RFC 9470 §3) unless the token's `acr` meets
   * `acr` (on Clearance's ladder: that level or above) and its `auth_time` is at most `maxAge`
   * seconds old. The challenge names `acr_values` and `max_age`, for the client to authorize again.
   */
  requireAuthentication(access: VerifiedAccess, requirement: AuthenticationRequirement): void;
  /**
   * What-you-see-is-what-you-sign at the resource server: `entries` are the order and
   * settlement_instruction authorization_details this request is about to execute; unless their
   * approval digest is the one the token carries (the person approved exactly these), throws 403
   * insufficient_scope. Every check is reported to `onApprovalCheck`. Returns the digest.
   */
  requireApprovedDetails(access: VerifiedAccess, entries: readonly AuthorizationDetail[]): string;
}

/** What a route asks of the person's authentication (docs/guard.md). */
export interface AuthenticationRequirement {
  /** The least level, one of Clearance's (`urn:clearance:acr:mfa`, …). */
  acr?: string;
  /** Seconds: the person authenticated at most this long ago. */
  maxAge?: number;
}

export interface AuthorizationDetailCheck<T extends AuthorizationDetail> {
  type: string;
  /** Whether this entry allows the request (e.g. its instrument, side and max notional cover the order). */
  match?: (detail: T) => boolean;
}

/** RFC 6750 §2.1, RFC 9449 §7.1: `<scheme> <token68>`, the scheme in any case. */
const credentialsPattern = /^(Bearer|DPoP) +([A-Za-z0-9\-._~+/]+=*) *$/i;

/**
 * Creates a guard for one resource server. `verify` runs these rules, in order:
 * 1. no access token in the URL query (RFC 6750 §2.3 is not offered: URLs end up in logs;
 *    FAPI 2.0 SP §5.3.4) → 400 invalid_request;
 * 2. one Authorization header with the Bearer or DPoP scheme, else 401 with a challenge for both
 *    schemes and no error code (RFC 6750 §3.1);
 * 3. the token verifies (token.ts: typ at+jwt, alg allowlist, signature, iss, aud, exp, iat) —
 *    or, a reference token (`clr_at_…`; every token with introspection mode `all`), Clearance's
 *    introspection endpoint answers it active with claims that meet the same rules
 *    (./introspection.ts; the endpoint unreachable → 503) → else 401 invalid_token; and no security event revoked it (`revocations`, ./ssf.ts) → else
 *    401 invalid_token;
 * 4. with `requireSenderConstraint`, the token has a `cnf` → else 401 invalid_token;
 * 5. a DPoP-bound token (`cnf.jkt`) comes with the DPoP scheme (RFC 9449 §7.1: never as Bearer)
 *    and one valid proof for this request (dpop.ts), whose key is the bound key — else 401
 *    invalid_dpop_proof / use_dpop_nonce; the DPoP scheme with an unbound token → invalid_token;
 * 6. a certificate-bound token (`cnf.x5t#S256`) comes over a connection with that certificate
 *    (RFC 8705 §3) → else 401 invalid_token; a `cnf` the guard cannot check is refused.
 * Options are checked here: a bad URL or algorithm list throws a TypeError at start-up.
 */
export function createGuard(options: GuardOptions): Guard {
  const allowHttp = options.allowHttp ?? false;
  checkedUrl(options.issuer, 'issuer', allowHttp);
  if (typeof options.audience !== 'string' || options.audience.length === 0) throw new TypeError('guard option audience is required: this resource server\'s identifier');
  const algorithms = checkAlgorithms(options.algorithms ?? defaultAlgorithms, 'algorithms');
  const dpopAlgorithms = checkAlgorithms(options.dpop?.algorithms ?? defaultDpopAlgorithms, 'dpop.algorithms');
  const clockSkewSeconds = options.clockSkewSeconds ?? 5;
  if (!Number.isInteger(clockSkewSeconds) || clockSkewSeconds < 0 || clockSkewSeconds > 60) throw new TypeError('guard option clockSkewSeconds must be an integer from 0 to 60');
  const iatWindowSeconds = options.dpop?.iatWindowSeconds ?? defaultDpopIatWindowSeconds;
  if (!Number.isInteger(iatWindowSeconds) || iatWindowSeconds < 1 || iatWindowSeconds > 300) throw new TypeError('guard option dpop.iatWindowSeconds must be an integer from 1 to 300');
  const now = options.now ?? Date.now;
  const replay = options.dpop?.replay ?? new MemoryDpopReplayStore({ now });
  const nonces = options.dpop?.nonces;
  const keys = keyResolver({ issuer: options.issuer, jwksUri: options.jwksUri, jwks: options.jwks, allowHttp });
  const introspector = options.introspection ? createIntrospector(options.introspection, { issuer: options.issuer, audience: options.audience, clockSkewSeconds, now }, allowHttp) : undefined;
  const challenge: ChallengeOptions = { realm: options.realm, dpopAlgorithms };

  /** A 401/403/400 with its challenge in `schemes`. */
  const refuse = (schemes: readonly Scheme[], error: GuardErrorCode, description: string, extra: { detail?: string; scope?: string; headers?: Record<string, string> } = {}) => {
    const status = error === 'insufficient_scope' ? 403 : error === 'invalid_request' ? 400 : 401;
    return new GuardError({
      status,
      error,
      description,
      detail: extra.detail,
      headers: { ...extra.headers, 'www-authenticate': challengeValue(schemes, challenge, { error, description, ...(extra.scope !== undefined ? { scope: extra.scope } : {}) }) },
    });
  };
  const unavailable = (detail: string) =>
    new GuardError({ status: 503, error: 'temporarily_unavailable', description: 'the access token cannot be verified right now; retry later', detail, headers: { 'retry-after': '5' } });

  async function verify(request: GuardRequest): Promise<VerifiedAccess> {
    let url: URL;
    try {
      url = new URL(request.url);
    } catch {
      throw new TypeError(`guard.verify needs the absolute request URL, got ${JSON.stringify(request.url)}`);
    }
    // 1. RFC 6750 §2.3 is not supported: a token in the URL is refused, whatever else comes with it.
    if (url.searchParams.has('access_token')) {
      throw refuse(['Bearer', 'DPoP'], 'invalid_request', 'send the access token in the Authorization header, not the URL');
    }
    // 2. One Authorization header with a scheme we know.
    const authorization = header(request.headers, 'authorization');
    if (Array.isArray(authorization) && authorization.length > 1) {
      throw refuse(['Bearer', 'DPoP'], 'invalid_request', 'send one Authorization header');
    }
    const value = Array.isArray(authorization) ? authorization[0] : (authorization as string | undefined);
    const match = value?.match(credentialsPattern);
    if (!match) {
      // RFC 6750 §3.1: no credentials (or another scheme) → a challenge without an error code.
      throw new GuardError({
        status: 401,
        error: 'invalid_token',
        description: 'a Bearer or DPoP access token is required',
        detail: value === undefined ? 'no Authorization header' : 'Authorization header is not Bearer or DPoP',
        // Both schemes, also when sender constraint is required: a certificate-bound token uses Bearer (RFC 8705 §3).
        headers: { 'www-authenticate': challengeValue(['Bearer', 'DPoP'], challenge) },
      });
    }
    const scheme: Scheme = match[1]!.toLowerCase() === 'dpop' ? 'DPoP' : 'Bearer';
    const token = match[2]!;

    // 3. The token itself: a JWT verified here, or a reference token (every token, with
    // introspection mode `all`) resolved by introspection — the same claim rules either way.
    let claims: AccessTokenClaims;
    try {
      if (introspector?.handles(token)) claims = await introspector.introspect(token);
      else if (token.startsWith(referenceTokenPrefix)) throw new TokenRefused('a reference token, and the guard has no introspection options');
      else claims = await verifyAccessToken(token, { issuer: options.issuer, audience: options.audience, algorithms, clockSkewSeconds, keys, now });
    } catch (error) {
      if (error instanceof KeySourceUnavailable || error instanceof IntrospectionUnavailable) throw unavailable(error.message);
      if (error instanceof TokenRefused) throw refuse([scheme], 'invalid_token', 'the access token is invalid or expired', { detail: error.message });
      throw error;
    }
    // 3b. Not revoked by a security event Clearance pushed (./ssf.ts).
    const revoked = options.revocations?.check(claims);
    if (revoked !== undefined) throw refuse([scheme], 'invalid_token', 'the access token was revoked', { detail: revoked });

    // 4.-6. Its binding.
    const cnf = claims.cnf;
    if (options.requireSenderConstraint && cnf === undefined) {
      throw refuse(['DPoP'], 'invalid_token', 'this resource accepts only sender-constrained (DPoP or certificate-bound) tokens', { detail: 'bearer token without cnf' });
    }
    const headers: Record<string, string> = {};
    let binding: Binding = { method: 'none' };
    if (cnf !== undefined && cnf.jkt === undefined && cnf['x5t#S256'] === undefined) {
      throw refuse([scheme], 'invalid_token', 'the access token is bound in a way this resource cannot check', { detail: `cnf members ${Object.keys(cnf).join(', ')}` });
    }
    if (cnf?.jkt !== undefined) {
      // RFC 9449 §7.1: a DPoP-bound token presented with the Bearer scheme is refused.
      if (scheme !== 'DPoP') throw refuse([scheme], 'invalid_token', 'a DPoP-bound token needs the DPoP scheme and a proof', { detail: 'DPoP-bound token as Bearer' });
      let proof;
      try {
        proof = await verifyDpopProof(
          { header: header(request.headers, 'dpop'), method: request.method, url: request.url, accessToken: token },
          { algorithms: dpopAlgorithms, iatWindowSeconds, replay, nonces, now },
        );
      } catch (error) {
        if (error instanceof DpopProofError) {
          const nonceHeader: Record<string, string> = error.code === 'use_dpop_nonce' && nonces ? { 'dpop-nonce': nonces.current() } : {};
          throw refuse(['DPoP'], error.code, error.description, { detail: error.detail, headers: nonceHeader });
        }
        throw unavailable(`DPoP replay store: ${(error as Error).message}`);
      }
      // RFC 9449 §7.1: the proof key is the one the token is bound to (checked after the jti was used).
      if (!safeEqual(proof.jkt, cnf.jkt)) {
        throw refuse(['DPoP'], 'invalid_dpop_proof', 'the DPoP proof is not signed with the key the access token is bound to', { detail: 'proof jkt differs from cnf.jkt' });
      }
      if (nonces) headers['dpop-nonce'] = nonces.current();
      binding = { method: 'dpop', jkt: cnf.jkt };
    } else if (scheme === 'DPoP') {
      // RFC 9449 §7.2: the DPoP scheme is for DPoP-bound tokens.
      throw refuse(['DPoP'], 'invalid_token', 'the access token is not DPoP-bound; use the Bearer scheme', { detail: 'DPoP scheme with an unbound token' });
    }
    const x5t = cnf?.['x5t#S256'];
    if (x5t !== undefined) {
      // RFC 8705 §3: a certificate-bound token only over a connection with that certificate.
      const presented = request.clientCertificateThumbprint;
      if (presented === undefined || !safeEqual(presented, x5t)) {
        throw refuse([scheme], 'invalid_token', 'the access token is bound to another client certificate', {
          detail: presented === undefined ? 'certificate-bound token without a client certificate' : 'certificate thumbprint differs from cnf.x5t#S256',
        });
      }
      if (binding.method === 'none') binding = { method: 'mtls', x5tS256: x5t };
    }

    return {
      token,
      scheme,
      claims,
      subject: claims.sub,
      clientId: claims.client_id,
      scopes: claims.scope ? claims.scope.split(' ').filter(Boolean) : [],
      authorizationDetails: claims.authorization_details ?? [],
      actors: claims.act === undefined ? [] : actorChain(claims.act),
      act: claims.act,
      txn: claims.txn,
      mandate: claims.mandate,
      acr: typeof claims.acr === 'string' ? claims.acr : undefined,
      amr: Array.isArray(claims.amr) ? claims.amr.filter((m): m is string => typeof m === 'string') : undefined,
      authTime: typeof claims.auth_time === 'number' && Number.isFinite(claims.auth_time) ? claims.auth_time : undefined,
      binding,
      headers,
    };
  }

  function requireScopes(access: VerifiedAccess, scopes: readonly string[]): void {
    const missing = scopes.filter((s) => !access.scopes.includes(s));
    if (missing.length === 0) return;
    // RFC 6750 §3: the scope attribute names the scopes the request needs.
    throw refuse([access.scheme], 'insufficient_scope', `the ${scopes.join(' ')} scope${scopes.length > 1 ? 's are' : ' is'} required`, {
      scope: scopes.join(' '),
      detail: `missing ${missing.join(' ')}`,
    });
  }

  function requireAuthorizationDetail<T extends AuthorizationDetail>(access: VerifiedAccess, check: AuthorizationDetailCheck<T>): T {
    const found = access.authorizationDetails.find((d): d is T => d.type === check.type && (check.match ? safeMatch(check.match, d as T) : true));
    if (found) return found;
    throw refuse([access.scheme], 'insufficient_scope', `an authorization_details entry of type ${check.type} that covers this request is required`, {
      detail: `${access.authorizationDetails.filter((d) => d.type === check.type).length} ${check.type} entries, none matched`,
    });
  }

  async function requirePolicy(access: VerifiedAccess, question: PolicyQuestion): Promise<PolicyDecision> {
    const decision = await ask(access, question);
    if (decision.decision) return decision;
    // A step-up is still a deny; only the challenge differs: the client can authorize again.
    if (decision.stepUp) {
      throw challengeAuthentication(access.scheme, 'policy requires a stronger or more recent sign-in for this request', decision.stepUp, `step-up by ${decision.reasons?.join(', ')}`);
    }
    throw new GuardError({ status: 403, error: 'access_denied', description: 'denied by policy', detail: decision.failure ?? decision.reasons?.join(', ') });
  }

  function requireAuthentication(access: VerifiedAccess, requirement: AuthenticationRequirement): void {
    const { acr, maxAge } = checkedRequirement(requirement);
    const weak = acr !== undefined && !acrSatisfies(access.acr, acr);
    // RFC 9470 §3 max_age: the time since the person authenticated, against this server's clock;
    // a token that does not say when is as old as can be.
    const age = access.authTime === undefined ? Infinity : Math.floor(now() / 1000) - access.authTime;
    const old = maxAge !== undefined && age > maxAge + clockSkewSeconds;
    if (!weak && !old) return;
    const description = weak ? 'a stronger sign-in is required for this request' : 'a more recent sign-in is required for this request';
    throw challengeAuthentication(access.scheme, description, { ...(acr !== undefined ? { acrValues: acr } : {}), ...(maxAge !== undefined ? { maxAge } : {}) }, weak ? `acr ${access.acr ?? 'none'} below ${acr}` : `auth_time ${access.authTime ?? 'none'} older than ${maxAge} s`);
  }

  /** RFC 9470 §3: 401 with `error="insufficient_user_authentication"` and what would meet the requirement. */
  function challengeAuthentication(scheme: Scheme, description: string, ask: { acrValues?: string; maxAge?: number }, detail: string): GuardError {
    return new GuardError({
      status: 401,
      error: 'insufficient_user_authentication',
      description,
      detail,
      headers: { 'www-authenticate': challengeValue([scheme], challenge, { error: 'insufficient_user_authentication', description, ...ask }) },
    });
  }

  function requireApprovedDetails(access: VerifiedAccess, entries: readonly AuthorizationDetail[]): string {
    const approved = access.claims.authorization_details_digest;
    const toApprove = entriesToApprove(entries);
    let presented: string | undefined;
    try {
      presented = toApprove.length > 0 ? approvalDigest(toApprove) : undefined;
    } catch {
      presented = undefined; // not canonicalisable (NaN, a Date, …): it cannot be what was approved
    }
    const matched = approved !== undefined && presented !== undefined && safeEqual(approved, presented);
    options.onApprovalCheck?.({
      jti: access.claims.jti,
      subject: access.subject,
      clientId: access.clientId,
      txn: access.txn,
      approved,
      presented,
      matched,
      at: now(),
    });
    if (matched) return presented!;
    throw refuse([access.scheme], 'insufficient_scope', 'the instruction differs from the one the person approved', {
      detail: approved === undefined ? 'the token carries no approval' : presented === undefined ? 'no order or settlement_instruction entries presented' : 'approval digest mismatch',
    });
  }

  const ask = (access: VerifiedAccess, question: PolicyQuestion) => askPolicy(options.issuer, options.policy, access, question, allowHttp);

  return {
    options: { issuer: options.issuer, audience: options.audience },
    verify,
    requireScopes,
    requireAuthorizationDetail,
    askPolicy: ask,
    requirePolicy,
    requireAuthentication,
    requireApprovedDetails,
  };
}

/** A route's requirement, checked: a level of the ladder, a whole number of seconds (TypeError otherwise). */
export function checkedRequirement(requirement: AuthenticationRequirement): AuthenticationRequirement {
  const { acr, maxAge } = requirement;
  if (acr !== undefined && acrRank(acr) < 0) throw new TypeError(`guard: acr ${JSON.stringify(acr)} is not one of Clearance's levels (${acrLadder.join(', ')})`);
  if (maxAge !== undefined && (!Number.isInteger(maxAge) || maxAge < 0)) throw new TypeError('guard: maxAge must be a whole number of seconds, 0 or more');
  return requirement;
}

/** A header by name in any letter case. */
function header(headers: GuardRequest['headers'], name: string): string | readonly string[] | undefined {
  if (headers[name] !== undefined) return headers[name];
  for (const [key, value] of Object.entries(headers)) if (key.toLowerCase() === name) return value;
  return undefined;
}

function checkAlgorithms(list: readonly string[], name: string): readonly string[] {
  if (!Array.isArray(list) || list.length === 0) throw new TypeError(`guard option ${name} must name at least one algorithm`);
  for (const alg of list) {
    // RFC 8725 §3.1, §3.2: asymmetric algorithms only; `none` and MACs are never allowed.
    if (!(permittedAlgorithms as readonly string[]).includes(alg)) throw new TypeError(`guard option ${name}: ${JSON.stringify(alg)} is not an allowed asymmetric JWS algorithm`);
  }
  // RFC 9864 §2.2: EdDSA and Ed25519 are one algorithm for an Ed25519 key; naming one allows both.
  return withBothEd25519Names(list);
}

/** A match function that throws does not match (fail closed). */
function safeMatch<T>(match: (detail: T) => boolean, detail: T): boolean {
  try {
    return match(detail) === true;
  } catch {
    return false;
  }
}
