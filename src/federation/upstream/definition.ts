import { X509Certificate } from 'node:crypto';
import { readHttpsUrl } from '../definition.ts';
import type { Acr } from '../../identity/acr.ts';
import { defaultAcrTrust, readAcrTrust } from './acr-trust.ts';
import { deskPattern } from '../../entities/definition.ts';
import { isValidLei } from '../../entities/lei.ts';
import { Validator, join } from '../../validation.ts';

/**
 * An upstream identity provider (docs/identity-brokering.md): another firm's OpenID Provider whose
 * people sign in to Clearance through it (identity brokering). Declared in apply under
 * `identity_providers`, per legal entity: which firm its people belong to and which desks they sit
 * on are the declaration's, never the upstream's claims (the same rule as registration: nothing
 * that carries authority comes from the asserting party alone).
 */
export type IdentityProvider = OidcProvider | SamlProvider;

/** An upstream OpenID Provider (src/federation/upstream/oidc.ts). */
export interface OidcProvider extends ProviderBase {
  kind: 'oidc';
  /** The upstream's issuer identifier (OIDC Discovery §4.3: its metadata must name exactly this). */
  issuer: string;
  /** Clearance's client at the upstream. */
  client_id: string;
  /**
   * How Clearance authenticates to the upstream's token endpoint: a client secret (write-only,
   * stored sealed), or `private_key_jwt` (RFC 7523 §2.2) with an ES256 key Clearance makes for this
   * provider, sealed with the master key, its public half at <issuer>/broker/oidc/jwks.
   */
  token_endpoint_auth_method: 'client_secret_basic' | 'client_secret_post' | 'private_key_jwt';
  /** Scopes asked of the upstream; `openid` always among them. */
  scopes: string[];
}

/** An upstream SAML 2.0 identity provider (src/federation/upstream/saml.ts): ADFS, Ping, Shibboleth. */
export interface SamlProvider extends ProviderBase {
  kind: 'saml';
  /** The IdP's entityID: every assertion's Issuer must equal it. */
  issuer: string;
  /** Its SingleSignOnService for the HTTP-Redirect binding. */
  sso_url: string;
  /** The certificates (PEM) it signs responses or assertions with. */
  certificates: string[];
  /** Its SingleLogoutService (HTTP-Redirect), where Clearance answers its logout requests; absent: answered with Clearance's page. */
  slo_url?: string;
  /**
   * Which signature is required: `assertion` (the assertion, encrypted or not, signed), `response`
   * (the whole response signed), or `either` (at least one of them, covering the assertion).
   */
  require_signed: 'assertion' | 'response' | 'either';
}

interface ProviderBase {
  /** Our name for it: in the login page's form, the callback's records, events and `idp_hint`. */
  id: string;
  /** What the sign-in page calls it ("Sign in with …"). */
  name: string;
  /** The legal entity (LEI) its people belong to: a provisioned person's desks are this entity's. */
  legal_entity: string;
  /** The desks a provisioned person sits on (the legal entity's). */
  desks: string[];
  /** Email domains whose people sign in through it (home-realm discovery); lowercase. */
  domains: string[];
  /** Local person field → upstream claim, or SAML attribute name (`name`, `email`, `username`). */
  claims: { name: string; email: string; username?: string };
  /**
   * The source of assurance: which upstream `acr` values (a SAML IdP's AuthnContextClassRef) stand for which of Clearance's levels, and
   * the most this upstream is trusted to assert. A sign-in is at the level its `acr` maps to, capped
   * at `max`; an unmapped or absent `acr` is a password's level.
   */
  acr: { map: Record<string, Acr>; max: Acr };
  /** False: its people cannot sign in, and their sessions through it have ended. */
  enabled: boolean;
  /** Whether the upstream may be reached on a private or loopback address (and by http on loopback): tests and development. */
  allow_private_network: boolean;
}

/** An entry as read: the provider, and the OIDC client secret it gives (write-only: never stored in clear, never in a plan, log or event). */
export interface IdentityProviderEntry {
  provider: IdentityProvider;
  clientSecret?: string;
}

const commonFields = ['id', 'name', 'kind', 'issuer', 'legal_entity', 'desks', 'domains', 'claims', 'acr', 'enabled', 'allow_private_network'];
const oidcFields = [...commonFields, 'client_id', 'client_secret', 'token_endpoint_auth_method', 'scopes'];
const samlFields = [...commonFields, 'sso_url', 'certificates', 'require_signed', 'slo_url'];
export const providerIdPattern = /^[a-z0-9][a-z0-9_-]{0,63}$/;
const domainPattern = /^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/;
const claimNamePattern = /^[A-Za-z0-9_:./-]{1,100}$/;
const scopeTokenPattern = /^[\x21\x23-\x5B\x5D-\x7E]{1,100}$/;

/** Reads one `identity_providers[]` entry, with its defaults. The legal entity and desks are checked against the entity model by the apply section. */
export function readIdentityProvider(v: Validator, path: string, input: unknown): IdentityProviderEntry | undefined {
  const o = v.object(path, input);
  if (!o) return undefined;
  const before = v.problems.length;
  const at = (field: string) => join(path, field);
  const kind = v.string(at('kind'), o.kind ?? 'oidc', { oneOf: ['oidc', 'saml'] }) as 'oidc' | 'saml' | undefined;
  v.knownKeys(path, o, kind === 'saml' ? samlFields : oidcFields);
  const id = v.string(at('id'), o.id, { pattern: providerIdPattern, patternMessage: 'must be 1-64 lowercase letters, digits, _ and - (starting with a letter or digit)' });
  const name = v.string(at('name'), o.name, { maxLength: 200 });
  let lei = v.string(at('legal_entity'), o.legal_entity, { maxLength: 20 });
  if (lei !== undefined && !isValidLei(lei)) lei = v.fail(at('legal_entity'), 'must be a valid LEI (ISO 17442: 20 characters, check digits)');
  const desks = o.desks === undefined ? [] : v.array(at('desks'), o.desks, (p, d) => v.string(p, d, { pattern: deskPattern }), { unique: true });
  const domains =
    o.domains === undefined
      ? []
      : v.array(at('domains'), o.domains, (p, d) => v.string(p, typeof d === 'string' ? d.toLowerCase() : d, { pattern: domainPattern, patternMessage: 'must be a domain name such as fund-a.example' }), { unique: true });
  const claims = readClaims(v, at('claims'), o.claims);
  const acrRules = o.acr === undefined ? defaultAcrTrust : readAcrTrust(v, at('acr'), o.acr);
  const enabled = o.enabled === undefined ? true : v.boolean(at('enabled'), o.enabled);
  const allowPrivate = o.allow_private_network === undefined ? false : v.boolean(at('allow_private_network'), o.allow_private_network);
  if (!kind || !id || !name || !lei || !desks || !domains || !claims || !acrRules || enabled === undefined || allowPrivate === undefined) return undefined;
  const base = { id, name, legal_entity: lei, desks, domains, claims, acr: acrRules, enabled, allow_private_network: allowPrivate };
  if (kind === 'saml') {
    const saml = readSaml(v, path, o, allowPrivate);
    return saml && v.problems.length === before ? { provider: { ...base, kind, ...saml } } : undefined;
  }
  const issuer = readHttpsUrl(v, at('issuer'), o.issuer, { issuer: true });
  const clientId = v.string(at('client_id'), o.client_id, { maxLength: 500 });
  let clientSecret: string | undefined;
  if (o.client_secret !== undefined) {
    // Never quoted in a message: a secret must not end up in an error, a log or a terminal.
    if (typeof o.client_secret !== 'string' || o.client_secret.length < 16 || o.client_secret.length > 512) v.fail(at('client_secret'), 'must be a string of 16 to 512 characters');
    else clientSecret = o.client_secret;
  }
  const method = v.string(at('token_endpoint_auth_method'), o.token_endpoint_auth_method ?? 'client_secret_basic', {
    oneOf: ['client_secret_basic', 'client_secret_post', 'private_key_jwt'],
  }) as OidcProvider['token_endpoint_auth_method'] | undefined;
  if (method === 'private_key_jwt' && clientSecret !== undefined) v.fail(at('client_secret'), 'is for client_secret_basic and client_secret_post; private_key_jwt signs with a key Clearance makes');
  const scopes = o.scopes === undefined ? ['openid', 'profile', 'email'] : v.array(at('scopes'), o.scopes, (p, s) => v.string(p, s, { pattern: scopeTokenPattern }), { nonEmpty: true, unique: true });
  if (scopes && !scopes.includes('openid')) v.fail(at('scopes'), 'must include openid (the upstream signs the person in with an ID token)');
  if (issuer && new URL(issuer).protocol === 'http:' && !allowPrivate) {
    v.fail(at('issuer'), 'may be http only with allow_private_network: true (a loopback upstream, for development and tests)');
  }
  if (v.problems.length !== before || !issuer || !clientId || !method || !scopes) return undefined;
  return {
    provider: { ...base, kind, issuer, client_id: clientId, token_endpoint_auth_method: method, scopes },
    ...(clientSecret !== undefined ? { clientSecret } : {}),
  };
}

/** A SAML IdP's own fields: its entityID, SSO URL (HTTP-Redirect), signing certificates, which signature is required. */
function readSaml(v: Validator, path: string, o: Record<string, unknown>, allowPrivate: boolean): Pick<SamlProvider, 'issuer' | 'sso_url' | 'certificates' | 'require_signed' | 'slo_url'> | undefined {
  const at = (field: string) => join(path, field);
  // An entityID is a URI, often not a URL (urn:…): any absolute URI up to 1024 characters.
  const issuer = v.string(at('issuer'), o.issuer, { maxLength: 1024, pattern: /^[a-zA-Z][a-zA-Z0-9+.-]*:\S+$/, patternMessage: "must be the IdP's entityID (an absolute URI)" });
  const ssoUrl = readHttpsUrl(v, at('sso_url'), o.sso_url, { issuer: false });
  if (ssoUrl && new URL(ssoUrl).protocol === 'http:' && !allowPrivate) v.fail(at('sso_url'), 'may be http only with allow_private_network: true (a loopback IdP, for development and tests)');
  const certificates = v.array(at('certificates'), o.certificates, (p, c) => readCertificate(v, p, c), { nonEmpty: true, unique: true });
  const requireSigned = v.string(at('require_signed'), o.require_signed ?? 'either', { oneOf: ['assertion', 'response', 'either'] }) as SamlProvider['require_signed'] | undefined;
  const sloUrl = o.slo_url === undefined ? undefined : readHttpsUrl(v, at('slo_url'), o.slo_url, { issuer: false });
  if (sloUrl && new URL(sloUrl).protocol === 'http:' && !allowPrivate) v.fail(at('slo_url'), 'may be http only with allow_private_network: true');
  if (!issuer || !ssoUrl || !certificates || !requireSigned || (o.slo_url !== undefined && !sloUrl)) return undefined;
  return { issuer, sso_url: ssoUrl, certificates, require_signed: requireSigned, ...(sloUrl ? { slo_url: sloUrl } : {}) };
}

/** A PEM certificate that parses as X.509 (the IdP's signing certificate). */
function readCertificate(v: Validator, path: string, value: unknown): string | undefined {
  const text = v.string(path, value, { maxLength: 20_000 });
  if (!text) return undefined;
  try {
    const certificate = new X509Certificate(text);
    return certificate.toString();
  } catch {
    return v.fail(path, 'must be a PEM X.509 certificate (-----BEGIN CERTIFICATE-----)');
  }
}

function readClaims(v: Validator, path: string, value: unknown): IdentityProvider['claims'] | undefined {
  if (value === undefined) return { name: 'name', email: 'email' };
  const o = v.object(path, value);
  if (!o) return undefined;
  v.knownKeys(path, o, ['name', 'email', 'username']);
  const claim = (field: string, fallback: string | undefined) =>
    o[field] === undefined ? fallback : v.string(join(path, field), o[field], { pattern: claimNamePattern, patternMessage: 'must be a claim name' });
  const name = claim('name', 'name');
  const email = claim('email', 'email');
  const username = claim('username', undefined);
  if (!name || !email || (o.username !== undefined && !username)) return undefined;
  return { name, email, ...(username ? { username } : {}) };
}

