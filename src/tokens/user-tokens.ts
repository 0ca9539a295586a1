import type { ApprovalsClaimEntry } from '../approvals/claims.ts';
import type { AuthorizationDetail } from '../authorization/authorization-details.ts';
import { isOidcScope, userinfoAudience, userinfoTokenTtl, type OidcScope } from '../authorization/scopes.ts';
import type { Context } from '../context.ts';
import { OAuthError } from '../oauth-error.ts';
import type { SignalHit } from '../risk/assessment.ts';
import type { UpstreamAssurance } from '../authorization/contract.ts';
import type { AccessTokenFormat } from '../resource-servers/definition.ts';

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
  /** The trade's txn the authorization request started (src/transactions/txn.ts). */
  txn?: string;
  /** The person's passkey approval of the order entries (src/approvals): its id and digest. */
  approval?: { id: string; digest: string };
  /**
   * A CIBA request's approval (src/grants/ciba.ts): the request id every token of it carries as
   * `txn`, the second persons' `approvals` claim, and the act chain of its login_hint_token.
   */
  ciba?: { txn: string; approvals: ApprovalsClaimEntry[]; act?: Record<string, unknown> };
  /**
   * The risk signals that fired when the person signed in (src/identity/login-risk.ts), kept with
   * the code and the refresh tokens: each issuance from the grant sees them (`Issuance.loginRisk`).
   */
  loginRisk?: SignalHit[];
  /** The managed device of the sign-in the grant was made from (its tokens' `device_id`). */
  deviceId?: string;
  /** The upstream identity provider of the sign-in (src/federation/upstream): its tokens' `assurance_source`, policy's `context.assurance`. */
  assurance?: UpstreamAssurance;
}

/** What a code or refresh token recorded of its authorization: the TokenBasis without its parties. */
export type GrantedPayload = Omit<TokenBasis, 'userId' | 'clientId' | 'grantId'>;

/**
 * Every member of GrantedPayload, once: what a code or refresh token carries into the tokens it
 * issues and into the next refresh token. A member added to TokenBasis and not named here would be
 * lost at the first refresh, so the type refuses a list that misses one (or names another).
 */
const grantedMembers = Object.keys({
  resource: true,
  scopes: true,
  oidcScopes: true,
  authorizationDetails: true,
  authTime: true,
  acr: true,
  amr: true,
  mandate: true,
  txn: true,
  approval: true,
  ciba: true,
  loginRisk: true,
  deviceId: true,
  assurance: true,
} satisfies Record<keyof GrantedPayload, true>) as (keyof GrantedPayload)[];

/**
 * The granted members `source` has set, and nothing else of it (a code's nonce or session, a
 * refresh token's binding, the parties): what a refresh token records of its basis, and the basis
 * rebuilt from a stored code or refresh token.
 */
export function grantedPayload(source: GrantedPayload): GrantedPayload {
  const payload: Partial<Record<keyof GrantedPayload, unknown>> = {};
  for (const member of grantedMembers) {
    if (source[member] !== undefined) payload[member] = source[member];
  }
  return payload as GrantedPayload;
}

/** The basis of tokens issued from a stored code or refresh token. */
export function tokenBasis(parties: { userId: string; clientId: string; grantId: string }, p: GrantedPayload): TokenBasis {
  return { ...parties, ...grantedPayload(p) };
}

/** The one audience of an access token and what it carries. */
export interface AccessTarget {
  audience: string;
  scopes: string[];
  ttl: number;
  authorizationDetails: AuthorizationDetail[];
  requireSenderConstraint: boolean;
  /** The resource server's `access_token_format` (absent: jwt; the userinfo token is always a JWT). */
  format?: AccessTokenFormat | undefined;
}

/**
 * Chooses the audience of an access token issued from `basis` (RFC 8707 §2.2): by default the
 * business resource of the authorization, else the userinfo endpoint when `openid` was granted;
 * `resource` may name either one (never anything else), once. `scope` may narrow the grant, never
 * widen it (RFC 6749 §6: any subset of the original grant, equal included): its OIDC scopes
 * (`openid`, `offline_access`) are part of the grant, not of a resource, so they are checked
 * against the grant and not carried into a business token; its other scopes must be granted for
 * the chosen resource (else invalid_scope). A `scope` of OIDC scopes alone, without `resource`,
 * asks for the userinfo token.
 */
export async function chooseAccessTarget(ctx: Context, basis: TokenBasis, resources: string[], scope: string | undefined): Promise<AccessTarget> {
  const userinfo = userinfoAudience(ctx.config.issuer);
  const offered = new Map<string, string[]>();
  if (basis.resource !== undefined) offered.set(basis.resource, basis.scopes);
  if (basis.oidcScopes.includes('openid')) offered.set(userinfo, ['openid']);
  // One audience per token (DESIGN §4).
  if (resources.length > 1) throw new OAuthError('invalid_target', 'request one resource per token; each token has exactly one audience');
  const requested = scope === undefined ? undefined : readRequestedScope(scope, basis);
  const audience = resources[0] ?? (requested && requested.business.length === 0 && offered.has(userinfo) ? userinfo : [...offered.keys()][0]);
  if (audience === undefined) throw new OAuthError('invalid_grant', 'the grant has no audience');
  const granted = offered.get(audience);
  // RFC 8707 §2.2: a resource the grant does not cover is invalid_target.
  if (!granted) throw new OAuthError('invalid_target', 'resource is not covered by this grant');
  if (audience === userinfo) {
    if (requested && !requested.oidc.includes('openid')) throw new OAuthError('invalid_scope', 'the userinfo token needs the openid scope');
    if (requested && requested.business.length > 0) throw new OAuthError('invalid_scope', `scope ${requested.business[0]!.slice(0, 60)} is not a scope of the userinfo endpoint`);
    return { audience, scopes: ['openid'], ttl: userinfoTokenTtl, authorizationDetails: [], requireSenderConstraint: false };
  }
  let scopes = granted;
  if (requested) {
    // RFC 6749 §6: the requested scope MUST NOT include any scope not originally granted.
    const wider = requested.business.find((s) => !granted.includes(s));
    if (wider !== undefined) throw new OAuthError('invalid_scope', `scope ${wider.slice(0, 60)} was not granted for this resource`);
    if (requested.business.length === 0) throw new OAuthError('invalid_scope', 'name at least one scope of this resource');
    scopes = requested.business;
  }
  const server = await ctx.resourceServers.get(audience);
  if (!server) throw new OAuthError('invalid_target', 'the resource server no longer exists');
  return {
    audience,
    scopes,
    ttl: server.access_token_ttl,
    authorizationDetails: basis.authorizationDetails,
    requireSenderConstraint: server.require_sender_constraint,
    format: server.access_token_format,
  };
}

/** A refresh request's `scope`, split into the grant's OIDC scopes and business scopes; an OIDC scope not granted is invalid_scope. */
function readRequestedScope(scope: string, basis: TokenBasis): { oidc: OidcScope[]; business: string[] } {
  const requested = [...new Set(scope.split(' '))];
  if (requested.some((s) => s === '')) throw new OAuthError('invalid_scope', 'scope is malformed');
  const oidc = requested.filter(isOidcScope);
  const notGranted = oidc.find((s) => !basis.oidcScopes.includes(s));
  // RFC 6749 §6: nothing beyond the original grant, OIDC scopes included.
  if (notGranted !== undefined) throw new OAuthError('invalid_scope', `scope ${notGranted} was not granted`);
  return { oidc, business: requested.filter((s) => !isOidcScope(s)) };
}
