/**
 * An upstream SAML 2.0 IdP for the identity-brokering tests: samlify (an independent
 * implementation), reading Clearance's SP metadata, with a signing key made by Debian's openssl.
 * It never listens: the test takes the AuthnRequest from Clearance's redirect (HTTP-Redirect
 * binding), and posts the response samlify makes to Clearance's ACS (HTTP-POST binding), changing
 * what a case needs (`ResponseChanges`) before samlify signs — and encrypts — it.
 *
 * samlify is loaded without its type declarations: they pull the DOM library into the whole
 * project's types (its @xmldom/xmldom reference), which Node's own web types conflict with.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

interface SamlifyEntity {
  createLogoutRequest(sp: SamlifyEntity, binding: 'redirect', user: { logoutNameID: string; sessionIndex?: string }): { id: string; context: string };
  parseLogoutRequest(sp: SamlifyEntity, binding: 'redirect', request: { query: Record<string, string>; octetString?: string }): Promise<{ extract: { request: { id: string }; nameID?: string; sessionIndex?: { sessionIndex?: string } } }>;
  createLogoutResponse(sp: SamlifyEntity, requestInfo: unknown, binding: 'redirect', relayState?: string): { id: string; context: string };
  parseLoginRequest(sp: SamlifyEntity, binding: 'redirect', request: { query: Record<string, string> }): Promise<{ extract: { request: { id: string } } }>;
  createLoginResponse(sp: SamlifyEntity, requestInfo: unknown, binding: 'post', user: Record<string, string>, replace?: (template: string) => { id: string; context: string }): Promise<{ id: string; context: string }>;
}
interface Samlify {
  IdentityProvider(settings: Record<string, unknown>): SamlifyEntity;
  ServiceProvider(settings: Record<string, unknown>): SamlifyEntity;
  setSchemaValidator(validator: { validate: (xml: string) => Promise<unknown> }): void;
  SamlLib: { replaceTagsByValue(template: string, values: Record<string, unknown>): string };
}

const samlify = createRequire(import.meta.url)('samlify') as Samlify;
// Schema validation is the SP's to do (node-saml parses strictly); samlify's needs a native module.
samlify.setSchemaValidator({ validate: async () => 'skipped' });

export const bankEntityId = 'https://idp.bank-b.example/saml';
export const samlClass = {
  password: 'urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport',
  x509: 'urn:oasis:names:tc:SAML:2.0:ac:classes:X509',
  smartcard: 'urn:oasis:names:tc:SAML:2.0:ac:classes:SmartcardPKI',
};

/** A key pair and self-signed certificate, made by openssl. */
export function makeSigningKey(subject = '/CN=Bank B SAML signing'): { key: string; certificate: string } {
  const dir = mkdtempSync(join(tmpdir(), 'clearance-saml-'));
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-days', '2', '-subj', subject, '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
    return { key: readFileSync(join(dir, 'key.pem'), 'utf8'), certificate: readFileSync(join(dir, 'cert.pem'), 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** What a case changes in the response before it is signed: any tag of samlify's template, and the person. */
export interface ResponseChanges {
  nameId?: string;
  attributes?: Record<string, string>;
  authnContextClassRef?: string;
  /** Tags of samlify's login response template (Audience, SubjectRecipient, InResponseTo, Issuer, AssertionID, ConditionsNotOnOrAfter, …). */
  tags?: Record<string, string>;
}

export interface TestSamlIdp {
  entityId: string;
  certificate: string;
  /** The base64 SAMLResponse answering the AuthnRequest in `redirect` (Clearance's 303 to the SSO URL). */
  respond(redirect: URL, changes?: ResponseChanges, options?: { encrypt?: boolean; key?: { key: string; certificate: string }; unsigned?: boolean }): Promise<string>;
  /** The IdP's signed LogoutRequest (HTTP-Redirect) to Clearance's SLO endpoint, naming a person and their IdP session. */
  logoutRequest(nameId: string, sessionIndex?: string): URL;
  /** Reads Clearance's LogoutRequest (the redirect to the IdP's SLO URL) and answers it: the signed LogoutResponse to Clearance, and whom it named. */
  answerLogout(redirect: URL): Promise<{ response: URL; nameId: string | undefined }>;
}

export function samlIdp(spMetadata: string, signing = makeSigningKey()): TestSamlIdp {
  const sp = samlify.ServiceProvider({ metadata: spMetadata, wantLogoutRequestSigned: true, wantLogoutResponseSigned: true });
  const idpFor = (key: { key: string; certificate: string }, encrypt: boolean) =>
    samlify.IdentityProvider({
      entityID: bankEntityId,
      signingCert: key.certificate,
      privateKey: key.key,
      isAssertionEncrypted: encrypt,
      nameIDFormat: ['urn:oasis:names:tc:SAML:2.0:nameid-format:persistent'],
      singleSignOnService: [{ Binding: 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect', Location: 'https://idp.bank-b.example/sso' }],
      singleLogoutService: [{ Binding: 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect', Location: 'https://idp.bank-b.example/slo' }],
      requestSignatureAlgorithm: 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256',
    });
  return {
    entityId: bankEntityId,
    certificate: signing.certificate,
    async answerLogout(redirect) {
      const idp = idpFor(signing, false);
      const query = Object.fromEntries(redirect.searchParams);
      const parsed = await idp.parseLogoutRequest(sp, 'redirect', { query });
      const response = idp.createLogoutResponse(sp, parsed, 'redirect', query.RelayState);
      return { response: new URL(response.context), nameId: parsed.extract.nameID };
    },
    logoutRequest(nameId, sessionIndex) {
      return new URL(idpFor(signing, false).createLogoutRequest(sp, 'redirect', { logoutNameID: nameId, ...(sessionIndex ? { sessionIndex } : {}) }).context);
    },
    async respond(redirect, changes = {}, options = {}) {
      const idp = idpFor(options.key ?? signing, options.encrypt ?? false);
      const query = Object.fromEntries(redirect.searchParams);
      const { extract } = await idp.parseLoginRequest(sp, 'redirect', { query });
      const now = new Date();
      const later = new Date(now.getTime() + 5 * 60_000).toISOString();
      const attributes = Object.entries(changes.attributes ?? {})
        .map(([name, value]) => `<saml:Attribute Name="${name}" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:basic"><saml:AttributeValue xsi:type="xs:string">${value}</saml:AttributeValue></saml:Attribute>`)
        .join('');
      let id = '';
      const response = await idp.createLoginResponse(sp, { extract }, 'post', { email: changes.nameId ?? 'olga-7731' }, (template) => {
        id = `_${crypto.randomUUID()}`;
        const values: Record<string, unknown> = {
          ID: id,
          AssertionID: `_${crypto.randomUUID()}`,
          Destination: spAcs(spMetadata),
          Audience: spEntityId(spMetadata),
          SubjectRecipient: spAcs(spMetadata),
          Issuer: bankEntityId,
          IssueInstant: now.toISOString(),
          StatusCode: 'urn:oasis:names:tc:SAML:2.0:status:Success',
          ConditionsNotBefore: now.toISOString(),
          ConditionsNotOnOrAfter: later,
          SubjectConfirmationDataNotOnOrAfter: later,
          NameIDFormat: 'urn:oasis:names:tc:SAML:2.0:nameid-format:persistent',
          NameID: changes.nameId ?? 'olga-7731',
          InResponseTo: extract.request.id,
          AuthnStatement: `<saml:AuthnStatement AuthnInstant="${now.toISOString()}" SessionIndex="_session-${crypto.randomUUID()}"><saml:AuthnContext><saml:AuthnContextClassRef>${changes.authnContextClassRef ?? samlClass.password}</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>`,
          AttributeStatement: attributes ? `<saml:AttributeStatement>${attributes}</saml:AttributeStatement>` : '',
          ...changes.tags,
        };
        // The two statements are XML, which replaceTagsByValue would escape: they go in first, as they are.
        const { AuthnStatement: authn, AttributeStatement: statement, ...text } = values;
        const withStatements = template.replace('{AuthnStatement}', String(authn)).replace('{AttributeStatement}', String(statement));
        return { id, context: samlify.SamlLib.replaceTagsByValue(withStatements, text) };
      });
      if (options.unsigned) {
        // The same response, with every signature taken out.
        const xml = Buffer.from(response.context, 'base64').toString('utf8').replace(/<ds:Signature[\s\S]*?<\/ds:Signature>/g, '');
        return Buffer.from(xml, 'utf8').toString('base64');
      }
      return response.context;
    },
  };
}

function spAcs(metadata: string): string {
  return /AssertionConsumerService[^>]*Location="([^"]+)"/.exec(metadata)![1]!;
}

function spEntityId(metadata: string): string {
  return /entityID="([^"]+)"/.exec(metadata)![1]!;
}
