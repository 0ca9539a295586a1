import { createHash, webcrypto } from 'node:crypto';
import * as oidc from 'openid-client';
import { FetchError, pinnedRequest } from '../fetch.ts';
import { containsJwt } from '../../audit/guard.ts';
import type { IdentityProvider, OidcProvider } from './definition.ts';
import type { UpstreamLoginSecrets } from './upstream-logins.ts';
import { withinSpan } from '../../clock.ts';
import { upstreamSessionId } from './session-id.ts';
import { asksRenewal, type FreshnessAsked } from './freshness.ts';

/**
 * Clearance as a relying party of an upstream OpenID Provider, with openid-client (on
 * oauth4webapi): the authorization code flow with PKCE (S256), through PAR where the upstream
 * offers it (RFC 9126), and the ID token validated in full — issuer, audience, azp, nonce,
 * signature against the upstream's published keys (enableNonRepudiationChecks; the code flow's
 * TLS alone would let OIDC Core §3.1.3.7 skip it, the firm's evidence should not), `exp` with
 * 30 s of skew and `iat` no later than now plus that skew (checked here: oauth4webapi does not),
 * `at_hash` where present (OIDC Core §3.1.3.8: also checked here), RFC 9207 `iss` in the
 * response where the upstream says it sends it. The person's profile
 * claims come from the ID token, else from userinfo (OIDC Core §5.4), its `sub` the ID token's.
 *
 * Every request to the upstream follows the SSRF rules of partner fetching
 * (src/federation/fetch.ts pinnedRequest: https; loopback and private addresses only when the
 * declaration allows them; no credentials in URLs; the connection pinned to the checked address, so
 * DNS rebinding cannot swap it; no redirects followed), with a 5-second and a 512 KiB limit.
 */

/** Discovered metadata is kept this long per provider (a changed declaration is discovered again at once). */
const discoveryTtlMs = 10 * 60_000;
const timeoutSeconds = 5;
/** Clock skew tolerated on the ID token's times (openid-client's clockTolerance, and iat here). */
const skewSeconds = 30;
const configurations = new Map<string, { fingerprint: string; at: number; config: Promise<oidc.Configuration> }>();

export type UpstreamFailure = 'discovery_failed' | 'upstream_error' | 'invalid_response' | 'invalid_id_token' | 'token_request_failed';

/** The upstream's answer could not be used: why, for the audit event and the page. */
export class UpstreamError extends Error {
  override name = 'UpstreamError';
  readonly reason: UpstreamFailure;
  constructor(reason: UpstreamFailure, message: string) {
    super(message);
    this.reason = reason;
  }
}

export function guardedFetch(provider: Pick<IdentityProvider, 'allow_private_network'>): oidc.CustomFetch {
  const rules = { allowPrivateNetwork: provider.allow_private_network, timeoutMs: timeoutSeconds * 1000, maxBytes: 512 * 1024 };
  return async (url, options) => {
    const headers: Record<string, string> = {};
    new Headers(options.headers as ConstructorParameters<typeof Headers>[0]).forEach((value, name) => (headers[name] = value));
    const body = options.body === undefined || options.body === null ? undefined : Buffer.from(await new Response(options.body as ConstructorParameters<typeof Response>[0]).arrayBuffer());
    const answer = await pinnedRequest(url, { method: options.method ?? 'GET', headers, ...(body ? { body } : {}) }, rules);
    // Null-body statuses (204, 304) take no body in a Response.
    const empty = answer.status === 204 || answer.status === 304;
    return new Response(empty ? null : new Uint8Array(answer.body), { status: answer.status, headers: answer.headers });
  };
}

/** The upstream's client configuration (its metadata discovered, cached for ten minutes). */
export async function configurationOf(provider: OidcProvider, clientSecret: string, now: number): Promise<oidc.Configuration> {
  const fingerprint = createHash('sha256').update(JSON.stringify(provider)).update('\n').update(clientSecret).digest('base64url');
  const cached = configurations.get(provider.id);
  if (cached && cached.fingerprint === fingerprint && withinSpan(now, cached.at, discoveryTtlMs)) return cached.config;
  const auth = await clientAuthOf(provider, clientSecret);
  const issuer = new URL(provider.issuer);
  const config = oidc
    .discovery(issuer, provider.client_id, { [oidc.clockTolerance]: skewSeconds }, auth, {
      [oidc.customFetch]: guardedFetch(provider),
      timeout: timeoutSeconds,
      execute: [oidc.enableNonRepudiationChecks, ...(issuer.protocol === 'http:' ? [oidc.allowInsecureRequests] : [])],
    })
    .catch((error: unknown) => {
      configurations.delete(provider.id);
      throw new UpstreamError('discovery_failed', `the metadata of ${provider.issuer} could not be used: ${describe(error)}`);
    });
  configurations.set(provider.id, { fingerprint, at: now, config });
  return config;
}

/** How Clearance authenticates to the upstream's token endpoint (`credential`: the secret, or the private JWK as JSON). */
async function clientAuthOf(provider: OidcProvider, credential: string): Promise<oidc.ClientAuth> {
  switch (provider.token_endpoint_auth_method) {
    case 'client_secret_post':
      return oidc.ClientSecretPost(credential);
    case 'private_key_jwt': {
      const key = await webcrypto.subtle.importKey('jwk', JSON.parse(credential) as webcrypto.JsonWebKey, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']);
      return oidc.PrivateKeyJwt({ key: key as unknown as oidc.CryptoKey, kid: `upstream-${provider.id}` });
    }
    default:
      return oidc.ClientSecretBasic(credential);
  }
}

/** Forgets what was discovered of a provider (its declaration changed, or a sign-in found its keys stale). */
export function forgetConfiguration(providerId: string): void {
  configurations.delete(providerId);
}

/** Where the browser goes to sign in at the upstream: a PAR request_uri when it offers PAR, else the parameters in the URL. */
export async function authorizationUrl(
  config: oidc.Configuration,
  provider: OidcProvider,
  request: { redirectUri: string; secrets: UpstreamLoginSecrets; loginHint?: string; freshness?: FreshnessAsked },
): Promise<URL> {
  const parameters: Record<string, string> = {
    redirect_uri: request.redirectUri,
    scope: provider.scopes.join(' '),
    response_type: 'code',
    state: request.secrets.state,
    nonce: request.secrets.nonce,
    code_challenge: await oidc.calculatePKCECodeChallenge(request.secrets.codeVerifier),
    code_challenge_method: 'S256',
    ...(request.loginHint !== undefined ? { login_hint: request.loginHint } : {}),
    // The relying party's freshness, passed on (OIDC Core §3.1.2.1): the upstream's own session
    // must not stand in for a sign-in fresher than it. max_age=0 "is equivalent to prompt=login",
    // and says so in both words to an upstream that knows only one. What comes back is checked
    // all the same (./freshness.ts: auth_time within max_age, and after this request for prompt=login).
    ...(request.freshness?.maxAge !== undefined ? { max_age: String(request.freshness.maxAge) } : {}),
    ...(asksRenewal(request.freshness) ? { prompt: 'login' } : {}),
  };
  try {
    if (config.serverMetadata().pushed_authorization_request_endpoint) return await oidc.buildAuthorizationUrlWithPAR(config, parameters);
    return oidc.buildAuthorizationUrl(config, parameters);
  } catch (error) {
    throw new UpstreamError('upstream_error', `the upstream refused the sign-in request: ${describe(error)}`);
  }
}

/** What a verified upstream sign-in says about the person. */
export interface UpstreamIdentity {
  issuer: string;
  subject: string;
  claims: Record<string, unknown>;
  acr?: string;
  amr: string[];
  authTime?: number;
  /** The upstream's session id (ID token `sid`), for its back-channel logout. */
  sid?: string;
}

/**
 * Completes the code flow from the callback URL: the response's state, iss and error checked, the
 * code exchanged with the PKCE verifier, the ID token validated (see the top of this file).
 */
export async function completeSignIn(config: oidc.Configuration, callbackUrl: URL, secrets: UpstreamLoginSecrets): Promise<UpstreamIdentity> {
  let tokens: Awaited<ReturnType<typeof oidc.authorizationCodeGrant>>;
  try {
    tokens = await oidc.authorizationCodeGrant(config, callbackUrl, {
      pkceCodeVerifier: secrets.codeVerifier,
      expectedState: secrets.state,
      expectedNonce: secrets.nonce,
      idTokenExpected: true,
    });
  } catch (error) {
    throw classify(error);
  }
  const claims = tokens.claims();
  if (!claims) throw new UpstreamError('invalid_id_token', 'the upstream returned no ID token');
  // The subject is the person's identity at the upstream, kept as the link (OIDC Core §2: at most 255 ASCII characters).
  if (!/^[\x21-\x7e]{1,255}$/.test(claims.sub) || containsJwt(claims.sub)) throw new UpstreamError('invalid_id_token', 'the ID token\'s sub is not 1 to 255 printable characters');
  // OIDC Core §3.1.3.7 step 10: oauth4webapi bounds exp (and nbf) with the skew, never how far iat
  // is in the future; a token "issued" later than now or after its own expiry is refused here,
  // against the same clock openid-client checked exp with (the machine's).
  const now = Math.floor(Date.now() / 1000);
  if (typeof claims.iat !== 'number' || claims.iat > now + skewSeconds || (typeof claims.exp === 'number' && claims.iat > claims.exp)) {
    throw new UpstreamError('invalid_id_token', 'the ID token\'s iat is in the future or after its exp');
  }
  // OIDC Core §3.1.3.8: at_hash, when present, is the left half of the access token's hash.
  if (claims.at_hash !== undefined && !hashMatches(tokens.access_token, String(claims.at_hash), tokens.id_token!)) {
    throw new UpstreamError('invalid_id_token', 'the ID token\'s at_hash does not match the access token');
  }
  // OIDC Core §5.4: a conforming provider returns scope claims (profile, email) from userinfo when it
  // issued an access token; its `sub` must be the ID token's (§5.3.2), which openid-client checks.
  let userinfo: Record<string, unknown> = {};
  if (config.serverMetadata().userinfo_endpoint && tokens.access_token) {
    try {
      userinfo = { ...(await oidc.fetchUserInfo(config, tokens.access_token, claims.sub)) };
    } catch (error) {
      throw new UpstreamError('invalid_response', `the upstream's userinfo could not be used: ${describe(error)}`);
    }
  }
  const amr = Array.isArray(claims.amr) ? claims.amr.filter((v): v is string => typeof v === 'string') : [];
  const sid = upstreamSessionId(claims.sid);
  return {
    issuer: claims.iss,
    subject: claims.sub,
    // What the ID token says wins over userinfo: it is the signed statement of this sign-in.
    claims: { ...userinfo, ...claims },
    ...(typeof claims.acr === 'string' ? { acr: claims.acr } : {}),
    amr,
    ...(typeof claims.auth_time === 'number' ? { authTime: claims.auth_time } : {}),
    ...(sid !== undefined ? { sid } : {}),
  };
}

function hashMatches(value: string, expected: string, idToken: string): boolean {
  const header = JSON.parse(Buffer.from(idToken.split('.')[0]!, 'base64url').toString('utf8')) as { alg?: string };
  const bits = /(\d{3})$/.exec(header.alg ?? '')?.[1];
  const hash = bits === '384' ? 'sha384' : bits === '512' ? 'sha512' : header.alg === 'EdDSA' || header.alg === 'Ed25519' ? 'sha512' : 'sha256';
  const digest = createHash(hash).update(value, 'ascii').digest();
  return digest.subarray(0, digest.length / 2).toString('base64url') === expected;
}

function classify(error: unknown): UpstreamError {
  if (error instanceof UpstreamError) return error;
  if (error instanceof oidc.AuthorizationResponseError) return new UpstreamError('upstream_error', `the upstream answered ${error.error}${error.error_description ? `: ${error.error_description}` : ''}`);
  if (error instanceof oidc.ResponseBodyError) return new UpstreamError('token_request_failed', `the upstream's token endpoint answered ${error.error}${error.error_description ? `: ${error.error_description}` : ''}`);
  const message = describe(error);
  if (/id_token|ID Token|JWT|signature|nonce/i.test(message)) return new UpstreamError('invalid_id_token', message);
  return new UpstreamError('invalid_response', message);
}

function describe(error: unknown): string {
  if (error instanceof FetchError) return error.message;
  if (error instanceof Error) {
    const cause = error.cause instanceof Error ? ` (${error.cause.message})` : '';
    return `${error.message}${cause}`.slice(0, 300);
  }
  return 'unknown error';
}
