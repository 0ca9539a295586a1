/**
 * Clearance's private CA over HTTP (src/endpoints/pki/index.ts): issuance under a profile from a
 * token's `pki:issue:<profile>` scope, its refusals, approval-required profiles through the
 * approvals API, revocation and the CRL, CA certificates, renewal over mTLS (the trusted proxy's
 * header) and tls_client_auth with the CA's own certificates. Certificates are checked with
 * node:crypto and with the machine's openssl, which nobody here wrote.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { X509Certificate, createHash, webcrypto } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import fc from 'fast-check';
import type { LightMyRequestResponse } from 'fastify';
import { AsnConvert } from '@peculiar/asn1-schema';
import { BasicOCSPResponse, OCSPResponse } from '@peculiar/asn1-ocsp';
import { adminAudience } from '../../src/admin/authorize.ts';
import { ocspRequest } from '../../src/guard/ocsp.ts';
import { acr } from '../../src/identity/acr.ts';
import { initCa } from '../../src/pki/authority.ts';
import { requestCertificate, type IssuedCertificate } from '../../src/pki/issuance.ts';
import * as x509 from '../../src/pki/x509.ts';
import { pkiAudience } from '../../src/resource-servers/builtins.ts';
import { codeFlowFixture, webRedirect, type CodeFlowFixture } from '../authorization/fixture.ts';
import { makePki } from '../helpers/pki.ts';
import { testDialects, type TestDialect } from '../helpers/storage.ts';
import { assertErrorShape, assertOAuthError, ordersApi, secretClient } from './fixture.ts';

const password = 'correct horse battery staple 7';
const person = (username: string, roles: string[] = []) => ({ username, password, name: username, roles });

const workloadPolicy = '1.3.6.1.4.1.55555.1.1';
const signingPolicy = '1.3.6.1.4.1.55555.2.1';

/** Profiles of the tests: a workload identity (client_auth), a code signer (not renewable), one that needs approval. */
const profiles = [
  {
    name: 'workload',
    key_types: ['EC-P256'],
    max_lifetime: '8h',
    default_lifetime: '1h',
    ekus: ['client_auth'],
    policies: [workloadPolicy],
    subject: 'CN={holder}, O=Example Broker',
    san: { uri: ['spiffe://trading.example/{holder}'], dns: ['{holder}.svc.example'] },
    name_constraints: { uri: ['spiffe://trading.example/'], dns: ['.svc.example'] },
    client_auth: true,
  },
  {
    name: 'signing',
    key_types: ['EC-P256', 'EC-P384'],
    max_lifetime: '1h',
    ekus: ['code_signing'],
    policies: [signingPolicy],
    subject: 'CN={holder}',
    san: { uri: ['urn:example:signer:{holder}'] },
    renewable: false,
  },
  {
    name: 'trader',
    key_types: ['EC-P256'],
    max_lifetime: '8h',
    ekus: ['client_auth'],
    subject: 'CN={holder}, O=Example Broker',
    approval: 'required',
  },
];

const secretService = secretClient;

interface Harness {
  f: CodeFlowFixture;
  /** PEM files of the CA: `root` (trust anchor), and a scratch directory. */
  dir: string;
  rootPem: string;
  issuingId: string;
  /** A token for the CA API (`<issuer>/pki`) for a client with these scopes. */
  token(client: string, scope: string): Promise<string>;
}

/**
 * A fixture whose trusted proxy (127.0.0.1, inject's address) passes client certificates in
 * `Client-Cert`, with the profiles, the clients and people of these tests, and — unless `init` is
 * false — an initialised CA (root exported, issuing intermediate in software custody).
 */
async function harness(t: TestContext, options: { dialect: TestDialect; init?: boolean }): Promise<Harness> {
  const f = await codeFlowFixture(t, {
    risk: 'off',
    env: { CLEARANCE_CLIENT_CERT_HEADER: 'Client-Cert', CLEARANCE_TRUSTED_PROXIES: '127.0.0.1' },
    dialect: options.dialect,
  });
  for (const username of ['alice', 'pat', 'eve']) await f.user(username);
  await f.apply({
    certificate_profiles: profiles,
    users: [person('alice', ['pki-approver']), person('pat', ['pki-approver']), person('eve')],
    clients: [
      secretService('ca-bot', 'pki:issue:workload pki:issue:signing pki:issue:trader pki:revoke'),
      secretService('ca-other', 'pki:issue:signing pki:issue:trader'),
      secretService('ca-reader', 'order:create'),
      secretService('workload-1', 'order:create', { token_endpoint_auth_method: 'tls_client_auth', tls_client_auth_san_uri: 'spiffe://trading.example/workload-1' }),
      secretService('signer-1', 'order:create', { token_endpoint_auth_method: 'tls_client_auth', tls_client_auth_san_uri: 'urn:example:signer:signer-1' }),
      {
        client_id: 'desk-app',
        kind: 'app',
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: ['authorization_code'],
        redirect_uris: [webRedirect],
        scope: 'pki:issue:trader approvals:decide',
      },
    ],
  });
  // Tokens issued in the second the people were changed would count as issued before it.
  f.clock.advance(2000);
  const dir = mkdtempSync(join(tmpdir(), 'clearance-pki-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  let rootPem = '';
  let issuingId = '';
  if (options.init !== false) {
    const made = await initCa(f.ctx.storage.db, f.ctx.pki.custodies, f.ctx.clock, {
      name: 'Example Broker Workload CA',
      organization: 'Example Broker',
      root: { custody: 'export', passphrase: 'root passphrase for the test' },
      intermediateCustody: 'software',
      keyType: 'EC-P256',
      rootLifetimeDays: 3650,
      intermediateLifetimeDays: 365,
    });
    f.ctx.pki.authorities.invalidate();
    rootPem = made.root.toString('pem');
    writeFileSync(join(dir, 'root.pem'), rootPem);
    issuingId = (await f.ctx.pki.authorities.all()).find((a) => a.role === 'issuing')!.id;
  }
  return {
    f,
    dir,
    rootPem,
    issuingId,
    token: (client, scope) => f.accessToken(client, { resource: pkiAudience(f.issuer), scope }),
  };
}

/** A PKCS#10 request made with @peculiar/x509 over WebCrypto, with the SANs it asks for. */
async function csrOf(options: { key?: 'EC-P256' | 'EC-P384' | 'RSA-2048'; sans?: { type: 'dns' | 'url' | 'email'; value: string }[] } = {}): Promise<string> {
  const algorithm =
    options.key === 'RSA-2048'
      ? { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 2048 }
      : { name: 'ECDSA', namedCurve: options.key === 'EC-P384' ? 'P-384' : 'P-256', hash: 'SHA-256' };
  const keys = (await webcrypto.subtle.generateKey(algorithm, false, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: 'CN=requested',
    keys,
    signingAlgorithm: algorithm,
    extensions: options.sans ? [new x509.SubjectAlternativeNameExtension(options.sans)] : [],
  });
  return csr.toString('pem');
}

/** A CSR made with openssl (`req -new -newkey ec`), optionally asking for a URI SAN. */
function opensslCsr(dir: string, name: string, uri?: string): string {
  const out = join(dir, `${name}.csr`);
  execFileSync(
    'openssl',
    ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', `/CN=${name}`, '-keyout', join(dir, `${name}.key`), '-out', out, ...(uri ? ['-addext', `subjectAltName=URI:${uri}`] : [])],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  return execFileSync('cat', [out]).toString();
}

const post = (f: CodeFlowFixture, url: string, options: { token?: string; body?: unknown; raw?: string; contentType?: string; cert?: string } = {}) =>
  f.inject({
    method: 'POST',
    url,
    headers: {
      ...(options.token ? { authorization: `Bearer ${options.token}` } : {}),
      'content-type': options.contentType ?? 'application/json',
      ...(options.cert ? { 'client-cert': certHeader(options.cert) } : {}),
    },
    payload: options.raw ?? JSON.stringify(options.body ?? {}),
  });

const get = (f: CodeFlowFixture, url: string, token?: string) => f.inject({ method: 'GET', url, headers: token ? { authorization: `Bearer ${token}` } : {} });

/** RFC 9440 §2.2: `:base64 DER:`, as the trusted proxy passes it. */
function certHeader(pem: string): string {
  return `:${new X509Certificate(pem).raw.toString('base64')}:`;
}

/** Certificate times are whole seconds: the lifetime is the one asked, to the second. */
function assertLifetime(certificate: X509Certificate, now: number, seconds: number): void {
  const lifetime = (certificate.validToDate.getTime() - now) / 1000;
  assert.ok(lifetime <= seconds && lifetime > seconds - 1, `lifetime ${lifetime} s, expected ${seconds}`);
}

function openssl(args: string[]): { status: number; out: string } {
  const run = spawnSync('openssl', args, { encoding: 'utf8' });
  return { status: run.status ?? -1, out: `${run.stdout}${run.stderr}` };
}

/** Issues a certificate of `profile` to the holder of `token`; fails the test unless 201. */
async function issue(h: Harness, token: string, profile: string, csr?: string, extra: Record<string, unknown> = {}): Promise<{ serial: string; certificate: string; chain: string; not_after: string; holder: string }> {
  const response = await post(h.f, '/pki/certificates', { token, body: { profile, csr: csr ?? (await csrOf()), ...extra } });
  assert.equal(response.statusCode, 201, response.body);
  return response.json();
}

/** `clearance ca issue --holder`: how an operator gives a tls_client_auth client its first certificate. */
async function issueAsOperator(h: Harness, profile: string, holder: string): Promise<IssuedCertificate> {
  const outcome = await requestCertificate(h.f.ctx, { profile, csr: await csrOf(), holder, requestedBy: 'cli:operator', requesterType: 'client' });
  assert.equal(outcome.status, 'issued');
  return outcome as IssuedCertificate;
}

async function refusals(h: Harness): Promise<string[]> {
  return (await h.f.auditEvents('pki.issuance_refused')).map((e) => String((e.details as Record<string, unknown>).reason));
}

/** A person's token from desk-app, signed in with a passkey just now, for `resource` and `scope`. */
async function personToken(f: CodeFlowFixture, username: string, resource: string, scope: string): Promise<string> {
  const signedIn = await f.signIn(username, { acr: acr.phishingResistant, amr: ['hwk', 'user', 'mfa'] });
  const { code, pkce } = await f.authorizeAndApprove({ client: 'desk-app', person: signedIn, query: { scope, resource } });
  const redeemed = await f.redeem('desk-app', code, pkce.verifier);
  assert.equal(redeemed.statusCode, 200, redeemed.body);
  return redeemed.json().access_token as string;
}

/** client_credentials at /token for a tls_client_auth client, the certificate in the proxy header. */
const mtlsToken = (f: CodeFlowFixture, client: string, certificate: string): Promise<LightMyRequestResponse> =>
  f.token({ form: { grant_type: 'client_credentials', client_id: client, resource: ordersApi, scope: 'order:create' }, headers: { 'client-cert': certHeader(certificate) } });

/** The CSR with one byte of its signature (the last byte of the DER) changed, base64 DER. */
function tamperedSignature(pem: string): string {
  const der = Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
  der[der.length - 1] = der[der.length - 1]! ^ 0x01;
  return der.toString('base64');
}

for (const dialect of testDialects()) {
  describe(`the CA API (${dialect.name})`, () => {
    test('issues a certificate for the token subject under the profile its scope names, chained to the root and carrying the profile names, usages and policies', async (t) => {
      const h = await harness(t, { dialect });
      const token = await h.token('ca-bot', 'pki:issue:workload');
      const csr = opensslCsr(h.dir, 'leaf', 'spiffe://trading.example/ca-bot');
      const response = await post(h.f, '/pki/certificates', { token, body: { profile: 'workload', csr } });
      assert.equal(response.statusCode, 201, response.body);
      assert.equal(response.headers['cache-control'], 'no-store');
      const body = response.json();
      assert.equal(body.status, 'issued');
      assert.equal(body.profile, 'workload');
      assert.equal(body.holder, 'ca-bot');

      const leaf = new X509Certificate(body.certificate);
      const [issuing] = (await h.f.ctx.pki.authorities.all()).filter((a) => a.role === 'issuing');
      const root = new X509Certificate(h.rootPem);
      assert.ok(leaf.checkIssued(issuing!.node), 'issued by the issuing CA');
      assert.ok(leaf.verify(issuing!.node.publicKey), 'signed by the issuing CA key');
      assert.ok(issuing!.node.verify(root.publicKey), 'the issuing CA is signed by the root');
      assert.equal(leaf.serialNumber.toLowerCase(), body.serial);
      assert.equal(leaf.subject, 'CN=ca-bot\nO=Example Broker');
      assert.deepEqual(leaf.subjectAltName?.split(', ').sort(), ['DNS:ca-bot.svc.example', 'URI:spiffe://trading.example/ca-bot']);
      assert.equal(leaf.ca, false);
      assert.deepEqual(leaf.keyUsage, ['1.3.6.1.5.5.7.3.2']);
      // The certified key is the CSR's.
      const csrKey = execFileSync('openssl', ['pkey', '-in', join(h.dir, 'leaf.key'), '-pubout', '-outform', 'DER']);
      assert.deepEqual(leaf.publicKey.export({ format: 'der', type: 'spki' }), csrKey);
      // Default lifetime 1 h, never past max_lifetime.
      const now = h.f.clock.now();
      assert.ok(leaf.validToDate.getTime() - now <= 8 * 3600_000);
      assertLifetime(leaf, now, 3600);
      assert.ok(Math.abs(Date.parse(body.not_after) - leaf.validToDate.getTime()) < 1000, body.not_after);

      writeFileSync(join(h.dir, 'leaf.pem'), body.certificate);
      writeFileSync(join(h.dir, 'chain.pem'), body.chain);
      const verified = openssl(['verify', '-CAfile', join(h.dir, 'root.pem'), '-untrusted', join(h.dir, 'chain.pem'), join(h.dir, 'leaf.pem')]);
      assert.equal(verified.status, 0, verified.out);
      assert.match(verified.out, /leaf\.pem: OK/);
      const text = openssl(['x509', '-in', join(h.dir, 'leaf.pem'), '-noout', '-text']).out;
      assert.match(text, /X509v3 Extended Key Usage:\s*\n\s*TLS Web Client Authentication/);
      assert.match(text, new RegExp(`Policy: ${workloadPolicy.replaceAll('.', '\\.')}`));
      assert.match(text, new RegExp(`URI:${h.f.issuer.replaceAll('.', '\\.')}/pki/crl/${h.issuingId}`));
      assert.match(text, /CA Issuers - URI:.*\/pki\/ca\//);

      const [event, ...more] = await h.f.auditEvents('pki.certificate_issued');
      assert.equal(more.length, 0);
      const details = event!.details as Record<string, unknown>;
      assert.equal(details.serial, body.serial);
      assert.equal(details.profile, 'workload');
      assert.equal(details.spki_sha256, createHash('sha256').update(csrKey).digest('base64url'));
      assert.equal(event!.subject, 'ca-bot');
      const recorded = JSON.stringify(event);
      assert.doesNotMatch(recorded, /BEGIN|PRIVATE/);
      assert.ok(!recorded.includes(leaf.raw.toString('base64').slice(0, 60)), 'no certificate in the event');
      assert.deepEqual(await refusals(h), []);
    });

    test('issues for the lifetime asked when it is within the profile maximum', async (t) => {
      const h = await harness(t, { dialect });
      const token = await h.token('ca-bot', 'pki:issue:workload');
      const issued = await issue(h, token, 'workload', undefined, { lifetime: 7200 });
      const leaf = new X509Certificate(issued.certificate);
      assertLifetime(leaf, h.f.clock.now(), 7200);
      const max = await issue(h, token, 'workload', undefined, { lifetime: 8 * 3600 });
      assertLifetime(new X509Certificate(max.certificate), h.f.clock.now(), 8 * 3600);
    });
  });

  describe(`refusals of the CA API (${dialect.name})`, () => {
    test('refuses a request without a token, with another profile scope, or with a token for another audience, and never audits them as issuance refusals', async (t) => {
      const h = await harness(t, { dialect });
      const csr = await csrOf();
      assertOAuthError(await post(h.f, '/pki/certificates', { body: { profile: 'workload', csr } }), 401, 'invalid_token');
      const signing = await h.token('ca-bot', 'pki:issue:signing');
      assertOAuthError(await post(h.f, '/pki/certificates', { token: signing, body: { profile: 'workload', csr } }), 403, 'insufficient_scope');
      const other = await h.token('ca-other', 'pki:issue:signing pki:issue:trader');
      assertOAuthError(await post(h.f, '/pki/certificates', { token: other, body: { profile: 'workload', csr } }), 403, 'insufficient_scope');
      // A profile that does not exist has no scope anybody could hold.
      assertOAuthError(await post(h.f, '/pki/certificates', { token: signing, body: { profile: 'nonexistent', csr } }), 403, 'insufficient_scope');
      const orders = await h.f.accessToken('ca-reader', { resource: ordersApi, scope: 'order:create' });
      assertOAuthError(await post(h.f, '/pki/certificates', { token: orders, body: { profile: 'workload', csr } }), 401, 'invalid_token');
      assert.deepEqual(await h.f.auditEvents('pki.certificate_issued'), []);
    });

    test('refuses a body that is not a JSON object or names no profile with 400 invalid_request, and an unreadable content type with 415', async (t) => {
      const h = await harness(t, { dialect });
      const token = await h.token('ca-bot', 'pki:issue:workload');
      const csr = await csrOf();
      for (const [what, options, status] of [
        ['no profile', { body: { csr } }, 400],
        ['an empty profile', { body: { profile: '', csr } }, 400],
        ['a profile that is no string', { body: { profile: ['workload'], csr } }, 400],
        ['a JSON array', { body: [{ profile: 'workload', csr }] }, 400],
        ['a JSON string', { body: 'workload' }, 400],
        ['JSON that does not parse', { raw: '{"profile": "workload", ' }, 400],
        ['a form body', { raw: 'profile=workload', contentType: 'application/x-www-form-urlencoded' }, 400],
        ['plain text', { raw: 'profile workload', contentType: 'text/plain' }, 415],
      ] as const) {
        assertOAuthError(await post(h.f, '/pki/certificates', { token, ...options }), status, 'invalid_request', what);
      }
      assert.deepEqual(await h.f.auditEvents('pki.certificate_issued'), []);
    });

    test('refuses a CSR whose signature does not verify, naming proof of possession, and audits the refusal', async (t) => {
      const h = await harness(t, { dialect });
      const token = await h.token('ca-bot', 'pki:issue:workload');
      const response = await post(h.f, '/pki/certificates', { token, body: { profile: 'workload', csr: tamperedSignature(await csrOf()) } });
      const error = assertOAuthError(response, 400, 'invalid_request');
      assert.match(String(error.error_description), /proof of possession/);
      const [event] = await h.f.auditEvents('pki.issuance_refused');
      assert.equal((event!.details as Record<string, unknown>).reason, 'invalid_csr');
      assert.equal((event!.details as Record<string, unknown>).profile, 'workload');
      assert.equal(event!.subject, 'ca-bot');
      assert.deepEqual(await h.f.auditEvents('pki.certificate_issued'), []);
    });

    test('refuses key types, names and lifetimes the profile does not give, each with 400 and an audited reason', async (t) => {
      const h = await harness(t, { dialect });
      const token = await h.token('ca-bot', 'pki:issue:workload');
      const good = await csrOf();
      const cases = [
        ['an RSA-2048 key', { csr: await csrOf({ key: 'RSA-2048' }) }, /takes EC-P256 keys, not RSA-2048/, 'key_type'],
        ['a P-384 key', { csr: await csrOf({ key: 'EC-P384' }) }, /not EC-P384/, 'key_type'],
        ['a DNS name the profile does not give', { csr: await csrOf({ sans: [{ type: 'dns', value: 'evil.example' }] }) }, /dns name evil\.example/, 'names'],
        ['another holder URI', { csr: await csrOf({ sans: [{ type: 'url', value: 'spiffe://trading.example/ca-other' }] }) }, /uri name spiffe:\/\/trading\.example\/ca-other/, 'names'],
        ['a lifetime above the maximum', { csr: good, lifetime: 8 * 3600 + 1 }, /at most 28800 s/, 'lifetime'],
        ['a lifetime below a minute', { csr: good, lifetime: 59 }, /at least 60/, 'lifetime'],
        ['a fractional lifetime', { csr: good, lifetime: 3600.5 }, /whole number/, 'lifetime'],
        ['a lifetime that is not a number', { csr: good, lifetime: '3600' }, /lifetime must be/, 'lifetime'],
        ['no CSR', {}, /csr is required/, 'invalid_csr'],
        ['a CSR that is no PKCS#10 request', { csr: Buffer.from('not a certificate request').toString('base64') }, /not a PKCS#10/, 'invalid_csr'],
      ] as const;
      for (const [what, body, message] of cases) {
        const error = assertOAuthError(await post(h.f, '/pki/certificates', { token, body: { profile: 'workload', ...body } }), 400, 'invalid_request', what);
        assert.match(String(error.error_description), message, what);
      }
      assert.deepEqual(await refusals(h), cases.map((c) => c[3]));
      assert.deepEqual(await h.f.auditEvents('pki.certificate_issued'), []);
    });

    test('answers 503 temporarily_unavailable, not 500, before the CA is initialised', async (t) => {
      const h = await harness(t, { dialect, init: false });
      const token = await h.token('ca-bot', 'pki:issue:workload');
      // assertOAuthError takes every 5xx for a failure; 503 is the one this endpoint means to send.
      const response = await post(h.f, '/pki/certificates', { token, body: { profile: 'workload', csr: await csrOf() } });
      assert.equal(response.statusCode, 503, response.body);
      assertErrorShape(response, 'before ca init');
      assert.equal(response.json().error, 'temporarily_unavailable');
      assert.match(String(response.json().error_description), /ca init/);
      assertOAuthError(await get(h.f, '/pki/ca/issuing-0000000000000000'), 404, 'not_found');
      assertOAuthError(await get(h.f, '/pki/crl/issuing-0000000000000000'), 404, 'not_found');
    });
  });

  describe(`approval-required profiles (${dialect.name})`, () => {
    test('a request waits (202) until a pki-approver approves; only its requester sees it; then it shows the issued certificate', async (t) => {
      const h = await harness(t, { dialect });
      const token = await h.token('ca-bot', 'pki:issue:trader');
      const asked = await post(h.f, '/pki/certificates', { token, body: { profile: 'trader', csr: await csrOf() } });
      assert.equal(asked.statusCode, 202, asked.body);
      assert.equal(asked.headers['cache-control'], 'no-store');
      const { status, request_id: requestId, approval_request: approvalId } = asked.json();
      assert.equal(status, 'pending_approval');
      assert.ok(requestId && approvalId);
      assert.deepEqual(await h.f.auditEvents('pki.certificate_issued'), []);

      const pending = await get(h.f, `/pki/requests/${requestId}`, token);
      assert.equal(pending.statusCode, 200, pending.body);
      assert.equal(pending.json().status, 'pending');
      assert.equal(pending.json().certificate, undefined);
      const other = await h.token('ca-other', 'pki:issue:trader');
      assertOAuthError(await get(h.f, `/pki/requests/${requestId}`, other), 404, 'not_found');
      assertOAuthError(await get(h.f, `/pki/requests/00000000-0000-4000-8000-000000000000`, token), 404, 'not_found');
      assertOAuthError(await get(h.f, `/pki/requests/${requestId}`), 401, 'invalid_token');

      const eve = await personToken(h.f, 'eve', adminAudience(h.f.issuer), 'approvals:decide');
      assertOAuthError(await post(h.f, `/admin/approvals/${approvalId}/decision`, { token: eve, body: { decision: 'approve' } }), 403, 'access_denied');
      const [refused] = await h.f.auditEvents('approval.refused');
      assert.match(String((refused!.decision as { reasons: string[] }).reasons[0]), /not a holder of pki-approver/);
      assert.equal((await get(h.f, `/pki/requests/${requestId}`, token)).json().status, 'pending');

      const pat = await personToken(h.f, 'pat', adminAudience(h.f.issuer), 'approvals:decide');
      const approved = await post(h.f, `/admin/approvals/${approvalId}/decision`, { token: pat, body: { decision: 'approve' } });
      assert.equal(approved.statusCode, 200, approved.body);
      assert.equal(approved.json().settled, 'approved');

      const issued = await get(h.f, `/pki/requests/${requestId}`, token);
      assert.equal(issued.statusCode, 200, issued.body);
      const view = issued.json();
      assert.equal(view.status, 'issued');
      assert.equal(view.holder, 'ca-bot');
      const leaf = new X509Certificate(view.certificate);
      const [issuing] = (await h.f.ctx.pki.authorities.all()).filter((a) => a.role === 'issuing');
      assert.ok(leaf.verify(issuing!.node.publicKey));
      assert.equal(leaf.serialNumber.toLowerCase(), view.serial);
      assert.equal(leaf.subject, 'CN=ca-bot\nO=Example Broker');
      const [event] = await h.f.auditEvents('pki.certificate_issued');
      assert.equal((event!.details as Record<string, unknown>).approval_request, approvalId);
      assert.equal((event!.details as Record<string, unknown>).serial, view.serial);
    });

    test('the person a certificate is for cannot approve it, even holding pki-approver; a denial leaves it denied with no certificate', async (t) => {
      const h = await harness(t, { dialect });
      const aliceId = await h.f.user('alice');
      const asking = await personToken(h.f, 'alice', pkiAudience(h.f.issuer), 'pki:issue:trader');
      const asked = await post(h.f, '/pki/certificates', { token: asking, body: { profile: 'trader', csr: await csrOf() } });
      assert.equal(asked.statusCode, 202, asked.body);
      const { request_id: requestId, approval_request: approvalId } = asked.json();
      assert.equal((await get(h.f, `/pki/requests/${requestId}`, asking)).json().holder, aliceId);

      const alice = await personToken(h.f, 'alice', adminAudience(h.f.issuer), 'approvals:decide');
      assertOAuthError(await post(h.f, `/admin/approvals/${approvalId}/decision`, { token: alice, body: { decision: 'approve' } }), 403, 'access_denied');
      const [refused] = await h.f.auditEvents('approval.refused');
      assert.deepEqual((refused!.decision as { reasons: string[] }).reasons, ['approver_is_subject']);

      const pat = await personToken(h.f, 'pat', adminAudience(h.f.issuer), 'approvals:decide');
      const denied = await post(h.f, `/admin/approvals/${approvalId}/decision`, { token: pat, body: { decision: 'deny', reason: 'not on the trading desk' } });
      assert.equal(denied.statusCode, 200, denied.body);
      assert.equal(denied.json().settled, 'denied');
      const view = (await get(h.f, `/pki/requests/${requestId}`, asking)).json();
      assert.equal(view.status, 'denied');
      assert.equal(view.certificate, undefined);
      assert.equal(view.serial, undefined);
      assert.deepEqual(await h.f.auditEvents('pki.certificate_issued'), []);
      assert.equal((await h.f.ctx.storage.db.selectFrom('pki_certificates').select('serial').execute()).length, 0);
    });
  });

  describe(`revocation and the CRL (${dialect.name})`, () => {
    test('pki:revoke revokes once (200, then 409); the CRL lists the serial and openssl refuses the certificate as revoked', async (t) => {
      const h = await harness(t, { dialect });
      const issueToken = await h.token('ca-bot', 'pki:issue:workload');
      const revoked = await issue(h, issueToken, 'workload');
      const kept = await issue(h, issueToken, 'workload');
      const token = await h.token('ca-bot', 'pki:revoke');

      assertOAuthError(await post(h.f, `/pki/certificates/${revoked.serial}/revoke`, { token: issueToken, body: { reason: 'keyCompromise' } }), 403, 'insufficient_scope');
      assertOAuthError(await post(h.f, `/pki/certificates/${revoked.serial}/revoke`, { body: { reason: 'keyCompromise' } }), 401, 'invalid_token');
      assertOAuthError(await post(h.f, `/pki/certificates/${revoked.serial}/revoke`, { token, body: { reason: 'because' } }), 400, 'invalid_request');
      assertOAuthError(await post(h.f, `/pki/certificates/${revoked.serial}/revoke`, { token, body: {} }), 400, 'invalid_request');
      assertOAuthError(await post(h.f, '/pki/certificates/4000000000000000000000000000abcd/revoke', { token, body: { reason: 'keyCompromise' } }), 404, 'not_found');
      assertOAuthError(await post(h.f, '/pki/certificates/not-a-serial/revoke', { token, body: { reason: 'keyCompromise' } }), 404, 'not_found');

      const first = await post(h.f, `/pki/certificates/${revoked.serial.toUpperCase()}/revoke`, { token, body: { reason: 'keyCompromise' } });
      assert.equal(first.statusCode, 200, first.body);
      assert.equal(first.headers['cache-control'], 'no-store');
      assert.deepEqual([first.json().serial, first.json().status, first.json().reason], [revoked.serial, 'revoked', 'keyCompromise']);
      assertOAuthError(await post(h.f, `/pki/certificates/${revoked.serial}/revoke`, { token, body: { reason: 'superseded' } }), 409, 'invalid_request');
      const events = await h.f.auditEvents('pki.certificate_revoked');
      assert.equal(events.length, 1);
      assert.deepEqual([(events[0]!.details as Record<string, unknown>).serial, (events[0]!.details as Record<string, unknown>).reason_code], [revoked.serial, 1]);

      const crl = await get(h.f, `/pki/crl/${h.issuingId}`);
      assert.equal(crl.statusCode, 200);
      assert.equal(crl.headers['content-type'], 'application/pkix-crl');
      writeFileSync(join(h.dir, 'crl.der'), crl.rawPayload);
      const text = openssl(['crl', '-inform', 'DER', '-in', join(h.dir, 'crl.der'), '-noout', '-text']);
      assert.equal(text.status, 0, text.out);
      assert.match(text.out, new RegExp(`Serial Number: ${revoked.serial.toUpperCase()}`));
      assert.match(text.out, /Key Compromise/);
      assert.ok(!text.out.includes(kept.serial.toUpperCase()), 'only the revoked certificate is listed');
      assert.match(text.out, /X509v3 CRL Number:\s*\n\s*\d+/);

      execFileSync('openssl', ['crl', '-inform', 'DER', '-in', join(h.dir, 'crl.der'), '-out', join(h.dir, 'crl.pem')]);
      const verify = (serial: string, pem: string, chain: string) => {
        writeFileSync(join(h.dir, `${serial}.pem`), pem);
        writeFileSync(join(h.dir, `${serial}-chain.pem`), chain);
        // At the fixture's clock: the CRL's thisUpdate is the clock's now, a little ahead of the machine's.
        return openssl(['verify', '-attime', String(Math.floor(h.f.clock.now() / 1000) + 1), '-crl_check', '-CAfile', join(h.dir, 'root.pem'), '-untrusted', join(h.dir, `${serial}-chain.pem`), '-CRLfile', join(h.dir, 'crl.pem'), join(h.dir, `${serial}.pem`)]);
      };
      const refused = verify(revoked.serial, revoked.certificate, revoked.chain);
      assert.notEqual(refused.status, 0, refused.out);
      assert.match(refused.out, /certificate revoked/);
      const accepted = verify(kept.serial, kept.certificate, kept.chain);
      assert.equal(accepted.status, 0, accepted.out);
    });

    test('serves the CA certificates as DER at their AIA address, and 404 for an unknown authority', async (t) => {
      const h = await harness(t, { dialect });
      for (const authority of await h.f.ctx.pki.authorities.all()) {
        const response = await get(h.f, `/pki/ca/${authority.id}`);
        assert.equal(response.statusCode, 200, authority.id);
        assert.equal(response.headers['content-type'], 'application/pkix-cert');
        assert.deepEqual(response.rawPayload, authority.node.raw);
      }
      assert.deepEqual((await get(h.f, `/pki/ca/${h.issuingId}`)).rawPayload, new X509Certificate((await h.f.ctx.pki.authorities.byId(h.issuingId))!.pem).raw);
      assertOAuthError(await get(h.f, '/pki/ca/issuing-0000000000000000'), 404, 'not_found');
      assertOAuthError(await get(h.f, '/pki/crl/issuing-0000000000000000'), 404, 'not_found');
      const rootId = (await h.f.ctx.pki.authorities.all()).find((a) => a.role === 'root')!.id;
      assertOAuthError(await get(h.f, `/pki/crl/${rootId}`), 404, 'not_found');
    });
  });

  describe(`renewal over mutual TLS (${dialect.name})`, () => {
    test('the current certificate in the trusted proxy header renews: a new serial for the same holder and profile, audited with what it renews', async (t) => {
      const h = await harness(t, { dialect });
      const current = await issue(h, await h.token('ca-bot', 'pki:issue:workload'), 'workload');
      h.f.clock.advance(60_000);
      const renewed = await post(h.f, '/pki/certificates/renew', { cert: current.certificate, body: { csr: await csrOf(), lifetime: 1800 } });
      assert.equal(renewed.statusCode, 201, renewed.body);
      const body = renewed.json();
      assert.notEqual(body.serial, current.serial);
      assert.equal(body.holder, 'ca-bot');
      assert.equal(body.profile, 'workload');
      const leaf = new X509Certificate(body.certificate);
      assert.equal(leaf.subject, new X509Certificate(current.certificate).subject);
      assert.equal(leaf.subjectAltName, new X509Certificate(current.certificate).subjectAltName);
      assertLifetime(leaf, h.f.clock.now(), 1800);
      const [event] = await h.f.auditEvents('pki.certificate_renewed');
      assert.equal((event!.details as Record<string, unknown>).renewed_from, current.serial);
      assert.equal((event!.details as Record<string, unknown>).serial, body.serial);
      assert.equal(event!.subject, 'ca-bot');
    });

    test('refuses renewal without a certificate (401), with a revoked one, another CA one or one of a profile that is not renewable (400)', async (t) => {
      const h = await harness(t, { dialect });
      const csr = await csrOf();
      assertOAuthError(await post(h.f, '/pki/certificates/renew', { body: { csr } }), 401, 'invalid_request');
      const current = await issue(h, await h.token('ca-bot', 'pki:issue:workload'), 'workload');
      // A header from an address that is not the trusted proxy is ignored.
      const forged = await h.f.inject({ method: 'POST', url: '/pki/certificates/renew', remoteAddress: '10.1.2.3', headers: { 'content-type': 'application/json', 'client-cert': certHeader(current.certificate) }, payload: JSON.stringify({ csr }) });
      assertOAuthError(forged, 401, 'invalid_request');

      const foreign = makePki(t).issueClient('foreign', '/CN=ca-bot');
      assert.match(String(assertOAuthError(await post(h.f, '/pki/certificates/renew', { cert: foreign.cert, body: { csr } }), 400, 'invalid_request').error_description), /not issued by this CA/);
      const signer = await issue(h, await h.token('ca-bot', 'pki:issue:signing'), 'signing');
      assert.match(String(assertOAuthError(await post(h.f, '/pki/certificates/renew', { cert: signer.certificate, body: { csr } }), 400, 'invalid_request').error_description), /not renewed/);
      assertOAuthError(await post(h.f, '/pki/certificates/renew', { cert: current.certificate, body: { csr, lifetime: 9 * 3600 } }), 400, 'invalid_request');
      assertOAuthError(await post(h.f, '/pki/certificates/renew', { cert: current.certificate, body: { csr: tamperedSignature(csr) } }), 400, 'invalid_request');

      const revoke = await post(h.f, `/pki/certificates/${current.serial}/revoke`, { token: await h.token('ca-bot', 'pki:revoke'), body: { reason: 'superseded' } });
      assert.equal(revoke.statusCode, 200, revoke.body);
      assert.match(String(assertOAuthError(await post(h.f, '/pki/certificates/renew', { cert: current.certificate, body: { csr } }), 400, 'invalid_request').error_description), /revoked/);
      assert.deepEqual(await h.f.auditEvents('pki.certificate_renewed'), []);
      // Each refusal about one of the CA's certificates is audited as an issuance's is, naming what it would renew
      // (a foreign certificate names nobody of ours, and is answered only).
      const refused = (await h.f.auditEvents('pki.issuance_refused')).map((e) => e.details as Record<string, unknown>);
      assert.deepEqual(refused.map((d) => [d.reason, d.renewal_of]), [
        ['not_renewable', signer.serial],
        ['lifetime', current.serial],
        ['invalid_csr', current.serial],
        ['not_renewable', current.serial],
      ]);
    });
  });

  describe(`tls_client_auth with the CA's certificates (${dialect.name})`, () => {
    test('a client_auth profile certificate authenticates its client at /token until it is revoked, then at once invalid_client', async (t) => {
      const h = await harness(t, { dialect });
      const issued = await issueAsOperator(h, 'workload', 'workload-1');
      const granted = await mtlsToken(h.f, 'workload-1', issued.certificatePem);
      assert.equal(granted.statusCode, 200, granted.body);
      assert.ok(granted.json().access_token);

      const revoke = await post(h.f, `/pki/certificates/${issued.serial}/revoke`, { token: await h.token('ca-bot', 'pki:revoke'), body: { reason: 'keyCompromise' } });
      assert.equal(revoke.statusCode, 200, revoke.body);
      assertOAuthError(await mtlsToken(h.f, 'workload-1', issued.certificatePem), 401, 'invalid_client');
    });

    test('a certificate of a profile without client_auth does not authenticate a client, though its name matches', async (t) => {
      const h = await harness(t, { dialect });
      const signer = await issueAsOperator(h, 'signing', 'signer-1');
      assert.equal(new X509Certificate(signer.certificatePem).subjectAltName, 'URI:urn:example:signer:signer-1');
      assertOAuthError(await mtlsToken(h.f, 'signer-1', signer.certificatePem), 401, 'invalid_client');
    });

    test('a certificate issued to one workload does not authenticate another client, though that client registered its name (RFC 8705 §2.1)', async (t) => {
      const h = await harness(t, { dialect });
      await h.f.apply({ clients: [secretService('workload-2', 'order:create', { token_endpoint_auth_method: 'tls_client_auth', tls_client_auth_san_uri: 'spiffe://trading.example/ca-bot' })] });
      const issued = await issue(h, await h.token('ca-bot', 'pki:issue:workload'), 'workload');
      assert.equal(issued.holder, 'ca-bot');
      const refused = assertOAuthError(await mtlsToken(h.f, 'workload-2', issued.certificate), 401, 'invalid_client');
      assert.equal(refused.access_token, undefined);
    });

    test('a device certificate named after a client does not authenticate that client: an enrolling service names devices, not clients', async (t) => {
      const h = await harness(t, { dialect });
      await h.f.apply({ certificate_profiles: [...profiles, { ...profiles[0]!, name: 'desk-device', kind: 'device' }] });
      const device = await issueAsOperator(h, 'desk-device', 'workload-1');
      assert.match(String(new X509Certificate(device.certificatePem).subjectAltName), /URI:spiffe:\/\/trading\.example\/workload-1/);
      assertOAuthError(await mtlsToken(h.f, 'workload-1', device.certificatePem), 401, 'invalid_client');
    });
  });

  describe(`who a workload certificate is for (${dialect.name})`, () => {
    test('refuses a delegated (exchanged) token carrying act with 400 and an audited refusal', async (t) => {
      const h = await harness(t, { dialect });
      const exchange = 'urn:ietf:params:oauth:grant-type:token-exchange';
      await h.f.apply({ clients: [secretService('ca-exchanger', 'pki:issue:workload', { grant_types: ['client_credentials', exchange] })] });
      const own = await h.token('ca-exchanger', 'pki:issue:workload');
      const exchanged = await h.f.token({
        auth: h.f.basic('ca-exchanger'),
        form: { grant_type: exchange, subject_token: own, subject_token_type: 'urn:ietf:params:oauth:token-type:access_token', resource: pkiAudience(h.f.issuer), scope: 'pki:issue:workload' },
      });
      assert.equal(exchanged.statusCode, 200, exchanged.body);
      const token = exchanged.json().access_token as string;

      const refused = assertOAuthError(await post(h.f, '/pki/certificates', { token, body: { profile: 'workload', csr: await csrOf() } }), 400, 'invalid_request');
      assert.match(String(refused.error_description), /act/);
      assert.deepEqual(await refusals(h), ['holder']);
      assert.deepEqual(await h.f.auditEvents('pki.certificate_issued'), []);
      // The client's own token still gets its own certificate.
      assert.equal((await issue(h, own, 'workload')).holder, 'ca-exchanger');
    });
  });

  describe(`POST /pki/certificates under random input (${dialect.name})`, () => {
    test('random JSON bodies, CSR strings and mutated CSRs with a valid token never yield a 5xx', async (t) => {
      const h = await harness(t, { dialect });
      const token = await h.token('ca-bot', 'pki:issue:workload pki:issue:signing');
      const good = await csrOf();
      const der = Buffer.from(good.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
      const mutated = fc.tuple(fc.nat({ max: der.length - 1 }), fc.integer({ min: 1, max: 255 }), fc.boolean()).map(([at, xor, pem]) => {
        const copy = Buffer.from(der);
        copy[at] = copy[at]! ^ xor;
        const b64 = copy.toString('base64');
        return pem ? `-----BEGIN CERTIFICATE REQUEST-----\n${b64}\n-----END CERTIFICATE REQUEST-----` : b64;
      });
      const csr = fc.oneof(fc.string({ maxLength: 200 }), fc.base64String({ maxLength: 400 }), fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b).toString('base64')), mutated, fc.constant(good), fc.jsonValue());
      const lifetime = fc.oneof(fc.integer(), fc.double(), fc.string({ maxLength: 10 }), fc.constant(null), fc.jsonValue());
      const body = fc.oneof(
        fc.jsonValue(),
        // Near a good request: a real CSR, a profile the token names, any or no lifetime.
        fc.record({ profile: fc.constantFrom('workload', 'signing'), csr: fc.oneof(fc.constant(good), mutated), lifetime: fc.option(fc.oneof(fc.integer({ min: -10, max: 30_000 }), lifetime), { nil: undefined }) }),
        fc.record({ profile: fc.oneof(fc.constantFrom('workload', 'signing', 'trader', '', '__proto__', 'constructor'), fc.string({ maxLength: 30 })), csr, lifetime }, { requiredKeys: [] }),
      );
      const seen = new Set<number>();
      await fc.assert(
        fc.asyncProperty(body, async (payload) => {
          const response = await post(h.f, '/pki/certificates', { token, raw: JSON.stringify(payload) ?? 'null' });
          seen.add(response.statusCode);
          const label = JSON.stringify(payload)?.slice(0, 300) ?? 'undefined';
          assert.ok(response.statusCode < 500, `never a 5xx: ${label} → ${response.statusCode} ${response.body.slice(0, 300)}`);
          if (response.statusCode >= 400) assertErrorShape(response, label);
          else assert.ok([201, 202].includes(response.statusCode), `${label} → ${response.statusCode}`);
        }),
        { numRuns: 150, seed: 20261124 },
      );
      // The inputs reach both issuance and its refusals, not only the body check.
      assert.ok(seen.has(201) && seen.has(400), `statuses seen: ${[...seen].join(', ')}`);
    });
  });
}

describe('the CA API and weak keys', () => {
  test('refuses an RSA key whose public exponent is small or even, though of an allowed size, with 400 and an audited reason, and issues for 65537', async (t) => {
    const h = await harness(t, { dialect: testDialects()[0]! });
    await h.f.apply({
      certificate_profiles: [{ name: 'rsa-workload', key_types: ['RSA-2048'], max_lifetime: '1h', ekus: ['client_auth'], subject: 'CN={holder}', san: { uri: ['spiffe://trading.example/{holder}'] } }],
      clients: [secretService('rsa-bot', 'pki:issue:rsa-workload')],
    });
    const token = await h.token('rsa-bot', 'pki:issue:rsa-workload');
    // openssl, not this code base, makes the keys: RSA-2048 with e = 3, then with the usual 65537.
    const rsaCsr = (name: string, exponent: number) => {
      const key = join(h.dir, `${name}.key`);
      assert.equal(openssl(['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-pkeyopt', `rsa_keygen_pubexp:${exponent}`, '-out', key]).status, 0);
      const made = openssl(['req', '-new', '-key', key, '-subj', `/CN=${name}`, '-out', join(h.dir, `${name}.csr`)]);
      assert.equal(made.status, 0, made.out);
      return execFileSync('cat', [join(h.dir, `${name}.csr`)]).toString();
    };
    const error = assertOAuthError(await post(h.f, '/pki/certificates', { token, body: { profile: 'rsa-workload', csr: rsaCsr('e3', 3) } }), 400, 'invalid_request');
    assert.match(String(error.error_description), /public exponent 3/);
    assert.deepEqual(await refusals(h), ['invalid_csr']);
    assert.deepEqual(await h.f.auditEvents('pki.certificate_issued'), []);
    const issued = await issue(h, token, 'rsa-workload', rsaCsr('e65537', 65537));
    assert.equal(new X509Certificate(issued.certificate).publicKey.asymmetricKeyDetails?.publicExponent, 65537n);
  });
});

describe('renewal under a profile that requires approval', () => {
  test('a certificate issued without approval is not renewed once its profile requires one; an approved one renews, and its renewals name that approval', async (t) => {
    const h = await harness(t, { dialect: testDialects()[0]! });
    const unapproved = await issue(h, await h.token('ca-bot', 'pki:issue:workload'), 'workload');
    const token = await h.token('ca-bot', 'pki:issue:trader');
    const asked = await post(h.f, '/pki/certificates', { token, body: { profile: 'trader', csr: await csrOf() } });
    assert.equal(asked.statusCode, 202, asked.body);
    const { request_id: requestId, approval_request: approvalId } = asked.json();
    const pat = await personToken(h.f, 'pat', adminAudience(h.f.issuer), 'approvals:decide');
    assert.equal((await post(h.f, `/admin/approvals/${approvalId}/decision`, { token: pat, body: { decision: 'approve' } })).statusCode, 200);
    const approved = (await get(h.f, `/pki/requests/${requestId}`, token)).json() as { certificate: string };

    // Four eyes become the workload profile's rule: what was issued before without them is not carried on.
    await h.f.apply({ certificate_profiles: profiles.map((p) => (p.name === 'workload' ? { ...p, approval: 'required' } : p)) });
    h.f.clock.advance(60_000);
    const refused = assertOAuthError(await post(h.f, '/pki/certificates/renew', { cert: unapproved.certificate, body: { csr: await csrOf() } }), 400, 'invalid_request');
    assert.match(String(refused.error_description), /approv/);
    assert.deepEqual(await refusals(h), ['approval_required']);

    const renewed = await post(h.f, '/pki/certificates/renew', { cert: approved.certificate, body: { csr: await csrOf() } });
    assert.equal(renewed.statusCode, 201, renewed.body);
    const again = await post(h.f, '/pki/certificates/renew', { cert: renewed.json().certificate, body: { csr: await csrOf() } });
    assert.equal(again.statusCode, 201, again.body);
    const events = await h.f.auditEvents('pki.certificate_renewed');
    assert.deepEqual(events.map((e) => (e.details as Record<string, unknown>).approval_request), [approvalId, approvalId]);
  });
});

describe('URI name constraints of a profile', () => {
  test('refuses an issuance for a sibling host under a constraint naming the host without a slash (spiffe://broker.example.evil/… under spiffe://broker.example), and issues for the host itself', async (t) => {
    const h = await harness(t, { dialect: testDialects()[0]! });
    const constrained = (name: string, template: string) => ({ name, key_types: ['EC-P256'], max_lifetime: '1h', ekus: ['client_auth'], subject: 'CN={holder}', san: { uri: [template] }, name_constraints: { uri: ['spiffe://broker.example'] } });
    await h.f.apply({
      certificate_profiles: [...profiles, constrained('sibling-host', 'spiffe://broker.example.evil/{holder}'), constrained('same-host', 'spiffe://broker.example/{holder}')],
      clients: [secretService('x', 'pki:issue:sibling-host pki:issue:same-host')],
    });
    const token = await h.token('x', 'pki:issue:sibling-host pki:issue:same-host');
    const refused = assertOAuthError(await post(h.f, '/pki/certificates', { token, body: { profile: 'sibling-host', csr: await csrOf() } }), 400, 'invalid_request');
    assert.match(String(refused.error_description), /spiffe:\/\/broker\.example\.evil\/x is outside profile sibling-host's name constraints/);
    assert.deepEqual(await refusals(h), ['names']);
    const issued = await issue(h, token, 'same-host');
    assert.equal(new X509Certificate(issued.certificate).subjectAltName, 'URI:spiffe://broker.example/x');
  });
});

describe('OCSP over GET and HTTP caches (RFC 5019 §6.2)', () => {
  test('a GET answer carries Cache-Control, Last-Modified at its thisUpdate, Expires at its nextUpdate and an ETag of the answer; a POST answer and a malformed request are not cached', async (t) => {
    const h = await harness(t, { dialect: testDialects()[0]! });
    const issued = await issue(h, await h.token('ca-bot', 'pki:issue:workload'), 'workload');
    const issuing = (await h.f.ctx.pki.authorities.byId(h.issuingId))!;
    const request = ocspRequest(new X509Certificate(issued.certificate), issuing.node);
    const response = await get(h.f, `/pki/ocsp/${encodeURIComponent(request.toString('base64'))}`);
    assert.equal(response.statusCode, 200);
    assert.equal(response.headers['content-type'], 'application/ocsp-response');

    const basic = AsnConvert.parse(AsnConvert.parse(response.rawPayload, OCSPResponse).responseBytes!.response.buffer, BasicOCSPResponse);
    const [single] = basic.tbsResponseData.responses;
    const thisUpdate = single!.thisUpdate.getTime();
    const nextUpdate = single!.nextUpdate!.getTime();
    const maxAge = Number(/^max-age=(\d+), public, no-transform, must-revalidate$/.exec(String(response.headers['cache-control']))?.[1]);
    assert.ok(maxAge > 0 && maxAge * 1000 < nextUpdate - thisUpdate, `cache-control ${response.headers['cache-control']}: cached past thisUpdate, never to nextUpdate`);
    assert.equal(response.headers['last-modified'], new Date(thisUpdate).toUTCString());
    assert.equal(response.headers.expires, new Date(nextUpdate).toUTCString());
    assert.equal(response.headers.etag, `"${createHash('sha256').update(response.rawPayload).digest('base64url')}"`);

    const posted = await h.f.inject({ method: 'POST', url: '/pki/ocsp', headers: { 'content-type': 'application/ocsp-request' }, payload: request });
    assert.equal(posted.statusCode, 200);
    assert.equal(posted.headers['cache-control'], 'no-cache');
    assert.equal(posted.headers.expires, undefined);
    const malformed = await get(h.f, '/pki/ocsp/bm90IGFuIE9DU1AgcmVxdWVzdA==');
    assert.equal(malformed.statusCode, 200);
    assert.equal(malformed.headers['cache-control'], 'no-cache', 'an unsigned error answer has no times to be cached by');
    assert.equal(malformed.headers['last-modified'], undefined);
  });
});
