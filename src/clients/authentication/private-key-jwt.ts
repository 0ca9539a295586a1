import type { JWTPayload } from 'jose';
import { decodeCompactJws, mediaType, sameAlgorithm, verifyCompactSignature } from '../../jose/index.ts';
import { epochSeconds, type Clock } from '../../clock.ts';
import type { ReplayCache } from '../../tokens/replay-cache.ts';
import { assertionAlgs } from '../metadata.ts';
import type { Client } from '../store.ts';
import { registeredKeys, type AssertionAlg, type RegisteredKey } from './client-keys.ts';
import { invalidClient, quote } from './errors.ts';
import type { ClientKeySets } from './remote-keys.ts';
import { hasControlCharacter } from '../../parameters.ts';

/** RFC 7523 §2.2: the only client_assertion_type accepted. */
export const jwtBearerAssertionType = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

/** Largest client_assertion accepted, in bytes; larger is refused before any parsing. */
export const defaultMaxAssertionBytes = 8 * 1024;
/** Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds. */
export const clockSkewSeconds = 60;
/** Longest assertion lifetime (exp − iat, exp − nbf, and exp − now), in seconds. */
export const maxLifetimeSeconds = 300;
/** Longest `jti` accepted (it becomes a database key). */
export const maxJtiLength = 256;

/**
 * `typ` values accepted (compared case-insensitively, with or without `application/`): none at
 * all, the generic `JWT`, and `client-authentication+jwt` from RFC 7523bis. Any other type is
 * a JWT made for something else (`at+jwt`, `dpop+jwt`, `oauth-authz-req+jwt`, `logout+jwt`,
 * `secevent+jwt`, ...) and is refused (RFC 8725 §3.11).
 */
const acceptedTypes = new Set(['jwt', 'client-authentication+jwt']);

/**
 * Claims that mark a JWT of another kind (RFC 8725 §3.12): an ID token (`nonce`, `at_hash`,
 * `c_hash`, `s_hash`), a DPoP proof (`htm`, `htu`, `ath`), a request object (`response_type`,
 * `redirect_uri`) or a security event token (`events`). A client assertion has none of them,
 * so one being present means the token was minted for another purpose.
 */
const foreignClaims = ['nonce', 'at_hash', 'c_hash', 's_hash', 'htm', 'htu', 'ath', 'response_type', 'redirect_uri', 'events'];

/** A structurally valid compact JWS whose signature is not yet checked. */
export interface ParsedAssertion {
  jwt: string;
  header: Record<string, unknown>;
  /** Unverified claims: use only to find the client, then verify. */
  claims: Record<string, unknown>;
}

export interface AssertionContext {
  issuer: string;
  clock: Clock;
  replay: ReplayCache;
  /** Keys of clients registered with `jwks_uri`; without it such clients cannot authenticate. */
  clientKeys?: ClientKeySets;
}

/**
 * RFC 7521 §4.2: the assertion type and the assertion come together, once. Returns the
 * assertion text.
 */
export function requireJwtBearerType(type: string | undefined, assertion: string | undefined): string {
  if (type === undefined) throw invalidClient('client_assertion without client_assertion_type', 'client_assertion_type is required');
  if (type !== jwtBearerAssertionType) {
    throw invalidClient(`unsupported client_assertion_type ${quote(type)}`, `client_assertion_type must be ${jwtBearerAssertionType}`);
  }
  if (assertion === undefined) throw invalidClient('client_assertion_type without client_assertion', 'client_assertion is required');
  return assertion;
}

/**
 * Parses a client assertion as a compact JWS (RFC 7515 §7.1) and nothing else (src/jose
 * `decodeCompactJws`): three non-empty segments of canonical base64url, a JSON object header and
 * claims set. Refuses, before any key is touched, JWE (five segments), the JSON serialization,
 * unsecured JWTs and oversized input (RFC 8725 §3.3; 8725bis).
 */
export function parseClientAssertion(jwt: string, maxBytes = defaultMaxAssertionBytes): ParsedAssertion {
  const decoded = decodeCompactJws(jwt, { maxBytes });
  if (!decoded.ok) {
    const detail = `client_assertion: ${decoded.reason}`;
    switch (decoded.problem) {
      // A 400, as for any oversized input; never a 5xx.
      case 'too_large':
        throw invalidClient(detail, 'client_assertion is too large', 400);
      case 'jwe':
        throw invalidClient(detail, 'client_assertion must be a signed JWT, not encrypted');
      case 'unsecured':
        throw invalidClient(detail, 'client_assertion must be signed');
      case 'empty':
      case 'json_serialization':
      case 'segments':
        throw invalidClient(detail, 'client_assertion must be a compact JWS');
      default:
        throw invalidClient(detail, 'client_assertion is malformed');
    }
  }
  return { jwt, header: decoded.jws.header, claims: decoded.jws.claims };
}

/**
 * The client the assertion claims to come from: its `sub` (RFC 7523 §3 (B): the subject MUST be
 * the client_id). Unverified; the caller looks the client up and then calls `verifyClientAssertion`.
 */
export function assertionClientId(parsed: ParsedAssertion): string {
  const { sub } = parsed.claims;
  const description = 'client_assertion must have sub = client_id';
  if (sub === undefined) throw invalidClient('client_assertion has no sub', description);
  if (typeof sub !== 'string' || sub === '') throw invalidClient('client_assertion sub is not a non-empty string', description);
  return sub;
}

/**
 * Verifies a private_key_jwt client assertion for `client` (RFC 7523 §3, RFC 7521 §4.2,
 * FAPI 2.0 SP §5.3.2.1, RFC 7523bis audience rules) and consumes its `jti`. Resolves the `jti`.
 * Every failure is `invalid_client` with a detail naming the rule.
 */
export async function verifyClientAssertion(
  parsed: ParsedAssertion,
  client: Client,
  ctx: AssertionContext,
): Promise<{ jti: string }> {
  const clientId = client.metadata.client_id;
  const alg = checkHeader(parsed.header, client);
  const claims = await verifyWithClientKeys(parsed, alg, client, ctx);
  const jti = checkClaims(claims, clientId, ctx);
  await consumeJti(ctx.replay, clientId, jti, claims.exp!);
  return { jti };
}

/**
 * The header rules: a signature algorithm from the allowlist, and the client's registered one when
 * it has one (RFC 8725 §2.1, §3.1); no `crit` extensions; a `typ` that is a client assertion's.
 * Embedded keys (`jwk`, `x5c`) and key URLs (`jku`, `x5u`) are ignored: keys come only from the
 * client's registration (`jwks`, or the `jwks_uri` it registered), never from a URL in the token
 * (RFC 8725 §3.10).
 */
function checkHeader(header: Record<string, unknown>, client: Client): AssertionAlg {
  const { alg, typ, crit } = header;
  if (typeof alg !== 'string') throw invalidClient('client_assertion header has no alg');
  // RFC 8725 §3.1: `none` in any letter case is never accepted.
  if (alg.toLowerCase() === 'none') throw invalidClient('client_assertion alg is "none"', 'client_assertion must be signed');
  if (!(assertionAlgs as readonly string[]).includes(alg)) {
    const allowed = assertionAlgs.join(', ');
    throw invalidClient(`client_assertion alg ${quote(alg)} is not allowed (${allowed})`, `client_assertion alg must be one of ${allowed}`);
  }
  const registered = client.metadata.token_endpoint_auth_signing_alg;
  // OpenID Connect Dynamic Client Registration 1.0 §2: token_endpoint_auth_signing_alg — "All
  // Token Requests using these authentication methods from this Client MUST be rejected, if the
  // JWT is not signed with this algorithm".
  // EdDSA and Ed25519 are one algorithm under two names (RFC 9864 §2.2; src/jose/algorithms.ts):
  // the same key type and the same signature, so a client registered with either may send both.
  if (registered && !sameAlgorithm(alg, registered)) {
    throw invalidClient(`client_assertion alg ${alg} is not the client's registered ${registered}`);
  }
  if (crit !== undefined) throw invalidClient('client_assertion header has crit, which is not supported');
  if (typ !== undefined) {
    if (!acceptedTypes.has(mediaType(typ) ?? '')) {
      throw invalidClient(`client_assertion typ ${quote(typ)} is not a client assertion's (cross-JWT confusion, RFC 8725 §3.11)`);
    }
  }
  return alg as AssertionAlg;
}

/**
 * Verifies the signature with the client's keys: its registered `jwks`, or the set at its
 * `jwks_uri`. For a jwks_uri, a `kid` not in the set, or (without a kid) no key that verifies,
 * fetches the set again once — the client may have rotated its key — within the rate limit of
 * remote-keys.ts; the candidates are then chosen and tried again on the fresh set.
 */
async function verifyWithClientKeys(parsed: ParsedAssertion, alg: AssertionAlg, client: Client, ctx: AssertionContext): Promise<JWTPayload> {
  const id = client.metadata.client_id;
  if (!client.metadata.jwks_uri) return verifySignature(parsed, alg, candidateKeys(client, registeredKeys(client), alg, parsed.header.kid), ctx.clock, id);
  if (!ctx.clientKeys) throw invalidClient(`client ${id} registered jwks_uri, but this server fetches no client keys`);
  const first = await remoteKeys(ctx.clientKeys, client, false);
  try {
    return verifySignature(parsed, alg, candidateKeys(client, first.keys, alg, parsed.header.kid), ctx.clock, id);
  } catch (error) {
    // Only a key we do not have is worth a fetch; a set fetched just now is as fresh as it gets.
    if (first.fetched || !isKeyMiss(error)) throw error;
    const again = await remoteKeys(ctx.clientKeys, client, true);
    if (!again.fetched) throw error;
    return verifySignature(parsed, alg, candidateKeys(client, again.keys, alg, parsed.header.kid), ctx.clock, id);
  }
}

async function remoteKeys(sets: ClientKeySets, client: Client, refresh: boolean): Promise<{ keys: RegisteredKey[]; fetched: boolean }> {
  const result = await sets.get(client, { refresh });
  if ('error' in result) throw invalidClient(result.error);
  return result;
}

/** Failures a newer key set could cure: an unknown kid, no key for the algorithm, no key that verifies. */
function isKeyMiss(error: unknown): boolean {
  const detail = (error as { detail?: string }).detail ?? '';
  return / is not among client |has no registered key for |does not verify with any of client /.test(detail);
}

/**
 * The keys the assertion may be verified with. A `kid` is only an opaque lookup key among the
 * client's own keys (unknown → fail, RFC 8725 §3.10); without one, every key of the header's
 * algorithm is a candidate. The key must verify the header's algorithm (one per key type, EdDSA
 * under both its names).
 */
function candidateKeys(client: Client, keys: RegisteredKey[], alg: AssertionAlg, kid: unknown): RegisteredKey[] {
  const id = client.metadata.client_id;
  if (!client.metadata.jwks && !client.metadata.jwks_uri) throw invalidClient(`client ${id} has no registered jwks`);
  if (kid !== undefined) {
    if (typeof kid !== 'string' || kid === '') throw invalidClient('client_assertion kid is not a non-empty string');
    const named = keys.filter((k) => k.kid === kid);
    if (named.length === 0) throw invalidClient(`client_assertion kid ${quote(kid)} is not among client ${id}'s keys`);
    const usable = named.filter((k) => k.algorithms.includes(alg));
    if (usable.length === 0) throw invalidClient(`client_assertion kid ${quote(kid)} names a key that does not verify ${alg}`);
    return usable;
  }
  const usable = keys.filter((k) => k.algorithms.includes(alg));
  if (usable.length === 0) throw invalidClient(`client ${id} has no registered key for ${alg}`);
  return usable;
}

/**
 * Verifies the signature against each candidate key until one matches (RFC 7515 §5.2), then the
 * time claims a JWT library would check: numeric `exp`, `nbf` and `iat` (RFC 7519 §4.1.4-6), `exp`
 * not past and `nbf` not ahead, each with the allowed clock skew.
 */
function verifySignature(parsed: ParsedAssertion, alg: AssertionAlg, keys: RegisteredKey[], clock: Clock, clientId: string): JWTPayload {
  if (!keys.some((candidate) => verifyCompactSignature(alg, candidate.key, parsed.jwt))) {
    throw invalidClient(
      `client_assertion signature does not verify with any of client ${clientId}'s ${alg} keys (${keys.length} tried)`,
    );
  }
  const claims = parsed.claims as JWTPayload;
  const prefix = `client_assertion of ${clientId}`;
  for (const name of ['exp', 'nbf', 'iat'] as const) {
    if (claims[name] !== undefined && (typeof claims[name] !== 'number' || !Number.isFinite(claims[name]))) {
      throw invalidClient(`${prefix}: "${name}" claim must be a number`);
    }
  }
  const now = epochSeconds(clock);
  if (claims.exp !== undefined && claims.exp <= now - clockSkewSeconds) {
    throw invalidClient(`${prefix} has expired (exp, ${clockSkewSeconds} s skew)`, 'client_assertion has expired');
  }
  if (claims.nbf !== undefined && claims.nbf > now + clockSkewSeconds) {
    throw invalidClient(`${prefix}: "nbf" claim timestamp check failed`, 'client_assertion is not yet valid');
  }
  return claims;
}

/**
 * The claim rules, after the signature verified (RFC 7523 §3, FAPI 2.0 SP §5.3.2.1):
 * iss = sub = client_id; aud is exactly the issuer identifier, as a string; exp present and
 * not past; iat and nbf not in the future; a lifetime of at most five minutes; a jti; no claims
 * of another kind of JWT. Returns the jti.
 */
function checkClaims(claims: JWTPayload, clientId: string, ctx: AssertionContext): string {
  const now = epochSeconds(ctx.clock);
  const { iss, sub, aud, exp, iat, nbf, jti } = claims;
  // RFC 7523 §3 (A), (B); RFC 7523bis: iss and sub are both the client_id.
  if (sub !== clientId) throw invalidClient(`client_assertion sub ${quote(sub)} is not client_id ${clientId}`);
  if (iss !== clientId) {
    throw invalidClient(`client_assertion iss ${quote(iss)} is not client_id ${clientId}`, 'client_assertion must have iss = client_id');
  }
  // FAPI 2.0 SP §5.3.2.1-8 and RFC 7523bis: the audience is the issuer identifier as a single
  // string; not the token or PAR endpoint URL, and not an array (audience injection).
  const audience = `client_assertion aud must be the issuer identifier ${ctx.issuer}`;
  if (Array.isArray(aud)) {
    throw invalidClient(`client_assertion aud is an array ${quote(aud)}; only the issuer as a string is accepted`, audience);
  }
  if (aud !== ctx.issuer) throw invalidClient(`client_assertion aud ${quote(aud)} is not the issuer ${ctx.issuer}`, audience);
  // RFC 7523 §3 (4): exp is required. verifySignature, which runs first, refused it if past (beyond the skew).
  if (typeof exp !== 'number') throw invalidClient('client_assertion has no exp', 'client_assertion must have exp');
  if (iat !== undefined && iat > now + clockSkewSeconds) {
    const detail = `client_assertion iat is ${iat - now} s in the future (limit ${clockSkewSeconds} s)`;
    throw invalidClient(detail, 'client_assertion iat is in the future');
  }
  // verifySignature, which runs first, refused an nbf beyond the skew; the lifetime rule below bounds the rest.
  for (const [name, start] of [['iat', iat], ['nbf', nbf], ['now', now]] as const) {
    if (start === undefined) continue;
    const allowed = maxLifetimeSeconds + (name === 'now' ? clockSkewSeconds : 0);
    if (exp - start > allowed) {
      throw invalidClient(
        `client_assertion lives ${exp - start} s from ${name} to exp (limit ${allowed} s)`,
        `client_assertion lifetime must be at most ${maxLifetimeSeconds} s`,
      );
    }
  }
  if (jti === undefined) throw invalidClient('client_assertion has no jti', 'client_assertion must have jti');
  // A control character could not be a database key (issue 20 item 4: NUL was a 500 on PostgreSQL).
  if (typeof jti !== 'string' || jti.length === 0 || jti.length > maxJtiLength || hasControlCharacter(jti)) {
    throw invalidClient(`client_assertion jti is not a string of 1-${maxJtiLength} characters without control characters`, 'client_assertion jti is malformed');
  }
  const foreign = foreignClaims.find((claim) => claim in claims);
  if (foreign) {
    throw invalidClient(`client_assertion has a "${foreign}" claim: a JWT of another kind (cross-JWT confusion, RFC 8725 §3.12)`);
  }
  return jti;
}

/**
 * RFC 7523 §3 (7): a jti is used once. Remembered until the assertion could no longer pass the
 * exp check, on the shared database so every node sees it.
 */
async function consumeJti(replay: ReplayCache, clientId: string, jti: string, exp: number): Promise<void> {
  const fresh = await replay.use(`client_assertion:${clientId}:${jti}`, (exp + clockSkewSeconds) * 1000);
  if (!fresh) {
    throw invalidClient(`client_assertion jti ${quote(jti)} of ${clientId} was already used`, 'client_assertion has already been used');
  }
}
