import { createHmac, webcrypto } from 'node:crypto';
import { inflateRawSync } from 'node:zlib';
import { SAML, ValidateInResponseTo, type CacheProvider, type Profile } from '@node-saml/node-saml';
import type { Context } from '../../context.ts';
import { containsJwt } from '../../audit/guard.ts';
import { open, seal } from '../../keys/sealed-box.ts';
import * as x509 from '../../pki/x509.ts';
import type { SamlProvider } from './definition.ts';
import type { UpstreamIdentity } from './oidc.ts';
import type { UpstreamLoginSecrets } from './upstream-logins.ts';
import { upstreamSessionId } from './session-id.ts';
import type { FreshnessAsked } from './freshness.ts';

/**
 * Clearance as a SAML 2.0 service provider of an upstream IdP (ADFS, Ping, Shibboleth), with
 * @node-saml/node-saml: AuthnRequests by the HTTP-Redirect binding (signed with the SP key),
 * responses by HTTP-POST to the ACS. What a response must be to sign anyone in:
 * - signed as the declaration asks (`require_signed`: the assertion, the response, or either one
 *   covering the assertion), by one of the IdP's declared certificates (SAML Core §5; node-saml);
 * - one assertion only; an encrypted one is decrypted with the SP key (SAML Core §6);
 * - its Issuer the IdP's entityID; the Response's Destination and the SubjectConfirmationData's
 *   Recipient the ACS URL (SAML Profiles §4.1.4.3, checked here: node-saml leaves them);
 * - the audience restriction naming Clearance's entityID; NotBefore / NotOnOrAfter with 30 s of
 *   skew; at most 10 minutes old;
 * - InResponseTo the id of the AuthnRequest this browser's sign-in sent (derived from its state, so
 *   no store of request ids is needed and another sign-in's response never fits);
 * - its assertion ID never seen before (the shared replay cache, so across nodes).
 */

/** Clearance's SP entityID, ACS and metadata. */
export function samlEndpoints(issuer: string): { entityId: string; acs: string; metadata: string; slo: string } {
  return { entityId: `${issuer}/broker/saml`, acs: `${issuer}/broker/saml/acs`, metadata: `${issuer}/broker/saml/metadata`, slo: `${issuer}/broker/saml/slo` };
}

const skewMs = 30_000;
const maxAssertionAgeMs = 10 * 60_000;

/** The SAML IdP's answer could not be used: why, for the audit event and the page. */
export class SamlError extends Error {
  override name = 'SamlError';
}

interface SpKey {
  privateKey: string;
  certificate: string;
}

const spKeys = new WeakMap<object, Promise<SpKey>>();

/**
 * Clearance's SP key pair: RSA-2048 (XML Encryption's key transport is RSA), a self-signed
 * certificate of ten years for the metadata (SAML trusts the key, not a CA), made at first use and
 * stored sealed with the master key; every node reads the same one.
 */
export function serviceProviderKey(ctx: Pick<Context, 'storage' | 'clock' | 'identity' | 'config'>): Promise<SpKey> {
  let key = spKeys.get(ctx.storage.db);
  if (!key) {
    key = loadOrCreate(ctx);
    key.catch(() => spKeys.delete(ctx.storage.db));
    spKeys.set(ctx.storage.db, key);
  }
  return key;
}

async function loadOrCreate(ctx: Pick<Context, 'storage' | 'clock' | 'identity' | 'config'>): Promise<SpKey> {
  const master = ctx.identity.factorKeys.master;
  const read = async () => {
    const row = await ctx.storage.db.selectFrom('saml_service_provider').selectAll().where('id', '=', 'sp').executeTakeFirst();
    return row && { privateKey: open(master, row.private_key_sealed, 'saml_service_provider:sp').toString('utf8'), certificate: row.certificate };
  };
  const existing = await read();
  if (existing) return existing;
  const algorithm = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 2048 };
  type SelfSigned = Parameters<typeof x509.X509CertificateGenerator.createSelfSigned>;
  const keys = (await webcrypto.subtle.generateKey(algorithm, true, ['sign', 'verify'])) as unknown as SelfSigned[0]['keys'];
  const now = ctx.clock.now();
  const certificate = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: '01',
      name: `CN=Clearance SAML service provider, O=${new URL(ctx.config.issuer).host}`,
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + 10 * 365 * 86_400_000),
      keys,
      signingAlgorithm: algorithm,
    },
    webcrypto as unknown as SelfSigned[1],
  );
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey as unknown as webcrypto.CryptoKey)).toString('base64');
  const privateKey = `-----BEGIN PRIVATE KEY-----\n${pkcs8.match(/.{1,64}/g)!.join('\n')}\n-----END PRIVATE KEY-----\n`;
  // Two nodes at once: the first insert wins, the other reads it.
  await ctx.storage.db
    .insertInto('saml_service_provider')
    .values({ id: 'sp', private_key_sealed: seal(master, Buffer.from(privateKey, 'utf8'), 'saml_service_provider:sp'), certificate: certificate.toString('pem'), created_at: now })
    .onConflict((oc) => oc.column('id').doNothing())
    .execute();
  return (await read())!;
}

/** The AuthnRequest id a sign-in's state stands for (an xs:ID: starts with a letter or underscore). */
export function requestIdOf(secrets: UpstreamLoginSecrets): string {
  return `_${createHmac('sha256', secrets.nonce).update('saml-request').digest('hex')}`;
}

/**
 * node-saml's request-id store for one sign-in: the only id it knows is this sign-in's, so a
 * response answers this browser's request or none (InResponseTo, SAML Profiles §4.1.4.3).
 */
function oneRequest(id: string): CacheProvider {
  // node-saml reads the value as the request's time; the sign-in's own expiry (ten minutes,
  // upstream_logins) is what bounds it, so "now" stands in.
  const sent = () => new Date().toISOString();
  return {
    saveAsync: async (key, value) => (key === id ? { value, createdAt: Date.now() } : null),
    getAsync: async (key) => (key === id ? sent() : null),
    removeAsync: async (key) => (key === id ? sent() : null),
  };
}

async function samlFor(ctx: Pick<Context, 'storage' | 'clock' | 'identity' | 'config'>, provider: SamlProvider, requestId: string, forceAuthn = false): Promise<SAML> {
  const sp = await serviceProviderKey(ctx);
  const endpoints = samlEndpoints(ctx.config.issuer);
  return new SAML({
    issuer: endpoints.entityId,
    callbackUrl: endpoints.acs,
    entryPoint: provider.sso_url,
    idpCert: provider.certificates,
    idpIssuer: provider.issuer,
    audience: endpoints.entityId,
    privateKey: sp.privateKey,
    publicCert: sp.certificate,
    decryptionPvk: sp.privateKey,
    signatureAlgorithm: 'sha256',
    wantAssertionsSigned: provider.require_signed === 'assertion',
    wantAuthnResponseSigned: provider.require_signed === 'response',
    acceptedClockSkewMs: skewMs,
    maxAssertionAgeMs,
    validateInResponseTo: ValidateInResponseTo.always,
    cacheProvider: oneRequest(requestId),
    generateUniqueId: () => requestId,
    identifierFormat: 'urn:oasis:names:tc:SAML:2.0:nameid-format:persistent',
    disableRequestedAuthnContext: true,
    forceAuthn,
    logoutCallbackUrl: endpoints.slo,
    ...(provider.slo_url ? { logoutUrl: provider.slo_url } : {}),
  });
}

/** Where the browser goes to sign in at the IdP: its SSO URL with a signed AuthnRequest (HTTP-Redirect) and the state as RelayState. */
export async function samlAuthorizeUrl(ctx: Pick<Context, 'storage' | 'clock' | 'identity' | 'config'>, provider: SamlProvider, secrets: UpstreamLoginSecrets, freshness?: FreshnessAsked): Promise<URL> {
  // A relying party asking a fresh sign-in (prompt=login, or any max_age: SAML has no age limit to
  // pass on) gets ForceAuthn (SAML Core §3.4.1: the IdP MUST authenticate the presenter directly
  // rather than rely on a previous security context): the IdP's own session must not stand in for
  // it. The AuthnInstant that comes back is checked all the same (./freshness.ts).
  const force = freshness?.login === true || freshness?.maxAge !== undefined;
  const saml = await samlFor(ctx, provider, requestIdOf(secrets), force);
  return new URL(await saml.getAuthorizeUrlAsync(secrets.state, undefined, {}));
}

/** The SP metadata (entityID, ACS, the signing and encryption certificate): what an IdP administrator imports. */
export async function serviceProviderMetadata(ctx: Pick<Context, 'storage' | 'clock' | 'identity' | 'config'>): Promise<string> {
  const sp = await serviceProviderKey(ctx);
  const endpoints = samlEndpoints(ctx.config.issuer);
  const saml = new SAML({ issuer: endpoints.entityId, callbackUrl: endpoints.acs, logoutCallbackUrl: endpoints.slo, idpCert: sp.certificate, privateKey: sp.privateKey, publicCert: sp.certificate, decryptionPvk: sp.privateKey, wantAssertionsSigned: true, identifierFormat: 'urn:oasis:names:tc:SAML:2.0:nameid-format:persistent' });
  // node-saml writes the single logout service with the HTTP-POST binding; Clearance's takes the
  // HTTP-Redirect binding (GET /broker/saml/slo, its query signature verified). The metadata is
  // not signed, so the binding is stated as it is.
  const post = `<SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="${endpoints.slo}"/>`;
  const metadata = saml.generateServiceProviderMetadata(sp.certificate, sp.certificate);
  if (!metadata.includes(post)) throw new Error('node-saml wrote its SingleLogoutService otherwise than expected');
  return metadata.replace(post, `<SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="${endpoints.slo}"/>`);
}

/** A verified SAML sign-in, as identity brokering uses it, plus the assertion id for the replay check. */
export interface SamlSignIn {
  identity: UpstreamIdentity;
  assertionId: string;
  /** When the assertion stops being valid (ms): how long its id is remembered. */
  notOnOrAfter: number;
}

/** Validates a response posted to the ACS (see the top of this file) for the sign-in `secrets` stands for. */
export async function validateSamlResponse(ctx: Pick<Context, 'storage' | 'clock' | 'identity' | 'config'>, provider: SamlProvider, secrets: UpstreamLoginSecrets, samlResponse: string): Promise<SamlSignIn> {
  const saml = await samlFor(ctx, provider, requestIdOf(secrets));
  let profile: Profile | null;
  try {
    ({ profile } = await saml.validatePostResponseAsync({ SAMLResponse: samlResponse }));
  } catch (error) {
    throw new SamlError(`the SAML response was refused: ${(error as Error).message}`.slice(0, 300));
  }
  if (!profile) throw new SamlError('the SAML response carries no sign-in');
  // The NameID is the person's identity at the IdP, kept as the link: a stable, printable one.
  if (typeof profile.nameID !== 'string' || !/^[\x21-\x7e]{1,255}$/.test(profile.nameID) || containsJwt(profile.nameID)) throw new SamlError('the assertion has no NameID of at most 255 printable characters');
  if (profile.nameIDFormat === 'urn:oasis:names:tc:SAML:2.0:nameid-format:transient') throw new SamlError('the NameID is transient: it names nobody twice, so it cannot be linked (ask the IdP for a persistent one)');
  if (profile.issuer !== provider.issuer) throw new SamlError(`the assertion's Issuer is not ${provider.issuer}`);
  const acs = samlEndpoints(ctx.config.issuer).acs;
  // The Response's own Destination (its start tag: node-saml parsed and verified the document).
  const destination = /^\s*(?:<\?xml[^>]*>\s*)?<(?:[A-Za-z_][\w.-]*:)?Response\b[^>]*?\sDestination\s*=\s*(?:"([^"]*)"|'([^']*)')/.exec(Buffer.from(samlResponse, 'base64').toString('utf8'));
  if (destination && (destination[1] ?? destination[2]) !== acs) throw new SamlError('the response\'s Destination is not this ACS');
  // The assertion as verified (decrypted when it was encrypted), as node-saml parsed it (xml2js).
  const assertion = (profile.getAssertion!() as { Assertion: XmlNode }).Assertion;
  const confirmations = children(assertion, 'Subject').flatMap((s) => children(s, 'SubjectConfirmation')).flatMap((c) => children(c, 'SubjectConfirmationData'));
  if (confirmations.length === 0 || confirmations.some((c) => c.$?.Recipient !== acs)) throw new SamlError('the assertion\'s Recipient is not this ACS');
  const assertionId = assertion.$?.ID;
  if (!assertionId) throw new SamlError('the assertion has no ID');
  const notOnOrAfter = Math.max(...confirmations.map((c) => Date.parse(c.$?.NotOnOrAfter ?? '')).filter(Number.isFinite), ctx.clock.now() + maxAssertionAgeMs);
  const authn = children(assertion, 'AuthnStatement')[0];
  const classRef = textOf(children(authn, 'AuthnContext').flatMap((c) => children(c, 'AuthnContextClassRef'))[0]);
  const attributes: Record<string, unknown> = {};
  for (const [name, value] of Object.entries((profile.attributes as Record<string, unknown> | undefined) ?? {})) attributes[name] = Array.isArray(value) ? value[0] : value;
  const authInstant = Date.parse(authn?.$?.AuthnInstant ?? '');
  const sid = upstreamSessionId(profile.sessionIndex);
  return {
    assertionId,
    notOnOrAfter,
    identity: {
      issuer: provider.issuer,
      subject: profile.nameID,
      claims: attributes,
      ...(classRef ? { acr: classRef } : {}),
      amr: [],
      ...(Number.isFinite(authInstant) ? { authTime: Math.floor(authInstant / 1000) } : {}),
      ...(sid !== undefined ? { sid } : {}),
    },
  };
}

/** An element as node-saml's xml2js parse gives it (namespace prefixes stripped): attributes in `$`, text in `_`. */
interface XmlNode {
  $?: Record<string, string>;
  _?: string;
  [child: string]: unknown;
}

function children(node: XmlNode | undefined, name: string): XmlNode[] {
  const value = node?.[name];
  return Array.isArray(value) ? (value as unknown[]).map((v) => (typeof v === 'string' ? { _: v } : (v as XmlNode))) : [];
}

function textOf(node: XmlNode | undefined): string | undefined {
  const text = node?._?.trim();
  return text ? text : undefined;
}

/** An IdP's verified logout request (SAML Profiles §4.4): whom it names, and how to answer it. */
export interface SamlLogoutRequest {
  provider: SamlProvider;
  nameId: string;
  sessionIndex?: string;
  requestId: string;
  /** Where the browser goes with Clearance's LogoutResponse (the IdP's SLO URL); undefined: Clearance's own page. */
  answer(): Promise<string | undefined>;
}

/**
 * Verifies a LogoutRequest an IdP sent by the HTTP-Redirect binding to /broker/saml/slo: the IdP is
 * the declared one its Issuer names; the query signature (required: an unsigned request would let
 * anyone sign people out) verifies with one of its certificates; then node-saml's checks
 * (destination, issuer, NotOnOrAfter). Throws SamlError.
 */
export async function verifySamlLogoutRequest(
  ctx: Pick<Context, 'storage' | 'clock' | 'identity' | 'config'>,
  providers: readonly SamlProvider[],
  query: Record<string, string>,
  rawQuery: string,
  relayState: string | undefined,
): Promise<SamlLogoutRequest> {
  if (!query.SAMLRequest) throw new SamlError('no SAMLRequest');
  if (!query.Signature || !query.SigAlg) throw new SamlError('the logout request is not signed');
  const provider = senderOf(providers, query.SAMLRequest, 'SAMLRequest');
  const saml = await samlFor(ctx, provider, '_no-request');
  let profile: Profile | null;
  try {
    ({ profile } = await saml.validateRedirectAsync(query, rawQuery));
  } catch (error) {
    throw new SamlError(`the logout request was refused: ${(error as Error).message}`.slice(0, 300));
  }
  if (!profile || typeof profile.nameID !== 'string' || typeof profile.ID !== 'string') throw new SamlError('the logout request names nobody');
  const answered = profile;
  const sessionIndex = upstreamSessionId(profile.sessionIndex);
  return {
    provider,
    nameId: profile.nameID,
    ...(sessionIndex !== undefined ? { sessionIndex } : {}),
    requestId: profile.ID,
    answer: async () => (provider.slo_url ? saml.getLogoutResponseUrlAsync(answered, relayState ?? '', {}, true) : undefined),
  };
}

/** The id of Clearance's LogoutRequest carrying this RelayState: the IdP's LogoutResponse must answer exactly it. */
function logoutRequestIdOf(relayState: string): string {
  return `_${createHmac('sha256', relayState).update('saml-logout-request').digest('hex')}`;
}

/**
 * Where the browser goes to sign out at the IdP (SP-initiated single logout, SAML Profiles §4.4):
 * its slo_url with Clearance's signed LogoutRequest (HTTP-Redirect) naming the person (the NameID
 * of their link) and their IdP session (SessionIndex); `relayState` carries where to land after.
 */
export async function samlLogoutUrl(ctx: Pick<Context, 'storage' | 'clock' | 'identity' | 'config'>, provider: SamlProvider, person: { nameId: string; sessionIndex?: string }, relayState: string): Promise<string | undefined> {
  if (!provider.slo_url) return undefined;
  const saml = await samlFor(ctx, provider, logoutRequestIdOf(relayState));
  return saml.getLogoutUrlAsync(
    { issuer: provider.issuer, nameID: person.nameId, nameIDFormat: 'urn:oasis:names:tc:SAML:2.0:nameid-format:persistent', ...(person.sessionIndex !== undefined ? { sessionIndex: person.sessionIndex } : {}) },
    relayState,
    {},
  );
}

/**
 * Verifies the IdP's LogoutResponse to Clearance's own LogoutRequest (GET /broker/saml/slo with
 * SAMLResponse): signed (required) by one of its certificates, in response to the request this
 * RelayState carried (InResponseTo), successful. Throws SamlError.
 */
export async function verifySamlLogoutResponse(ctx: Pick<Context, 'storage' | 'clock' | 'identity' | 'config'>, providers: readonly SamlProvider[], query: Record<string, string>, rawQuery: string): Promise<void> {
  if (!query.SAMLResponse || !query.RelayState) throw new SamlError('no SAMLResponse or RelayState');
  if (!query.Signature || !query.SigAlg) throw new SamlError('the logout response is not signed');
  const provider = senderOf(providers, query.SAMLResponse, 'SAMLResponse');
  const saml = await samlFor(ctx, provider, logoutRequestIdOf(query.RelayState));
  try {
    await saml.validateRedirectAsync(query, rawQuery);
  } catch (error) {
    throw new SamlError(`the logout response was refused: ${(error as Error).message}`.slice(0, 300));
  }
}

/**
 * The declared IdP a message of the HTTP-Redirect binding comes from, by the Issuer it names: which
 * certificates to verify its signature with (node-saml verifies it; nothing here is trusted yet).
 */
function senderOf(providers: readonly SamlProvider[], encoded: string, name: 'SAMLRequest' | 'SAMLResponse'): SamlProvider {
  let xml: string;
  try {
    xml = inflateRawSync(Buffer.from(encoded, 'base64'), { maxOutputLength: 256 * 1024 }).toString('utf8');
  } catch {
    throw new SamlError(`the ${name} is not a deflated SAML message`);
  }
  const issuer = /<(?:[A-Za-z_][\w.-]*:)?Issuer\b[^>]*>([^<]+)</.exec(xml)?.[1]?.trim();
  const provider = providers.find((p) => p.issuer === issuer);
  if (!provider) throw new SamlError('no SAML identity provider has this Issuer');
  return provider;
}
