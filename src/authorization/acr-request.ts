import { acrLadder, acrRank, type Acr } from '../identity/acr.ts';
import { OAuthError } from '../oauth-error.ts';
import type { AuthorizationRequest } from './request.ts';

/**
 * What an authorization request asks of the person's authentication level, read on the ladder of
 * src/identity/acr.ts (docs/authentication.md "Asking for a level"):
 *
 * - `acr_values` (OIDC Core §3.1.2.1) and a non-essential `acr` claim in the `claims` parameter
 *   (§5.5.1.1) are VOLUNTARY: the values are acceptable levels in order of preference, so the
 *   request is met by a session at or above the WEAKEST value Clearance asserts. Values it does
 *   not know are ignored (it never asserts them, and a voluntary claim may go unmet); a request
 *   whose values are all unknown asks no level. A session below it is sent to sign in again; after
 *   a sign-in during the authorization, the request goes on with what was achieved, which the ID
 *   token's `acr` says (§3.1.2.1: "requested as a Voluntary Claim").
 * - an ESSENTIAL `acr` claim, `{"id_token":{"acr":{"essential":true,"values":[...]}}}` (or
 *   `"value"`), is a requirement (§5.5.1.1): met by the weakest known value or above, never
 *   waived — the person signs in again until they reach it. `essential` without values asks
 *   nothing (any acr Clearance asserts is one). Values none of which Clearance asserts cannot be
 *   met: "the Authorization Server MUST treat that outcome as a failed authentication attempt"
 *   (§5.5.1.1), answered with `unmet_authentication_requirements` (OpenID Connect Core Error Code
 *   unmet_authentication_requirements 1.0).
 */

/** The `acr` member of the `claims` parameter's `id_token` object, as the request keeps it. */
export interface AcrClaimRequest {
  essential: boolean;
  /** `value` or `values` as sent; empty: no particular value. */
  values: string[];
}

/** Longest `claims` parameter read (it is a small JSON object). */
const maxClaimsLength = 4096;
const maxValues = 10;

/**
 * Reads the `claims` parameter (OIDC Core §5.5): a JSON object — text in a query or form, an
 * object in a request object — whose `id_token` and `userinfo` members are objects of claim
 * requests (`null` or `{essential?, value?, values?}`). Only `id_token.acr` is acted on; other
 * claims are accepted and ignored (the scopes decide what a token carries). Malformed →
 * invalid_request.
 */
export function readClaimsParameter(value: unknown): AcrClaimRequest | undefined {
  if (value === undefined) return undefined;
  let claims: unknown = value;
  if (typeof value === 'string') {
    if (value.length > maxClaimsLength) throw invalid('claims is too long');
    try {
      claims = JSON.parse(value);
    } catch {
      throw invalid('claims must be a JSON object (OIDC Core §5.5)');
    }
  }
  if (!isObject(claims)) throw invalid('claims must be a JSON object (OIDC Core §5.5)');
  for (const member of ['id_token', 'userinfo'] as const) {
    const requests = claims[member];
    if (requests === undefined) continue;
    if (!isObject(requests)) throw invalid(`claims.${member} must be an object`);
    for (const [name, request] of Object.entries(requests)) {
      if (request !== null && !isObject(request)) throw invalid(`claims.${member}.${name.slice(0, 40)} must be null or an object`);
    }
  }
  const requests = claims.id_token as Record<string, unknown> | undefined;
  const acr = requests?.acr;
  if (acr === undefined || acr === null) return undefined;
  const request = acr as Record<string, unknown>;
  if (request.essential !== undefined && typeof request.essential !== 'boolean') throw invalid('claims.id_token.acr.essential must be a boolean');
  if (request.value !== undefined && request.values !== undefined) throw invalid('claims.id_token.acr has both value and values');
  let values: string[] = [];
  if (request.value !== undefined) {
    if (typeof request.value !== 'string') throw invalid('claims.id_token.acr.value must be a string');
    values = [request.value];
  } else if (request.values !== undefined) {
    if (!Array.isArray(request.values) || !request.values.every((v) => typeof v === 'string')) throw invalid('claims.id_token.acr.values must be an array of strings');
    if (request.values.length > maxValues) throw invalid(`claims.id_token.acr.values has more than ${maxValues} values`);
    values = request.values as string[];
  }
  if (values.some((v) => v.length === 0 || v.length > 256)) throw invalid('claims.id_token.acr values must be 1 to 256 characters');
  return { essential: request.essential === true, values };
}

/** The weakest known value among `values`; undefined when none is on the ladder. */
export function weakestKnownAcr(values: readonly string[]): Acr | undefined {
  const ranks = values.map(acrRank).filter((rank) => rank >= 0);
  return ranks.length > 0 ? acrLadder[Math.min(...ranks)] : undefined;
}

/** The level `acr_values` and a voluntary `acr` claim ask for (undefined: none). */
export function voluntaryAcr(request: Pick<AuthorizationRequest, 'acrValues' | 'acrClaim'>): Acr | undefined {
  const claim = request.acrClaim && !request.acrClaim.essential ? request.acrClaim.values : [];
  return weakestKnownAcr([...request.acrValues, ...claim]);
}

/**
 * The level an essential `acr` claim requires: undefined when there is none (or it names no
 * values), `unreachable` when it names only values Clearance never asserts.
 */
export function essentialAcr(request: Pick<AuthorizationRequest, 'acrClaim'>): Acr | 'unreachable' | undefined {
  const claim = request.acrClaim;
  if (!claim?.essential || claim.values.length === 0) return undefined;
  return weakestKnownAcr(claim.values) ?? 'unreachable';
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function invalid(description: string): OAuthError {
  return new OAuthError('invalid_request', description);
}
