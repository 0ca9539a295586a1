import { X509Certificate, type KeyObject } from 'node:crypto';
import { isValidLei } from '../entities/lei.ts';
import { importPublicJwk, privateMemberOf } from '../jose/index.ts';
import { isLoopbackHost } from '../jose/loopback.ts';
import { parseRfc4514 } from './authentication/distinguished-name.ts';
import { issueScopePattern } from '../pki/profiles.ts';
import { scopePattern } from '../resource-servers/definition.ts';
import { Validator, join } from '../validation.ts';
import { fapiAuthMethods } from './profile.ts';
import { redirectHosts, subjectTypes, type SubjectType } from '../identity/pairwise.ts';
import { readAnchorValue } from './trust-anchors/value.ts';

export const authMethods = [
  'client_secret_basic',
  'client_secret_post',
  'private_key_jwt',
  'tls_client_auth',
  'self_signed_tls_client_auth',
  'none',
] as const;
export type AuthMethod = (typeof authMethods)[number];

export const grantTypes = [
  'client_credentials',
  'authorization_code',
  'refresh_token',
  'urn:ietf:params:oauth:grant-type:token-exchange',
  'urn:ietf:params:oauth:grant-type:jwt-bearer',
  // OpenID CIBA Core 1.0 §4: the grant of a backchannel authentication request's tokens.
  'urn:openid:params:grant-type:ciba',
] as const;

/** The CIBA grant type (OpenID CIBA Core 1.0 §10.1). */
export const cibaGrantType = 'urn:openid:params:grant-type:ciba';
/** CIBA token delivery modes this server offers (§5): poll and ping; push is not offered. */
export const cibaDeliveryModes = ['poll', 'ping'] as const;

/**
 * Allowlisted client assertion and request object algorithms (RS256 and `none` are never
 * accepted). `Ed25519` is EdDSA's fully-specified name (RFC 9864 §2.2): the same algorithm for the
 * same key, sent by oauth4webapi and openid-client for Ed25519 keys.
 */
export const assertionAlgs = ['ES256', 'EdDSA', 'Ed25519', 'PS256'] as const;
export const clientKinds = ['service', 'agent', 'app'] as const;
/** Security profiles a client can be registered under (docs/configuration.md, "FAPI 2.0"). */
export const clientProfiles = ['fapi2'] as const;

/** RFC 8705 §2.1.2: exactly one of these names the expected certificate for tls_client_auth. */
const tlsSubjectFields = [
  'tls_client_auth_subject_dn',
  'tls_client_auth_san_dns',
  'tls_client_auth_san_uri',
  'tls_client_auth_san_ip',
  'tls_client_auth_san_email',
] as const;

/** RFC 7591 client metadata plus Clearance's fields. Never holds a secret. */
export interface ClientMetadata {
  client_id: string;
  client_name?: string;
  kind: (typeof clientKinds)[number];
  owner_lei?: string;
  token_endpoint_auth_method: AuthMethod;
  token_endpoint_auth_signing_alg?: (typeof assertionAlgs)[number];
  jwks?: { keys: Record<string, unknown>[] };
  jwks_uri?: string;
  grant_types: string[];
  response_types?: string[];
  scope?: string;
  redirect_uris?: string[];
  post_logout_redirect_uris?: string[];
  /** RFC 9126 §6: this client's authorization requests must come through PAR. */
  require_pushed_authorization_requests?: boolean;
  /** `fapi2`: the FAPI 2.0 Security Profile applies to this client (also server-wide with CLEARANCE_PROFILE=fapi2). */
  profile?: (typeof clientProfiles)[number];
  tls_client_auth_subject_dn?: string;
  tls_client_auth_san_dns?: string;
  tls_client_auth_san_uri?: string;
  tls_client_auth_san_ip?: string;
  tls_client_auth_san_email?: string;
  /**
   * tls_client_auth only: the CA this client's certificates must chain to (src/clients/trust-anchors):
   * `partner:<partner id>/<anchor name>`, a SHA-256 thumbprint of a CA certificate, the CA certificate
   * in PEM, or `clearance` (Clearance's own CA). Absent: any CA the TLS layer trusts.
   */
  tls_client_auth_trust_anchor?: string;
  /** CIBA §4: how this client gets a backchannel authentication request's tokens (required with the CIBA grant). */
  backchannel_token_delivery_mode?: (typeof cibaDeliveryModes)[number];
  /** CIBA §4: where the ping of a settled request goes (required in ping mode); https. */
  backchannel_client_notification_endpoint?: string;
  /** CIBA §4: the one algorithm the client signs its authentication requests with; when set, every request must be signed. */
  backchannel_authentication_request_signing_alg?: (typeof assertionAlgs)[number];
  /** CIBA §4: whether the client sends a user_code; this server supports none, so only false. */
  backchannel_user_code_parameter?: boolean;
  /**
   * OIDC Dynamic Client Registration §2: `pairwise` — the person's `sub` in this client's ID tokens
   * and userinfo is a pseudonym per sector (src/identity/pairwise.ts, OIDC Core §8.1); absent: `public`.
   */
  subject_type?: SubjectType;
  /**
   * OIDC Dynamic Client Registration §2, §5: an https URL of a JSON array of this client's
   * redirect_uris (fetched and checked at registration: src/clients/sector-identifier.ts); its host is
   * the client's sector. Only with `subject_type: pairwise`.
   */
  sector_identifier_uri?: string;
}

const fields = [
  'client_id',
  'client_name',
  'kind',
  'owner_lei',
  'token_endpoint_auth_method',
  'token_endpoint_auth_signing_alg',
  'jwks',
  'jwks_uri',
  'grant_types',
  'response_types',
  'scope',
  'redirect_uris',
  'post_logout_redirect_uris',
  'require_pushed_authorization_requests',
  'profile',
  ...tlsSubjectFields,
  'tls_client_auth_trust_anchor',
  'backchannel_token_delivery_mode',
  'backchannel_client_notification_endpoint',
  'backchannel_authentication_request_signing_alg',
  'backchannel_user_code_parameter',
  'subject_type',
  'sector_identifier_uri',
] as const;

/**
 * Validates client metadata from an apply document, the admin API or dynamic registration.
 * `serverProfile` is the server-wide profile (CLEARANCE_PROFILE): under `fapi2` every client is
 * held to the FAPI 2.0 rules, as if it were registered with `profile: fapi2`.
 */
export function readClientMetadata(
  v: Validator,
  path: string,
  input: unknown,
  options: { serverProfile?: string; mode?: 'development' | 'production'; /** CLEARANCE_INSTITUTIONAL: confidential clients name their firm. */ institutional?: boolean } = {},
): ClientMetadata | undefined {
  const o = v.object(path, input);
  if (!o) return undefined;
  v.knownKeys(path, o, fields);
  const before = v.problems.length;
  const at = (key: string) => join(path, key);
  const optional = <T>(key: string, read: (p: string, value: unknown) => T | undefined): T | undefined =>
    o[key] === undefined ? undefined : read(at(key), o[key]);

  const client_id = v.string(at('client_id'), o.client_id, {
    pattern: /^[A-Za-z0-9][A-Za-z0-9._:@~-]{0,127}$/,
    patternMessage: 'must be 1-128 characters of letters, digits and ._:@~-',
  });
  const method = (optional('token_endpoint_auth_method', (p, x) => v.string(p, x, { oneOf: authMethods })) ??
    'client_secret_basic') as AuthMethod; // RFC 7591 §2 default
  const metadata: Partial<ClientMetadata> = {
    client_id,
    client_name: optional('client_name', (p, x) => v.string(p, x, { maxLength: 200 })),
    kind: (optional('kind', (p, x) => v.string(p, x, { oneOf: clientKinds })) ?? 'service') as ClientMetadata['kind'],
    owner_lei: optional('owner_lei', (p, x) => {
      const lei = v.string(p, x);
      return lei && !isValidLei(lei) ? v.fail(p, 'must be a valid LEI (ISO 17442: 20 characters, check digits)') : lei;
    }),
    token_endpoint_auth_method: method,
    token_endpoint_auth_signing_alg: optional('token_endpoint_auth_signing_alg', (p, x) =>
      v.string(p, x, { oneOf: assertionAlgs }),
    ) as ClientMetadata['token_endpoint_auth_signing_alg'],
    jwks: optional('jwks', (p, x) => readJwks(v, p, x)),
    // Fetched with the partners' SSRF rules (src/clients/authentication/remote-keys.ts): https, or
    // http to a loopback host in development mode (a client's test key server).
    jwks_uri: optional('jwks_uri', (p, x) => readUri(v, p, x, { httpsOnly: true, loopbackHttp: options.mode === 'development' })),
    // RFC 7591 §2: grant_types defaults to authorization_code.
    grant_types: optional('grant_types', (p, x) =>
      v.array(p, x, (q, g) => v.string(q, g, { oneOf: grantTypes }), { nonEmpty: true, unique: true }),
    ) ?? ['authorization_code'],
    response_types: optional('response_types', (p, x) =>
      v.array(p, x, (q, r) => v.string(q, r, { oneOf: ['code'] }), { unique: true }),
    ),
    scope: optional('scope', (p, x) => readScope(v, p, x)),
    redirect_uris: optional('redirect_uris', (p, x) =>
      v.array(p, x, (q, u) => readUri(v, q, u, { redirect: true }), { unique: true }),
    ),
    post_logout_redirect_uris: optional('post_logout_redirect_uris', (p, x) =>
      v.array(p, x, (q, u) => readUri(v, q, u, { redirect: true }), { unique: true }),
    ),
    require_pushed_authorization_requests: optional('require_pushed_authorization_requests', (p, x) => v.boolean(p, x)),
    profile: optional('profile', (p, x) => v.string(p, x, { oneOf: clientProfiles })) as ClientMetadata['profile'],
    backchannel_token_delivery_mode: optional('backchannel_token_delivery_mode', (p, x) =>
      v.string(p, x, { oneOf: cibaDeliveryModes }),
    ) as ClientMetadata['backchannel_token_delivery_mode'],
    // CIBA §4: "This URL MUST use the https scheme" — http only to a loopback host in development mode.
    backchannel_client_notification_endpoint: optional('backchannel_client_notification_endpoint', (p, x) =>
      readUri(v, p, x, { httpsOnly: true, loopbackHttp: options.mode === 'development' }),
    ),
    backchannel_authentication_request_signing_alg: optional('backchannel_authentication_request_signing_alg', (p, x) =>
      v.string(p, x, { oneOf: assertionAlgs }),
    ) as ClientMetadata['backchannel_authentication_request_signing_alg'],
    backchannel_user_code_parameter: optional('backchannel_user_code_parameter', (p, x) => {
      const value = v.boolean(p, x);
      // CIBA §4: the server advertises backchannel_user_code_parameter_supported false.
      return value === true ? v.fail(p, 'must be false: this server does not support user_code (backchannel_user_code_parameter_supported is false)') : value;
    }),
    subject_type: optional('subject_type', (p, x) => v.string(p, x, { oneOf: subjectTypes })) as ClientMetadata['subject_type'],
    // Registration §2: sector_identifier_uri uses https (http to a loopback host in development mode).
    sector_identifier_uri: optional('sector_identifier_uri', (p, x) => readUri(v, p, x, { httpsOnly: true, loopbackHttp: options.mode === 'development' })),
  };
  for (const field of tlsSubjectFields) {
    metadata[field] = optional(field, (p, x) => v.string(p, x, { maxLength: 1000 }));
  }
  // Its syntax here; whether it names a declared anchor when a document is planned (src/clients/trust-anchors/plan.ts).
  metadata.tls_client_auth_trust_anchor = optional('tls_client_auth_trust_anchor', (p, x) => readAnchorValue(v, p, x));
  if (metadata.tls_client_auth_subject_dn !== undefined && !isParsableDn(metadata.tls_client_auth_subject_dn)) {
    v.fail(at('tls_client_auth_subject_dn'), 'must be a distinguished name in RFC 4514 form, e.g. CN=oms,O=Broker,C=GB');
  }
  if (v.problems.length !== before || !client_id) return undefined;
  checkCoherence(v, path, metadata as ClientMetadata);
  // The institutional profile: a confidential client acts for a firm, and says which (policy,
  // mandates and data residency hang on it; a credential nobody owns is one nobody rotates).
  if (options.institutional && metadata.token_endpoint_auth_method !== 'none' && metadata.owner_lei === undefined) {
    v.fail(at('owner_lei'), 'is required for a confidential client under the institutional profile (CLEARANCE_INSTITUTIONAL=true): the LEI of the firm it belongs to');
  }
  // Under the institutional profile a CA-issued client certificate is bound to the CA that vouches
  // for its holder: one CA of a shared bundle must not be able to speak for another's clients.
  if (options.institutional && metadata.token_endpoint_auth_method === 'tls_client_auth' && metadata.tls_client_auth_trust_anchor === undefined) {
    v.fail(at('tls_client_auth_trust_anchor'), 'is required for tls_client_auth under the institutional profile (CLEARANCE_INSTITUTIONAL=true): the CA that issues this client\'s certificates (partner:<id>/<anchor>, a thumbprint, a PEM certificate, or clearance)');
  }
  if (metadata.profile === 'fapi2' || options.serverProfile === 'fapi2') checkFapi2(v, path, metadata as ClientMetadata, metadata.profile === 'fapi2' ? 'profile fapi2' : 'CLEARANCE_PROFILE=fapi2');
  if (v.problems.length !== before) return undefined;
  return dropUndefined(metadata) as ClientMetadata;
}

/** Rules that tie fields together (RFC 7591 §2, RFC 8705 §2). */
function checkCoherence(v: Validator, path: string, m: ClientMetadata): void {
  const at = (key: string) => join(path, key);
  // RFC 7591 §2: jwks and jwks_uri MUST NOT both be present.
  if (m.jwks && m.jwks_uri) v.fail(at('jwks'), 'must not be given together with jwks_uri');
  const needsKeys = m.token_endpoint_auth_method === 'private_key_jwt' || m.token_endpoint_auth_method === 'self_signed_tls_client_auth';
  if (needsKeys && !m.jwks && !m.jwks_uri) {
    v.fail(at('jwks'), `is required for ${m.token_endpoint_auth_method} (or give jwks_uri)`);
  }
  if (m.token_endpoint_auth_signing_alg && m.token_endpoint_auth_method !== 'private_key_jwt') {
    v.fail(at('token_endpoint_auth_signing_alg'), 'applies only to private_key_jwt');
  }
  const subjects = tlsSubjectFields.filter((f) => m[f] !== undefined);
  if (m.token_endpoint_auth_method === 'tls_client_auth' && subjects.length !== 1) {
    v.fail(path, `tls_client_auth needs exactly one of ${tlsSubjectFields.join(', ')}`);
  }
  if (m.token_endpoint_auth_method !== 'tls_client_auth' && subjects.length > 0) {
    v.fail(at(subjects[0]!), 'applies only to tls_client_auth');
  }
  if (m.token_endpoint_auth_method !== 'tls_client_auth' && m.tls_client_auth_trust_anchor !== undefined) {
    v.fail(at('tls_client_auth_trust_anchor'), 'applies only to tls_client_auth (self_signed_tls_client_auth trusts the registered key, not a CA)');
  }
  if (m.grant_types.includes('authorization_code') && !m.redirect_uris?.length) {
    v.fail(at('redirect_uris'), 'at least one is required for the authorization_code grant');
  }
  // PAR requires client authentication (RFC 9126 §2), which a public client cannot do here.
  if (m.require_pushed_authorization_requests && m.token_endpoint_auth_method === 'none') {
    v.fail(at('require_pushed_authorization_requests'), 'needs client authentication at the PAR endpoint; a public client cannot use it');
  }
  if (m.token_endpoint_auth_method === 'none' && m.grant_types.includes('client_credentials')) {
    v.fail(at('grant_types'), 'client_credentials needs client authentication; a public client cannot use it');
  }
  checkCiba(v, path, m);
  checkSubjectType(v, path, m);
}

/**
 * OIDC Core §8.1: a pairwise client's sector is the host of its sector_identifier_uri, else of its
 * redirect_uris — which then MUST name one host ("If there are multiple hostnames in the registered
 * redirect_uris, the Client MUST register a sector_identifier_uri"). The document itself is fetched
 * at registration (src/clients/sector-identifier.ts, Registration §5).
 */
function checkSubjectType(v: Validator, path: string, m: ClientMetadata): void {
  const at = (key: string) => join(path, key);
  if (m.sector_identifier_uri !== undefined && m.subject_type !== 'pairwise') {
    v.fail(at('sector_identifier_uri'), 'applies only to subject_type pairwise');
    return;
  }
  if (m.subject_type !== 'pairwise' || m.sector_identifier_uri !== undefined) return;
  // The redirect_uri host is a sector only where a redirect proves it: a CIBA client is given its
  // ID token without one (poll and ping mode), so a redirect_uri on another party's host would let
  // it claim that sector and learn its pseudonyms. It names a sector_identifier_uri, whose document
  // is fetched (Registration §5). RFC 7591 §3.2.2 invalid_client_metadata at registration.
  if (m.grant_types?.includes(cibaGrantType)) {
    v.fail(at('sector_identifier_uri'), `is required for subject_type pairwise with the ${cibaGrantType} grant (no redirect proves the redirect_uri host: OIDC Core §8.1)`);
    return;
  }
  const hosts = redirectHosts(m.redirect_uris ?? []);
  if (hosts.length > 1) v.fail(at('sector_identifier_uri'), `is required for subject_type pairwise when redirect_uris name several hosts (${hosts.join(', ')}): OIDC Core §8.1`);
  else if (hosts.length === 0 || hosts[0] === '') v.fail(at('sector_identifier_uri'), 'is required for subject_type pairwise without a redirect_uri host (OIDC Core §8.1: the sector identifier)');
}

/**
 * CIBA Core §4 registration: a client registered for the CIBA grant names its delivery mode; ping
 * needs a notification endpoint; the CIBA fields mean nothing without the grant. The backchannel
 * endpoint authenticates clients (§7.1), so a public client cannot use it.
 */
function checkCiba(v: Validator, path: string, m: ClientMetadata): void {
  const at = (key: string) => join(path, key);
  const ciba = m.grant_types.includes(cibaGrantType);
  if (ciba && m.backchannel_token_delivery_mode === undefined) {
    v.fail(at('backchannel_token_delivery_mode'), `is required for the ${cibaGrantType} grant (poll or ping)`);
  }
  if (ciba && m.token_endpoint_auth_method === 'none') v.fail(at('grant_types'), 'the CIBA grant needs client authentication; a public client cannot use it');
  const cibaFields = ['backchannel_token_delivery_mode', 'backchannel_client_notification_endpoint', 'backchannel_authentication_request_signing_alg', 'backchannel_user_code_parameter'] as const;
  for (const field of cibaFields) {
    if (!ciba && m[field] !== undefined) v.fail(at(field), `applies only to clients registered for the ${cibaGrantType} grant`);
  }
  // CIBA §4: backchannel_client_notification_endpoint is REQUIRED if the mode is ping (or push).
  if (ciba && m.backchannel_token_delivery_mode === 'ping' && m.backchannel_client_notification_endpoint === undefined) {
    v.fail(at('backchannel_client_notification_endpoint'), 'is required in ping mode');
  }
  if (m.backchannel_token_delivery_mode === 'poll' && m.backchannel_client_notification_endpoint !== undefined) {
    v.fail(at('backchannel_client_notification_endpoint'), 'applies only to ping mode');
  }
  if (m.backchannel_authentication_request_signing_alg !== undefined && !m.jwks && !m.jwks_uri) {
    v.fail(at('jwks'), 'is required to verify signed authentication requests (backchannel_authentication_request_signing_alg)');
  }
}

/**
 * FAPI 2.0 Security Profile rules a registration must meet (FAPI 2.0 SP §5.3.2.1): a confidential
 * client authenticating with private_key_jwt or mutual TLS, never a shared secret; its
 * authorization requests always through PAR (§5.3.2.2).
 */
function checkFapi2(v: Validator, path: string, m: ClientMetadata, why: string): void {
  const at = (key: string) => join(path, key);
  if (!(fapiAuthMethods as readonly string[]).includes(m.token_endpoint_auth_method)) {
    v.fail(at('token_endpoint_auth_method'), `must be one of ${fapiAuthMethods.join(', ')} under ${why} (FAPI 2.0: no shared secrets, no public clients), not ${m.token_endpoint_auth_method}`);
  }
  if (m.require_pushed_authorization_requests === false && m.grant_types.includes('authorization_code')) {
    v.fail(at('require_pushed_authorization_requests'), `cannot be false under ${why}: FAPI 2.0 requires pushed authorization requests`);
  }
}

function readScope(v: Validator, path: string, value: unknown): string | undefined {
  const text = v.string(path, value, { maxLength: 2000 });
  if (!text) return undefined;
  const scopes = text.split(' ');
  for (const scope of scopes) {
    if (!scopePattern.test(scope) && !issueScopePattern.test(scope) && scope !== 'openid' && scope !== 'offline_access') {
      return v.fail(path, `"${scope}" is not a business verb scope such as order:create`);
    }
  }
  if (new Set(scopes).size !== scopes.length) return v.fail(path, 'lists a scope twice');
  return text;
}

function readUri(v: Validator, path: string, value: unknown, rules: { httpsOnly?: boolean; redirect?: boolean; loopbackHttp?: boolean }): string | undefined {
  const text = v.string(path, value, { maxLength: 2000 });
  if (!text) return undefined;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return v.fail(path, 'must be an absolute URI');
  }
  // RFC 6749 §3.1.2: a redirection endpoint MUST NOT include a fragment.
  if (text.includes('#')) return v.fail(path, 'must not contain a fragment');
  if (url.protocol === 'https:') return text;
  if (url.protocol === 'http:') {
    // RFC 8252 §7.3 and RFC 9700 §2.6: plain http only for loopback redirects of native apps.
    if ((rules.redirect || rules.loopbackHttp) && isLoopbackHost(url.hostname)) return text;
    return v.fail(path, 'must be https');
  }
  // RFC 8252 §7.1: native apps may use a private-use scheme in reverse-domain form.
  if (rules.redirect && !rules.httpsOnly && /^[a-z][a-z0-9+-]*\.[a-z0-9.+-]+:$/.test(url.protocol)) return text;
  return v.fail(path, 'must be https');
}

function readJwks(v: Validator, path: string, value: unknown): { keys: Record<string, unknown>[] } | undefined {
  const object = v.object(path, value);
  if (!object) return undefined;
  const keys = v.array(join(path, 'keys'), object.keys, (p, key) => {
    const jwk = v.object(p, key);
    if (!jwk) return undefined;
    const secret = privateMemberOf(jwk);
    if (secret) return v.fail(p, `must be a public key (has private member "${secret}")`);
    const kty = jwk.kty;
    const ok =
      (kty === 'EC' && jwk.crv === 'P-256') || (kty === 'OKP' && jwk.crv === 'Ed25519') || (kty === 'RSA' && typeof jwk.n === 'string');
    if (!ok) return v.fail(p, 'must be an EC P-256, OKP Ed25519 or RSA public key');
    if (kty === 'RSA' && Buffer.from(jwk.n as string, 'base64url').length < 256) return v.fail(p, 'RSA keys must be at least 2048 bits');
    // RFC 7517 §4.5: a kid is a string. RFC 7591 §3.2.2: a key that cannot be used is invalid
    // metadata, refused here rather than left out at every authentication (client-keys.ts).
    if (jwk.kid !== undefined && (typeof jwk.kid !== 'string' || jwk.kid === '')) return v.fail(join(p, 'kid'), 'must be a non-empty string');
    const imported = importPublicJwk(jwk);
    if ('error' in imported) return v.fail(p, `must be a valid public key: it ${imported.error}`);
    if (jwk.x5c !== undefined) {
      const problem = x5cProblem(jwk.x5c, imported.key);
      if (problem) return v.fail(join(p, 'x5c') + problem.at, problem.message);
    }
    return jwk;
  }, { nonEmpty: true });
  return keys ? { keys } : undefined;
}

/**
 * RFC 7517 §4.7: `x5c` is a chain of PKIX certificates, each standard base64 (not base64url) of its
 * DER, and the key in the first MUST match the key the JWK gives. The first certificate is one
 * self_signed_tls_client_auth accepts as it is (tls-client-auth.ts), so it must be the client's key.
 */
function x5cProblem(x5c: unknown, key: KeyObject): { at: string; message: string } | undefined {
  if (!Array.isArray(x5c) || x5c.length === 0) return { at: '', message: 'must be a non-empty array of base64 DER certificates' };
  let first: X509Certificate | undefined;
  for (const [i, text] of x5c.entries()) {
    if (typeof text !== 'string' || !/^[A-Za-z0-9+/]+={0,2}$/.test(text)) return { at: `[${i}]`, message: 'must be a certificate in standard base64 (not base64url)' };
    const der = Buffer.from(text, 'base64');
    let certificate: X509Certificate | undefined;
    try {
      certificate = new X509Certificate(der);
    } catch {}
    // X509Certificate also reads PEM: the bytes must be the certificate's DER itself.
    if (!certificate?.raw.equals(der)) return { at: `[${i}]`, message: 'is not a DER certificate' };
    first ??= certificate;
  }
  if (!first!.publicKey.equals(key)) return { at: '[0]', message: 'must hold the key the JWK gives (RFC 7517 §4.7)' };
  return undefined;
}

function dropUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}

/** True for methods where the server generates and checks a shared secret. */
export function usesSecret(method: AuthMethod): boolean {
  return method === 'client_secret_basic' || method === 'client_secret_post';
}

/** Authentication methods accepted at the token, introspection and revocation endpoints. */
export const endpointAuthMethods: readonly AuthMethod[] = authMethods.filter((m) => m !== 'none');

function isParsableDn(text: string): boolean {
  try {
    return parseRfc4514(text).length > 0;
  } catch {
    return false;
  }
}
