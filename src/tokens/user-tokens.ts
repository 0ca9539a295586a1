import type { AuthorizationDetail } from '../authorization/authorization-details.ts';
import { userinfoAudience, userinfoTokenTtl, type OidcScope } from '../authorization/scopes.ts';
import type { AuthenticatedClient } from '../clients/authentication/types.ts';
import { requireSenderConstraint, type SenderBinding } from './binding.ts';
import { epochSeconds } from '../clock.ts';
import type { Context } from '../context.ts';
import { OAuthError } from '../oauth-error.ts';
import { mintAccessToken, newJti } from './access-token.ts';
import type { AccessTokenClaims } from './claims.ts';

/** What a person granted a client through one authorization: the basis of every token issued from it. */
export interface TokenBasis {
  userId: string;
  clientId: string;
  grantId: string;
  /** The business audience of the authorization request, if any. */
  resource?: string;
  scopes: string[];
  oidcScopes: OidcScope[];
  authorizationDetails: AuthorizationDetail[];
  authTime: number;
  acr: string;
  amr: string[];
  /** The mandate id the person acts under, checked at every issuance. */
  mandate?: string;
}

/** What a code or refresh token recorded of its authorization: the TokenBasis without its parties. */
export type GrantedPayload = Pick<TokenBasis, 'resource' | 'scopes' | 'oidcScopes' | 'authorizationDetails' | 'authTime' | 'acr' | 'amr' | 'mandate'>;

/** The basis of tokens issued from a stored code or refresh token. */
export function tokenBasis(parties: { userId: string; clientId: string; grantId: string }, p: GrantedPayload): TokenBasis {
  return {
    ...parties,
    ...(p.resource !== undefined ? { resource: p.resource } : {}),
    scopes: p.scopes,
    oidcScopes: p.oidcScopes,
    authorizationDetails: p.authorizationDetails,
    authTime: p.authTime,
    acr: p.acr,
    amr: p.amr,
    ...(p.mandate !== undefined ? { mandate: p.mandate } : {}),
  };
}

/** The one audience of an access token and what it carries. */
export interface AccessTarget {
  audience: string;
  scopes: string[];
  ttl: number;
  authorizationDetails: AuthorizationDetail[];
  requireSenderConstraint: boolean;
}

/**
 * Chooses the audience of an access token issued from `basis` (RFC 8707 §2.2): by default the
 * business resource of the authorization, else the userinfo endpoint when `openid` was granted;
 * `resource` may name either one (never anything else), once. `scope` may narrow the scopes
 * (RFC 6749 §6), never widen them: a wider request is invalid_scope.
 */
export async function chooseAccessTarget(ctx: Context, basis: TokenBasis, resources: string[], scope: string | undefined): Promise<AccessTarget> {
  const userinfo = userinfoAudience(ctx.config.issuer);
  const offered = new Map<string, string[]>();
  if (basis.resource !== undefined) offered.set(basis.resource, basis.scopes);
  if (basis.oidcScopes.includes('openid')) offered.set(userinfo, ['openid']);
  // One audience per token (DESIGN §4).
  if (resources.length > 1) throw new OAuthError('invalid_target', 'request one resource per token; each token has exactly one audience');
  const audience = resources[0] ?? [...offered.keys()][0];
  if (audience === undefined) throw new OAuthError('invalid_grant', 'the grant has no audience');
  const granted = offered.get(audience);
  // RFC 8707 §2.2: a resource the grant does not cover is invalid_target.
  if (!granted) throw new OAuthError('invalid_target', 'resource is not covered by this grant');
  let scopes = granted;
  if (scope !== undefined) {
    const requested = scope.split(' ');
    if (requested.some((s) => s === '')) throw new OAuthError('invalid_scope', 'scope is malformed');
    // RFC 6749 §6: the requested scope MUST NOT include any scope not originally granted.
    const wider = requested.find((s) => !granted.includes(s));
    if (wider !== undefined) throw new OAuthError('invalid_scope', `scope ${wider.slice(0, 60)} was not granted for this resource`);
    scopes = [...new Set(requested)];
  }
  if (audience === userinfo) {
    return { audience, scopes, ttl: userinfoTokenTtl, authorizationDetails: [], requireSenderConstraint: false };
  }
  const server = await ctx.resourceServers.get(audience);
  if (!server) throw new OAuthError('invalid_target', 'the resource server no longer exists');
  return {
    audience,
    scopes,
    ttl: server.access_token_ttl,
    authorizationDetails: basis.authorizationDetails,
    requireSenderConstraint: server.require_sender_constraint,
  };
}

/**
 * Refuses a bearer token for a target that needs a sender-constrained one (DESIGN §4), or for a
 * client under the FAPI 2.0 profile (`fapi`): every grant issues only bound tokens there.
 */
export function requireBinding(target: AccessTarget, binding: SenderBinding, fapi: boolean): void {
  requireSenderConstraint(binding, { resource: target.requireSenderConstraint, fapi });
}

/**
 * Mints the RFC 9068 access token of a person's authorization: `sub` is the person, `client_id`
 * the client, `grant_id` the consent grant (introspection checks it is still active), with
 * auth_time/acr/amr and the granted authorization_details (RFC 9396 §9.1), bound as `binding` says:
 * to the DPoP proof's key (RFC 9449 §6) or the client certificate (RFC 8705 §3), or not at all.
 */
export async function mintUserAccessToken(
  ctx: Context,
  _client: AuthenticatedClient,
  basis: TokenBasis,
  target: AccessTarget,
  binding: SenderBinding,
  mandate?: { id: string; v: number },
): Promise<AccessTokenClaims & { token: string }> {
  const iat = epochSeconds(ctx.clock);
  const claims: AccessTokenClaims = {
    iss: ctx.config.issuer,
    sub: basis.userId,
    aud: target.audience,
    exp: iat + target.ttl,
    iat,
    jti: newJti(),
    client_id: basis.clientId,
    scope: target.scopes.join(' '),
    grant_id: basis.grantId,
    auth_time: basis.authTime,
    acr: basis.acr,
    amr: basis.amr,
    ...(target.authorizationDetails.length > 0 ? { authorization_details: target.authorizationDetails } : {}),
    ...(binding.cnf ? { cnf: binding.cnf } : {}),
    ...(mandate ? { mandate } : {}),
  };
  const token = await mintAccessToken(ctx.keys, claims);
  return { ...claims, token };
}
