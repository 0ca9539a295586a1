import { errors as joseErrors, jwtVerify, type JWTPayload } from 'jose';
import { registeredKeys, type RegisteredKey } from '../clients/authentication/client-keys.ts';
import type { ClientKeySets } from '../clients/authentication/remote-keys.ts';
import { assertionAlgs } from '../clients/metadata.ts';
import type { Client } from '../clients/store.ts';
import { epochSeconds, type Clock } from '../clock.ts';
import { decodeCompactJws, mediaType } from '../jose/index.ts';
import { OAuthError } from '../oauth-error.ts';

/**
 * JWT-Secured Authorization Requests (RFC 9101) as FAPI 2.0 Message Signing profiles them: a
 * request object is a compact JWS signed by the client with one of its registered keys.
 */

/** RFC 9101 §10.8: the explicit type of a request object. */
export const requestObjectTyp = 'oauth-authz-req+jwt';

/** Signature algorithms accepted for request objects: never `none`, never RS256 (FAPI 2.0 SP §5.4); EdDSA also as `Ed25519` (RFC 9864 §2.2). */
export const requestObjectAlgs = assertionAlgs;

/** Largest request object accepted, in bytes. */
export const maxRequestObjectBytes = 32 * 1024;
/** Longest lifetime, exp − nbf (FAPI 2.0 Message Signing §5.3.1: no more than 60 minutes). */
export const maxRequestObjectLifetimeSeconds = 3600;
/** Clock skew tolerated on exp and nbf. */
export const requestObjectSkewSeconds = 60;

/**
 * Verifies a request object for `client` and returns its claims: the authorization request's
 * parameters (RFC 9101 §4). Every failure is `invalid_request_object` (RFC 9101 §6.3).
 *
 * Header: a compact JWS (no JWE, no JSON serialization); `alg` from the allowlist and equal to the
 * one algorithm of the key that verifies it (RFC 8725 §3.1); `typ` absent or oauth-authz-req+jwt
 * (anything else is a JWT of another kind, RFC 8725 §3.11). Keys come only from the client's
 * registration (`jwks`, or the set at its registered `jwks_uri`); an embedded `jwk`, `x5c`, `jku` or `x5u` is ignored and never fetched (RFC 8725 §3.10).
 * Claims: `iss` = client_id and `aud` = the issuer (RFC 9101 §4, §10.2); `exp` and `nbf` present,
 * not expired, already valid, `nbf` at most 60 min in the past and `exp − nbf` ≤ 60 min (FAPI 2.0
 * Message Signing §5.3.1); a `client_id` claim equal to the client; no nested `request` or
 * `request_uri` (RFC 9101 §4).
 */
export async function verifyRequestObject(
  jwt: string,
  client: Client,
  options: { issuer: string; clock: Clock; /** Keys of clients registered with `jwks_uri`. */ clientKeys?: ClientKeySets },
): Promise<Record<string, unknown>> {
  const clientId = client.metadata.client_id;
  // RFC 8725 §3.3: one compact JWS (src/jose), within the size cap.
  const decoded = decodeCompactJws(jwt, { maxBytes: maxRequestObjectBytes });
  if (!decoded.ok) {
    if (decoded.problem === 'too_large') throw invalid('the request object is too large');
    if (decoded.problem === 'jwe') throw invalid('encrypted request objects are not supported; sign it (JWS)');
    if (decoded.problem === 'header') throw invalid('the request object header is not a JSON object');
    if (decoded.problem === 'claims') throw invalid('the request object claims set is not a JSON object');
    throw invalid('the request object must be a signed JWT in compact serialization');
  }
  const { header } = decoded.jws;
  const alg = header.alg;
  if (typeof alg !== 'string') throw invalid('the request object header has no alg');
  // RFC 8725 §3.1: `none` in any letter case is never accepted; the algorithm comes from an allowlist.
  if (alg.toLowerCase() === 'none') throw invalid('the request object must be signed (alg none is refused)');
  if (!(requestObjectAlgs as readonly string[]).includes(alg)) {
    throw invalid(`request object alg ${alg.slice(0, 20)} is not allowed (${requestObjectAlgs.join(', ')})`);
  }
  // RFC 8725 §3.11: a JWT typed for another purpose (at+jwt, dpop+jwt, JWT of an ID token) is refused.
  if (header.typ !== undefined && mediaType(header.typ) !== requestObjectTyp) throw invalid(`the request object typ must be ${requestObjectTyp}`);
  const remote = client.metadata.jwks_uri ? await remoteKeys(client, options.clientKeys, false) : undefined;
  let keys = candidateKeys(client, remote?.keys ?? registeredKeys(client), alg, header.kid);
  // A jwks_uri without the kid: the client may have rotated, so the set is fetched once more (rate-limited).
  if (remote && !remote.fetched && keys.length === 0) {
    const again = await remoteKeys(client, options.clientKeys, true);
    keys = candidateKeys(client, again.keys, alg, header.kid);
  }
  if (keys.length === 0) throw invalid(`no registered key of the client verifies ${alg}${header.kid === undefined ? '' : ' with that kid'}`);

  let payload: JWTPayload | undefined;
  let failure = 'the request object signature does not verify with any of the client\'s registered keys';
  for (const candidate of keys) {
    try {
      ({ payload } = await jwtVerify(jwt, candidate.key, {
        algorithms: [alg],
        issuer: clientId,
        requiredClaims: ['exp', 'nbf'],
        currentDate: new Date(options.clock.now()),
        clockTolerance: requestObjectSkewSeconds,
      }));
      break;
    } catch (error) {
      if (error instanceof joseErrors.JWSSignatureVerificationFailed) continue;
      failure = describeJoseError(error);
      break;
    }
  }
  if (!payload) throw invalid(failure);

  const { aud, exp, nbf } = payload;
  // RFC 9101 §4: aud SHOULD be the issuer; FAPI 2.0 Message Signing §5.3.1: it contains it. A
  // request object addressed to several servers is refused.
  const audience = Array.isArray(aud) && aud.length === 1 ? aud[0] : aud;
  if (audience !== options.issuer) throw invalid(`the request object aud must be the issuer ${options.issuer}`);
  const now = epochSeconds(options.clock);
  // FAPI 2.0 Message Signing §5.3.1: nbf no longer than 60 minutes in the past; exp no more than 60 minutes after nbf.
  if (nbf! < now - maxRequestObjectLifetimeSeconds) throw invalid('the request object nbf is more than 60 minutes in the past');
  if (exp! - nbf! > maxRequestObjectLifetimeSeconds) throw invalid('the request object lifetime (exp - nbf) exceeds 60 minutes');
  if (payload.client_id !== undefined && payload.client_id !== clientId) {
    throw invalid('the request object client_id does not match the client');
  }
  // RFC 9101 §4: the request object MUST NOT contain request or request_uri.
  if ('request' in payload || 'request_uri' in payload) throw invalid('the request object must not contain request or request_uri');
  return payload as Record<string, unknown>;
}

/** The client's keys for `alg`; a `kid` is only an opaque lookup key among them (RFC 8725 §3.10). */
function candidateKeys(client: Client, all: RegisteredKey[], alg: string, kid: unknown): RegisteredKey[] {
  if (!client.metadata.jwks && !client.metadata.jwks_uri) throw invalid('the client has no registered jwks to verify request objects with');
  // One algorithm per key type; EdDSA under both its names (RFC 9864 §2.2).
  let keys = all.filter((k) => (k.algorithms as readonly string[]).includes(alg));
  if (kid !== undefined) {
    if (typeof kid !== 'string') throw invalid('the request object kid must be a string');
    keys = keys.filter((k) => k.kid === kid);
  }
  return keys;
}

/** The set at the client's jwks_uri (src/clients/authentication/remote-keys.ts); a set not at hand is invalid_request_object. */
async function remoteKeys(client: Client, sets: ClientKeySets | undefined, refresh: boolean): Promise<{ keys: RegisteredKey[]; fetched: boolean }> {
  if (!sets) throw invalid('the client registered jwks_uri, but this server fetches no client keys');
  const result = await sets.get(client, { refresh });
  if ('error' in result) throw new OAuthError('invalid_request_object', "the client's keys at its jwks_uri are not available", { detail: result.error });
  return result;
}

function describeJoseError(error: unknown): string {
  if (error instanceof joseErrors.JWTExpired) return 'the request object has expired';
  if (error instanceof joseErrors.JWTClaimValidationFailed) {
    // The reason first: a missing claim is named as missing, whichever claim it is (a missing nbf is not "not yet valid").
    if (error.reason === 'missing') return `the request object must contain ${error.claim}`;
    if (error.claim === 'nbf' && error.reason === 'check_failed') return 'the request object is not yet valid (nbf)';
    if (error.claim === 'iss') return 'the request object iss must be the client_id';
    return `the request object ${error.claim} claim is invalid`;
  }
  if (error instanceof joseErrors.JOSEError) return `the request object is invalid (${error.code})`;
  return 'the request object is invalid';
}

function invalid(description: string): OAuthError {
  return new OAuthError('invalid_request_object', description);
}
