import type { Context } from '../context.ts';
import { OAuthError } from '../oauth-error.ts';
import { readAccessToken } from './reference-tokens.ts';
import type { AccessTokenClaims } from './claims.ts';
import { dpopAlgs, verifyDpopProof, type DpopRequest, type VerifiedDpopProof } from './dpop.ts';

/**
 * How Clearance's own protected resources (the admin API, userinfo, the AuthZEN API) accept an
 * access token: RFC 6750 Bearer and RFC 9449 §7 DPoP, with certificate binding (RFC 8705 §3). No
 * HTTP: the caller passes what it read from the request and turns the OAuthErrors into responses
 * (each carries its WWW-Authenticate challenge).
 */

export type AuthScheme = 'Bearer' | 'DPoP';

/** What the HTTP layer read from a request to a protected resource. */
export interface ResourceRequest {
  /** The Authorization header, if any. */
  authorization: string | undefined;
  /** The request target as received (path and query): a token in the query is refused. */
  target: string;
  /** The DPoP header values, method and URLs (src/http/oauth-request.ts dpopRequest). */
  dpop: Omit<DpopRequest, 'accessToken'>;
  /** RFC 8705 §3.1 thumbprint of the presented client certificate, if any. */
  certificateThumbprint: string | undefined;
}

/** An access token that passed verification and its binding checks. */
export interface ResourceAccess {
  token: string;
  claims: AccessTokenClaims;
  scheme: AuthScheme;
  /** The verified proof, with the DPoP scheme. */
  dpop?: VerifiedDpopProof;
  /** Headers for the response (a fresh DPoP-Nonce when nonces are required, RFC 9449 §9). */
  headers: Record<string, string>;
}

/** RFC 6750 §2.1 and RFC 9449 §7.1: `<scheme> <token68>`; scheme names are case-insensitive. */
const credentialsPattern = /^(Bearer|DPoP) ([A-Za-z0-9\-._~+/]+=*)$/i;

/**
 * Authenticates a request to a protected resource. The rules, in order:
 * 1. no access token in the URL (RFC 6750 §2.3 is not offered: URLs end up in logs; FAPI 2.0 SP
 *    §5.3.4) → 400 invalid_request, with a challenge (RFC 6750 §3: every refusal carries one);
 * 2. an Authorization header with the Bearer or DPoP scheme, else 401 with a challenge for both
 *    and no error code: no credentials, or another scheme such as Basic (RFC 6750 §3.1 SHOULD
 *    NOT); a Bearer or DPoP header whose credentials are not a token68 → 400 invalid_request;
 * 3. the token is ours, unexpired (invalid_token): a JWT, or a reference token's handle;
 * 4. the DPoP scheme: the token is DPoP-bound, and the request carries one valid proof (RFC 9449
 *    §4.3: htm, htu, iat, `ath` of this token, its jti used once, the nonce when required) signed
 *    with the key the token is bound to (§7.1) — the proof's jti is consumed before that binding
 *    check; failures are 401 `invalid_dpop_proof` / `use_dpop_nonce` with a DPoP challenge;
 * 5. the Bearer scheme: the token is not DPoP-bound (RFC 9449 §7.1: refused with a DPoP challenge
 *    beside the Bearer one, so the client learns which scheme the token needs);
 * 6. a certificate-bound token only with the certificate it is bound to (RFC 8705 §3).
 * Audience, liveness and scope are the caller's (they differ per resource): the one
 * protected-resource check (src/tokens/protected-resource.ts) does them next, with `challenge`.
 */
export async function authenticateResourceRequest(ctx: Pick<Context, 'keys' | 'config' | 'clock' | 'dpop' | 'referenceTokens'>, request: ResourceRequest): Promise<ResourceAccess> {
  if (/[?&]access_token=/.test(request.target)) {
    throw challenge(undefined, 'invalid_request', 'send the access token in the Authorization header, not the URL');
  }
  const match = request.authorization?.match(credentialsPattern);
  if (!match) {
    // RFC 6750 §3.1: a malformed Bearer/DPoP request is invalid_request; none, or an unsupported
    // scheme, gets a challenge without an error code.
    if (request.authorization !== undefined && /^(bearer|dpop)\s+\S/i.test(request.authorization)) {
      throw challenge(undefined, 'invalid_request', 'the Authorization header must be "Bearer <token>" or "DPoP <token>"');
    }
    throw challenge(undefined, 'invalid_token', 'a Bearer or DPoP access token is required', { bare: true });
  }
  const scheme: AuthScheme = match[1]!.toLowerCase() === 'dpop' ? 'DPoP' : 'Bearer';
  const token = match[2]!;
  // A JWT of ours or a reference token's handle (a pairwise client's person tokens are always
  // handles: src/tokens/issue.ts), read by the one function introspection uses.
  const verified = await readAccessToken(ctx, token);
  if (!verified.ok) throw challenge(scheme, 'invalid_token', 'the access token is invalid or expired', { detail: verified.reason });
  const claims = verified.claims;
  const boundKey = claims.cnf?.jkt;
  const headers: Record<string, string> = {};
  let dpop: VerifiedDpopProof | undefined;
  if (scheme === 'DPoP') {
    if (boundKey === undefined) throw challenge(scheme, 'invalid_token', 'the access token is not DPoP-bound; use the Bearer scheme');
    try {
      dpop = await verifyDpopProof({ ...request.dpop, accessToken: token }, ctx.dpop);
    } catch (error) {
      throw asResourceError(error);
    }
    if (!dpop) throw challenge(scheme, 'invalid_dpop_proof', 'the DPoP scheme needs a DPoP proof', { detail: 'no DPoP header' });
    // RFC 9449 §7.1: the proof's key is the one the token is bound to (after the jti was used).
    if (dpop.jkt !== boundKey) {
      throw challenge(scheme, 'invalid_dpop_proof', 'the DPoP proof is not signed with the key the access token is bound to', { detail: 'DPoP proof jkt differs from cnf.jkt' });
    }
    if (ctx.dpop.requireNonce) headers['dpop-nonce'] = ctx.dpop.nonces.current();
  } else if (boundKey !== undefined) {
    // RFC 9449 §7.1: a DPoP-bound token presented with the Bearer scheme is refused, and the
    // challenge names the DPoP scheme too.
    throw challenge(undefined, 'invalid_token', 'a DPoP-bound token needs the DPoP scheme and a proof');
  }
  // RFC 8705 §3: a certificate-bound token only with the certificate it is bound to.
  const boundCertificate = claims.cnf?.['x5t#S256'];
  if (boundCertificate !== undefined && boundCertificate !== request.certificateThumbprint) {
    throw challenge(scheme, 'invalid_token', 'the access token is bound to another certificate');
  }
  return { token, claims, scheme, ...(dpop ? { dpop } : {}), headers };
}

/**
 * An RFC 6750 §3 / RFC 9449 §7.1 error with its WWW-Authenticate challenge, in the scheme the
 * client used (both schemes when it used none, or the other one is the way out). `bare`: no usable
 * credentials were sent, so the challenge carries no error code (RFC 6750 §3.1).
 */
export function challenge(
  scheme: AuthScheme | undefined,
  error: 'invalid_request' | 'invalid_token' | 'insufficient_scope' | 'invalid_dpop_proof' | 'use_dpop_nonce',
  description: string,
  options: { detail?: string | undefined; scope?: string; bare?: boolean; headers?: Record<string, string> } = {},
): OAuthError {
  const params = options.bare
    ? []
    : [`error="${error}"`, `error_description="${description.replace(/["\\]/g, "'")}"`, ...(options.scope ? [`scope="${options.scope}"`] : [])];
  const bearer = ['Bearer realm="clearance"', ...params].join(', ');
  // RFC 9449 §7.1: the DPoP challenge names the proof algorithms accepted.
  const dpop = ['DPoP realm="clearance"', ...params, `algs="${dpopAlgs.join(' ')}"`].join(', ');
  const value = scheme === 'Bearer' ? bearer : scheme === 'DPoP' ? dpop : `${bearer}, ${dpop}`;
  return new OAuthError(error, description, {
    // RFC 6750 §3.1: invalid_request 400, invalid_token 401, insufficient_scope 403.
    status: error === 'insufficient_scope' ? 403 : error === 'invalid_request' ? 400 : 401,
    ...(options.detail !== undefined ? { detail: options.detail } : {}),
    headers: { ...options.headers, 'www-authenticate': value },
  });
}

/** A proof error from verifyDpopProof, as a resource answers it: 401 with a DPoP challenge (RFC 9449 §7.1, §9). */
function asResourceError(error: unknown): unknown {
  if (!(error instanceof OAuthError) || (error.error !== 'invalid_dpop_proof' && error.error !== 'use_dpop_nonce')) return error;
  return challenge('DPoP', error.error, error.description ?? 'the DPoP proof is invalid', {
    detail: error.detail,
    headers: error.headers['dpop-nonce'] ? { 'dpop-nonce': error.headers['dpop-nonce'] } : {},
  });
}
