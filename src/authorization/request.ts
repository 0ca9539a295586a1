import { isFapi2 } from '../clients/profile.ts';
import { mandateIdPattern } from '../mandates/terms.ts';
import { requestedTxn } from '../transactions/txn.ts';
import type { Client } from '../clients/store.ts';
import { jktPattern } from '../tokens/dpop.ts';
import type { Context } from '../context.ts';
import { OAuthError } from '../oauth-error.ts';
import { readClaimsParameter, type AcrClaimRequest } from './acr-request.ts';
import type { AuthorizationDetail } from './authorization-details.ts';
import { requestedTarget } from './target.ts';
import { AuthorizationParameters } from './parameters.ts';
import { codeChallengeMethods, isValidS256Challenge } from './pkce.ts';
import { matchesRegisteredRedirectUri } from './redirect-uri.ts';
import { verifyRequestObject } from './request-object.ts';
import { isOidcScope, type OidcScope } from './scopes.ts';

export type Prompt = 'none' | 'login' | 'consent';

/**
 * A validated authorization request (RFC 6749 §4.1.1, RFC 7636, OIDC Core §3.1.2.1, RFC 8707,
 * RFC 9396). Stored as JSON in pushed requests and interactions.
 */
export interface AuthorizationRequest {
  clientId: string;
  /** Exactly as sent; it matched a registered redirect URI. */
  redirectUri: string;
  state?: string;
  nonce?: string;
  /** RFC 7636 S256 challenge. */
  codeChallenge: string;
  /** The business audience (RFC 8707), when business scopes or a resource were requested. */
  resource?: string;
  /** Business scopes for `resource`. */
  scopes: string[];
  /** OpenID Connect scopes requested (and allowed to the client). */
  oidcScopes: OidcScope[];
  authorizationDetails: AuthorizationDetail[];
  prompt: Prompt[];
  /** OIDC Core §3.1.2.1 max_age, in seconds. */
  maxAge?: number;
  /** OIDC Core §3.1.2.1 acr_values, in order of preference (voluntary: acr-request.ts). */
  acrValues: string[];
  /** OIDC Core §5.5.1.1: the `claims` parameter's `id_token.acr` request, essential or voluntary (acr-request.ts). */
  acrClaim?: AcrClaimRequest;
  /** RFC 9449 §10: the DPoP key thumbprint the code will be bound to (`dpop_jkt`, or PAR's proof). */
  dpopJkt?: string;
  /** The mandate the person acts under (docs/mandates.md): checked and named by the tokens at the token endpoint. */
  mandate?: string;
  /**
   * The trade's txn the request starts (`txn=<id>` or `txn=new`, src/transactions/txn.ts): started
   * when the request is accepted (PAR, or /authorize), carried by the code's and refresh's tokens.
   */
  txn?: string;
  /**
   * OIDC Core §3.1.2.1 `login_hint`, and `idp_hint` (Clearance's, as Keycloak's `kc_idp_hint`): who
   * is signing in and through which upstream identity provider (docs/identity-brokering.md) — a
   * hint for the sign-in page, never an identity.
   */
  loginHint?: string;
  idpHint?: string;
  /** How the request arrived: plain parameters, a signed request object, or PAR. */
  via: 'parameters' | 'request_object' | 'par' | 'par_request_object';
  /** The pushed request it was resolved from (RFC 9126), consumed when the authorization completes. */
  pushedRequestId?: string;
}

/** An error that must not be redirected: the client or redirect_uri is not established (RFC 6749 §4.1.2.1). */
export class AuthorizationPageError extends Error {
  readonly oauth: OAuthError;
  constructor(oauth: OAuthError) {
    super(oauth.message);
    this.name = 'AuthorizationPageError';
    this.oauth = oauth;
  }
}

/** An error returned to the client at its validated redirect_uri (RFC 6749 §4.1.2.1). */
export class AuthorizationRedirectError extends Error {
  readonly oauth: OAuthError;
  readonly redirectUri: string;
  readonly state: string | undefined;
  constructor(oauth: OAuthError, redirectUri: string, state: string | undefined) {
    super(oauth.message);
    this.name = 'AuthorizationRedirectError';
    this.oauth = oauth;
    this.redirectUri = redirectUri;
    this.state = state;
  }
}

/** Maximum lengths of free-text parameters (a bound, not a protocol rule). */
const maxStateLength = 2048;
const maxNonceLength = 512;

/** Scopes of OIDC claims Clearance does not issue; accepted and ignored (RFC 6749 §3.3 lets the AS ignore scopes). */
const ignoredScopes = new Set(['profile', 'email', 'phone', 'address']);

/**
 * Step 1 at the authorization endpoint: the client. It must be given (once), exist, and be
 * registered for the authorization_code grant. Failures render a page: with no trusted
 * redirect_uri there is nowhere safe to send the browser (RFC 6749 §4.1.2.1; RFC 9700 §4.11.2).
 */
export async function requireAuthorizationClient(ctx: Context, params: AuthorizationParameters): Promise<Client> {
  const clientId = pageStep(() => params.string('client_id'));
  if (clientId === undefined) throw page('invalid_request', 'client_id is required');
  const client = clientId.length <= 128 ? await ctx.clients.get(clientId) : undefined;
  if (!client) throw page('invalid_client', 'the client is not registered', { status: 400 });
  // A client disabled by apply's prune (src/lifecycle/prune.ts) starts no authorization.
  if (client.disabledAt !== null) throw page('invalid_client', 'the client is disabled', { status: 400 });
  if (!client.metadata.grant_types.includes('authorization_code')) {
    throw page('unauthorized_client', 'the client is not registered for the authorization code flow');
  }
  return client;
}

/**
 * Validates an authorization request's parameters for `client` (already established) and returns
 * the request. With a `request` parameter, only the verified request object's claims count
 * (RFC 9101 §5: parameters outside it are ignored; FAPI 2.0 Message Signing).
 *
 * Throws AuthorizationPageError until redirect_uri is validated, AuthorizationRedirectError after.
 */
export async function validateAuthorizationRequest(
  ctx: Context,
  client: Client,
  outer: AuthorizationParameters,
  options: { pushed: boolean },
): Promise<AuthorizationRequest> {
  let params = outer;
  let signed = false;
  const requestObject = pageStep(() => outer.string('request'));
  if (requestObject !== undefined) {
    const claims = await pageStepAsync(() => verifyRequestObject(requestObject, client, { issuer: ctx.config.issuer, clock: ctx.clock, clientKeys: ctx.clientAuthentication.clientKeys }));
    params = AuthorizationParameters.fromClaims(claims);
    signed = true;
  }

  // RFC 6749 §3.1.2.3, RFC 9700 §4.1.3: redirect_uri is required (FAPI 2.0 SP §5.3.2.2-9 style,
  // whatever the number of registered URIs) and must exactly match a registered one.
  const redirectUri = pageStep(() => params.string('redirect_uri'));
  if (redirectUri === undefined) throw page('invalid_request', 'redirect_uri is required');
  if (!matchesRegisteredRedirectUri(client.metadata.redirect_uris ?? [], redirectUri)) {
    throw page('invalid_request', 'redirect_uri is not registered for this client');
  }

  // From here on, errors go back to the client (RFC 6749 §4.1.2.1).
  let state: string | undefined;
  try {
    state = params.string('state');
  } catch (error) {
    throw new AuthorizationRedirectError(asOAuthError(error), redirectUri, undefined);
  }
  try {
    if (state !== undefined && state.length > maxStateLength) throw new OAuthError('invalid_request', 'state is too long');
    // FAPI 2.0 SP §5.3.2.2: authorization requests only through PAR (as require_pushed_authorization_requests).
    if (!options.pushed && isFapi2(ctx.config, client)) {
      throw new OAuthError('invalid_request', 'this client must use pushed authorization requests (PAR; FAPI 2.0)');
    }
    const rest = await validateRest(ctx, client, params);
    const via = options.pushed ? (signed ? 'par_request_object' : 'par') : signed ? 'request_object' : 'parameters';
    return { clientId: client.metadata.client_id, redirectUri, ...(state !== undefined ? { state } : {}), ...rest, via };
  } catch (error) {
    throw new AuthorizationRedirectError(asOAuthError(error), redirectUri, state);
  }
}

/** Everything after client and redirect_uri, in the order a reader of RFC 6749 §4.1.1 expects. */
async function validateRest(
  ctx: Context,
  client: Client,
  params: AuthorizationParameters,
): Promise<Omit<AuthorizationRequest, 'clientId' | 'redirectUri' | 'state' | 'via'>> {
  // RFC 6749 §3.1: request parameters MUST NOT be included more than once (RFC 8707 resource may).
  const repeated = params.names().filter((name) => name !== 'resource' && params.all(name).length > 1);
  if (repeated.length > 0) throw new OAuthError('invalid_request', `parameter sent more than once: ${repeated.join(', ')}`);

  // RFC 6749 §4.1.1: response_type is REQUIRED; only `code` is offered (RFC 9700 §2.1.2: no implicit
  // or hybrid flows), so `token`, `id_token`, `code id_token`... are unsupported_response_type.
  const responseType = params.string('response_type');
  if (responseType === undefined) throw new OAuthError('invalid_request', 'response_type is required');
  if (responseType !== 'code') throw new OAuthError('unsupported_response_type', 'only response_type=code is supported');
  if (client.metadata.response_types && !client.metadata.response_types.includes('code')) {
    throw new OAuthError('unauthorized_client', 'the client is not registered for response_type code');
  }
  const responseMode = params.string('response_mode');
  if (responseMode !== undefined && responseMode !== 'query') {
    throw new OAuthError('invalid_request', 'only response_mode=query is supported');
  }

  // RFC 7636 §4.3, RFC 9700 §2.1.1: PKCE is required, with S256 (plain is refused; an absent method means plain).
  const codeChallenge = params.string('code_challenge');
  if (codeChallenge === undefined) throw new OAuthError('invalid_request', 'code_challenge is required (PKCE, S256)');
  const method = params.string('code_challenge_method');
  if (method === undefined || !(codeChallengeMethods as readonly string[]).includes(method)) {
    throw new OAuthError('invalid_request', 'code_challenge_method must be S256');
  }
  if (!isValidS256Challenge(codeChallenge)) throw new OAuthError('invalid_request', 'code_challenge is not a valid S256 challenge');

  const allowed = new Set(client.metadata.scope?.split(' ') ?? []);
  const scopeText = params.string('scope');
  const words = scopeText === undefined ? [] : scopeText.split(' ');
  // RFC 6749 §3.3: scope-token = 1*NQCHAR, separated by single spaces.
  if (words.some((w) => w === '' || !/^[\x21\x23-\x5b\x5d-\x7e]+$/.test(w))) throw new OAuthError('invalid_scope', 'scope is malformed');
  const oidc = [...new Set(words.filter(isOidcScope))];
  for (const scope of oidc) {
    if (!allowed.has(scope)) throw new OAuthError('invalid_scope', `scope ${scope} is not allowed for this client`);
  }
  const business = words.filter((w) => !isOidcScope(w) && !ignoredScopes.has(w));

  // RFC 9396 §5, RFC 8707 §2: the entries, and the one resource server with its scopes (./target.ts).
  const { authorizationDetails, resource, scopes } = await requestedTarget(ctx, params, client, business);
  if (resource === undefined && !oidc.includes('openid')) throw new OAuthError('invalid_scope', 'request openid, business scopes, or a resource');

  const nonce = params.string('nonce');
  if (nonce !== undefined && nonce.length > maxNonceLength) throw new OAuthError('invalid_request', 'nonce is too long');

  // OIDC Core §3.1.2.1: login_hint is a hint only; idp_hint names an upstream identity provider.
  const loginHint = params.string('login_hint');
  if (loginHint !== undefined && loginHint.length > 256) throw new OAuthError('invalid_request', 'login_hint is too long');
  const idpHint = params.string('idp_hint');
  if (idpHint !== undefined && !/^[a-z0-9][a-z0-9_-]{0,63}$/.test(idpHint)) throw new OAuthError('invalid_request', 'idp_hint is not an identity provider id');

  // OIDC Core §3.1.2.1: prompt is a space-separated list; `none` MUST NOT be combined with others.
  const promptText = params.string('prompt');
  const prompt = promptText === undefined ? [] : [...new Set(promptText.split(' '))];
  for (const value of prompt) {
    if (value !== 'none' && value !== 'login' && value !== 'consent') {
      throw new OAuthError('invalid_request', `prompt ${value.slice(0, 40)} is not supported (none, login, consent)`);
    }
  }
  if (prompt.includes('none') && prompt.length > 1) throw new OAuthError('invalid_request', 'prompt=none cannot be combined with other values');

  // OIDC Core §3.1.2.1: max_age is a number of seconds.
  const maxAgeText = params.string('max_age');
  let maxAge: number | undefined;
  if (maxAgeText !== undefined) {
    if (!/^\d{1,9}$/.test(maxAgeText)) throw new OAuthError('invalid_request', 'max_age must be a non-negative integer (seconds)');
    maxAge = Number(maxAgeText);
  }
  const acrText = params.string('acr_values');
  const acrValues = acrText === undefined ? [] : acrText.split(' ').filter(Boolean).slice(0, 10);
  // OIDC Core §5.5: the claims parameter; only its id_token.acr request is acted on.
  const acrClaim = readClaimsParameter(params.one('claims'));

  // RFC 9449 §10: dpop_jkt binds the code to a DPoP key: a JWK SHA-256 thumbprint (RFC 7638).
  const dpopJkt = params.string('dpop_jkt');
  if (dpopJkt !== undefined && !jktPattern.test(dpopJkt)) throw new OAuthError('invalid_request', 'dpop_jkt must be a base64url JWK SHA-256 thumbprint');
  const mandate = params.string('mandate');
  if (mandate !== undefined && !mandateIdPattern.test(mandate)) throw new OAuthError('invalid_request', 'mandate is not a mandate identifier');
  if (mandate !== undefined && resource === undefined) throw new OAuthError('invalid_request', 'a mandate needs business scopes or a resource');
  // A person's order starts its trade here (docs/audit.md "One txn from the first action").
  const txn = requestedTxn(params.string('txn'), ctx.clock.now())?.txn;
  if (txn !== undefined && authorizationDetails.length === 0 && mandate === undefined) {
    throw new OAuthError('invalid_request', 'txn starts a trade: send it with authorization_details or a mandate');
  }

  return {
    ...(nonce !== undefined ? { nonce } : {}),
    codeChallenge,
    ...(resource !== undefined ? { resource } : {}),
    scopes,
    oidcScopes: oidc,
    authorizationDetails,
    prompt: prompt as Prompt[],
    ...(maxAge !== undefined ? { maxAge } : {}),
    acrValues,
    ...(acrClaim !== undefined ? { acrClaim } : {}),
    ...(dpopJkt !== undefined ? { dpopJkt } : {}),
    ...(mandate !== undefined ? { mandate } : {}),
    ...(txn !== undefined ? { txn } : {}),
    ...(loginHint !== undefined ? { loginHint } : {}),
    ...(idpHint !== undefined ? { idpHint } : {}),
  };
}

/** Runs a step whose OAuthError must become a page (not a redirect). */
export function pageStep<T>(step: () => T): T {
  try {
    return step();
  } catch (error) {
    throw error instanceof OAuthError ? new AuthorizationPageError(error) : error;
  }
}

/** The same for an asynchronous step. */
export async function pageStepAsync<T>(step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (error) {
    throw error instanceof OAuthError ? new AuthorizationPageError(error) : error;
  }
}

function page(error: string, description: string, options: { status?: number } = {}): AuthorizationPageError {
  return new AuthorizationPageError(new OAuthError(error, description, { status: options.status ?? 400 }));
}

function asOAuthError(error: unknown): OAuthError {
  if (error instanceof OAuthError) return error;
  throw error;
}
