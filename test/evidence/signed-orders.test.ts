import assert from 'node:assert/strict';
import { createHash, createPrivateKey, generateKeyPairSync, X509Certificate, type KeyObject } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { decodeJwt } from 'jose';
import { contentDigest, createSignedRequestVerifier, SignedRequestError, signRequest, type SignedRequest } from '../../src/guard/index.ts';
import type { AccessTokenClaims } from '../../src/guard/token.ts';
import type { buildApp } from '../../src/http/app.ts';
import { AuditKeys, auditOrigin } from '../../src/audit/audit-key.ts';
import { exportBundle, verifyBundle } from '../../src/audit/bundle.ts';
import { createSealer } from '../../src/audit/lifecycle.ts';
import { newSerial, signCertificate } from '../../src/pki/build.ts';
import { revokeCertificate } from '../../src/pki/revocation.ts';
import * as x509 from '../../src/pki/x509.ts';
import { evidenceAudience } from '../../src/resource-servers/builtins.ts';
import { forgeTimestampToken, startForgedTsa, startLocalTsa } from '../helpers/tsa.ts';
import { scratch } from '../pki/fixture.ts';
import { agentHarness, v1 } from '../agents/fixture.ts';

// Transaction signing end to end (docs/transaction-signing.md): algo-7, attested for an approved
// model, signs its order with RFC 9421; the broker's guard verifies it (chain to the pinned root,
// profile, key bound to the token, OCSP) and reports the evidence; Clearance verifies it again,
// adds its OCSP answer and an RFC 3161 stamp from a local openssl TSA; the trade's bundle verifies
// offline, naming who signed what, the status then and the stamp.

/** fetch, answered by the fastify app in-process (the guard talks to this Clearance). */
function injectFetch(app: ReturnType<typeof buildApp>): typeof fetch {
  return (async (input: string | URL | Request, init?: RequestInit) => {
    const url = new URL(String(input));
    const response = await app.inject({ method: (init?.method ?? 'GET') as 'GET', url: url.pathname + url.search, headers: (init?.headers ?? {}) as Record<string, string>, ...(init?.body ? { payload: init.body as string | Buffer } : {}) });
    return new Response(response.rawPayload, { status: response.statusCode, headers: response.headers as Record<string, string> });
  }) as typeof fetch;
}

const orderBody = Buffer.from(JSON.stringify({ side: 'buy', instrument: { class: 'bond', symbol: 'DE0001102580' }, notional: { amount: '5000000', currency: 'EUR' } }));
const authorizationDetails = JSON.stringify([{ type: 'order', instrument: { class: 'bond', symbol: 'DE0001102580' }, side: 'buy', max_notional: { amount: '5000000', currency: 'EUR' }, venue: 'XLON', account: 'ACC-7781' }]);

/**
 * `tsa`: false for none, or another TSA's URL and trust file instead of the local openssl TSA's;
 * `ekus`: the trading-agent profile's EKUs instead of client_auth alone.
 */
async function signedOrderHarness(t: TestContext, options: { tsa?: false | { url: string; trustFile: string }; ekus?: string[] } = {}) {
  const tsa = await startLocalTsa(t);
  const tsaEnv = options.tsa === false ? {} : options.tsa ? { CLEARANCE_TSA_URL: options.tsa.url, CLEARANCE_TSA_TRUST: options.tsa.trustFile } : { CLEARANCE_TSA_URL: tsa.url, CLEARANCE_TSA_TRUST: join(tsa.dir, 'ca.pem') };
  const h = await agentHarness(t, { env: tsaEnv });
  const { applyDocument, tradingAgentProfile } = await import('../pki/fixture.ts');
  await applyDocument(h.ctx, {
    clients: [{ client_id: 'broker-guard', kind: 'service', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], scope: 'evidence:write' }],
    ...(options.ekus ? { certificate_profiles: [{ ...tradingAgentProfile, ekus: options.ekus }] } : {}),
  });
  const { request } = await h.propose(v1);
  assert.ok((await h.decide(request.id, 'mrisk')).ok);
  const { csr, attestation } = await h.attest(v1);
  const issued = await h.certificate(attestation, csr.csrPem);
  assert.equal(issued.statusCode, 201, issued.body);
  const certificatePem = issued.json().certificate as string;
  const agentKey = createPrivateKey(readFileSync(csr.key));
  // algo-7's token for the order, starting the trade's txn, bound to its certificate.
  const tokenResponse = await h.app.inject({
    method: 'POST',
    url: '/token',
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-client-cert': `:${new X509Certificate(certificatePem).raw.toString('base64')}:` },
    payload: new URLSearchParams({ grant_type: 'client_credentials', client_id: 'algo-7', resource: 'https://execution.example.com/api', authorization_details: authorizationDetails, txn: 'new' }).toString(),
  });
  assert.equal(tokenResponse.statusCode, 200, tokenResponse.body);
  const accessToken = tokenResponse.json().access_token as string;
  // The guard verified the token already (test/guard); here its claims are what the verifier is given.
  const claims = decodeJwt(accessToken) as unknown as AccessTokenClaims;
  // The broker guard's own producer token (evidence:write).
  const producer = await h.app.inject({ method: 'POST', url: '/token', headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`broker-guard:${await secretOf(h, 'broker-guard')}`).toString('base64')}` }, payload: `grant_type=client_credentials&scope=evidence%3Awrite&resource=${encodeURIComponent(evidenceAudience(h.ctx.config.issuer))}` });
  assert.equal(producer.statusCode, 200, producer.body);
  const root = (await h.ctx.pki.authorities.all()).find((a) => a.role === 'root')!.pem;
  const verifierWith = (overrides: Partial<Parameters<typeof createSignedRequestVerifier>[0]> = {}) =>
    createSignedRequestVerifier({ issuer: h.ctx.config.issuer, roots: [root], policies: ['1.3.6.1.4.1.59999.1.1'], fetch: injectFetch(h.app), now: () => h.clock.now(), evidence: { token: async () => producer.json().access_token as string }, ...overrides });
  const verifier = verifierWith();
  const sign = (body = orderBody, options: { created?: number; key?: typeof agentKey; keyid?: string; txn?: string; authorization?: string } = {}): SignedRequest => {
    const request: SignedRequest = {
      method: 'POST',
      url: 'https://broker.example/orders',
      headers: { authorization: options.authorization ?? `Bearer ${accessToken}`, txn: options.txn ?? String(claims.txn), 'content-digest': contentDigest(body), 'content-type': 'application/json' },
      body,
    };
    Object.assign(request.headers, signRequest({ method: request.method, targetUri: request.url, headers: request.headers }, { key: options.key ?? agentKey, keyid: options.keyid ?? issued.json().serial, created: options.created ?? Math.floor(h.clock.now() / 1000), nonce: crypto.randomUUID() }));
    return request;
  };
  const producerToken = producer.json().access_token as string;
  return { h, tsa, verifier, verifierWith, sign, claims, certificatePem, agentKey, producerToken, serial: issued.json().serial as string };
}

async function secretOf(h: Awaited<ReturnType<typeof agentHarness>>, clientId: string): Promise<string> {
  // The harness applied clients through applyDocument, which prints no secrets: give this one a known secret.
  const { hashClientSecret } = await import('../../src/clients/secret.ts');
  const secret = 'producer-secret-0123456789abcdef0123456789';
  await h.ctx.storage.db.updateTable('clients').set({ secret_hash: hashClientSecret(secret) }).where('client_id', '=', clientId).execute();
  h.ctx.clients.invalidate();
  return secret;
}

test('a signed order is verified by the guard, its evidence recorded and time-stamped, and the trade bundle verifies offline', async (t) => {
  const { h, tsa, verifier, sign, claims } = await signedOrderHarness(t);
  const result = await verifier.verify(sign(), claims);
  assert.equal(result.signer.holder, 'algo-7');
  assert.ok(result.evidence?.evidence_id);
  assert.ok(result.evidence?.timestamp, 'stamped by the TSA');
  assert.equal(tsa.requests, 1);
  // Seal, export the trade's bundle, verify it offline.
  await createSealer(h.ctx, (await import('../../src/keys/master-key.ts')).resolveMasterKey(h.ctx.config).key).sealOnce();
  const key = await new AuditKeys(h.ctx.storage.db, (await import('../../src/keys/master-key.ts')).resolveMasterKey(h.ctx.config).key, h.ctx.clock).signingKey(auditOrigin(h.ctx.config.issuer));
  const { text } = await exportBundle(h.ctx.storage.db, { query: { txn: String(claims.txn) }, key, jwksInForce: (from, to) => h.ctx.keys.jwksInForce(from, to), now: h.clock.now(), tsaTrust: [tsa.caPem] });
  const report = verifyBundle(text);
  assert.ok(report.ok, report.problems.join('\n'));
  assert.equal(report.signedRequests?.length, 1);
  const signed = report.signedRequests![0]!;
  assert.equal(signed.holder, 'algo-7');
  assert.equal(signed.statusAtSigning, 'good');
  assert.ok(signed.timestamp);
  // The token.issued of the trade names the model version that traded.
  const issuedEvent = JSON.parse(text).events.find((e: { event: { type: string } }) => e.event.type === 'token.issued').event;
  assert.equal(issuedEvent.details.agent.model_version, '1.0.0');
  // Tampering with the record in the bundle is caught (the bundle signature, and the record digest).
  const tampered = JSON.parse(text);
  tampered.signingEvidence[0].record = tampered.signingEvidence[0].record.replace('"POST"', '"PUT"');
  assert.equal(verifyBundle(JSON.stringify(tampered)).ok, false);
});

test('the guard refuses an altered body, a replay, a stranger’s key, another txn, a wrong profile, an untrusted root, a revoked certificate at once and an expired one', async (t) => {
  const { h, verifier, verifierWith, sign, claims, serial } = await signedOrderHarness(t);
  const code = async (request: SignedRequest, using = verifier, tokenClaims = claims) => {
    try {
      await using.verify(request, tokenClaims);
      return 'accepted';
    } catch (error) {
      assert.ok(error instanceof SignedRequestError, String(error));
      return error.code;
    }
  };
  const altered = sign();
  altered.body = Buffer.from(orderBody.toString().replace('5000000', '50000000'));
  assert.equal(await code(altered), 'digest_mismatch');
  const once = sign();
  assert.equal(await code(once), 'accepted');
  assert.equal(await code(once), 'replayed');
  const { generateKeyPairSync } = await import('node:crypto');
  assert.equal(await code(sign(orderBody, { key: generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey })), 'bad_signature');
  assert.equal(await code(sign(orderBody, { txn: 'txn-of-someone-else' })), 'txn');
  assert.equal(await code(sign(), verifierWith({ policies: ['1.3.6.1.4.1.59999.7.7'] })), 'wrong_profile');
  assert.equal(await code(sign(), verifierWith({ eku: '1.3.6.1.5.5.7.3.4' })), 'wrong_profile');
  const { makePki } = await import('../helpers/pki.ts');
  assert.equal(await code(sign(), verifierWith({ roots: [makePki(t).ca.cert] })), 'untrusted');
  // A token bound to another certificate: the signing key is not the token's.
  assert.equal(await code(sign(), verifier, { ...claims, cnf: { 'x5t#S256': 'A'.repeat(43) } }), 'key_binding');
  await revokeCertificate(h.ctx, { serial, reason: 'keyCompromise', actor: 'test' });
  assert.equal(await code(sign()), 'revoked');
  // Signed after the 8-hour certificate expired.
  h.clock.advance(9 * 3600_000);
  assert.equal(await code(sign()), 'expired_certificate');
});

test('the guard refuses a replayed signed order under another label or with the other ECDSA form of its signature', async (t) => {
  const { verifierWith, sign, claims } = await signedOrderHarness(t);
  // No evidence: the guard's own replay rule is under test, not Clearance's records.
  const verifier = verifierWith({ evidence: undefined });
  const code = async (request: SignedRequest) => {
    try {
      await verifier.verify(request, claims);
      return 'accepted';
    } catch (error) {
      assert.ok(error instanceof SignedRequestError, String(error));
      return error.code;
    }
  };
  const once = sign();
  assert.equal(await code(once), 'accepted');
  // RFC 9421 §3.1: the label is not part of what is signed; a captured request relabelled is the same request.
  const relabelled: SignedRequest = { ...once, headers: { ...once.headers, 'signature-input': String(once.headers['signature-input']).replace(/^sig1=/, 'replay='), signature: String(once.headers.signature).replace(/^sig1=/, 'replay=') } };
  assert.equal(await code(relabelled), 'replayed');
  // ECDSA: (r, s) and (r, n - s) both verify; anyone holding one can make the other.
  const n = BigInt('0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551');
  const bytes = Buffer.from(String(once.headers.signature).replace(/^sig1=:|:$/g, ''), 'base64');
  const s = BigInt(`0x${bytes.subarray(32).toString('hex')}`);
  const malleated = Buffer.concat([bytes.subarray(0, 32), Buffer.from((n - s).toString(16).padStart(64, '0'), 'hex')]);
  assert.equal(await code({ ...once, headers: { ...once.headers, signature: `sig1=:${malleated.toString('base64')}:` } }), 'replayed');
});

test('Clearance refuses evidence without a producer token, and evidence whose base does not verify', async (t) => {
  const { h, sign, claims } = await signedOrderHarness(t);
  const request = sign();
  const report = {
    txn: claims.txn,
    jti: claims.jti,
    method: 'POST',
    target_uri: request.url,
    signature_input: String(request.headers['signature-input']),
    signature: String(request.headers.signature).replace(/^sig1=:|:$/g, ''),
    signature_base: 'forged base',
    content_digest: String(request.headers['content-digest']),
  };
  const producer = await h.app.inject({ method: 'POST', url: '/token', headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`broker-guard:${await secretOf(h, 'broker-guard')}`).toString('base64')}` }, payload: `grant_type=client_credentials&scope=evidence%3Awrite&resource=${encodeURIComponent(evidenceAudience(h.ctx.config.issuer))}` });
  const post = (body: unknown, token?: string) => h.app.inject({ method: 'POST', url: '/evidence', headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) }, payload: JSON.stringify(body) });
  assert.equal((await post(report)).statusCode, 401);
  const refused = await post(report, producer.json().access_token);
  assert.equal(refused.statusCode, 400);
  assert.match(refused.json().error_description, /does not end with the signature input/);
  assert.equal(decodeJwt(producer.json().access_token).scope, 'evidence:write');
});

/** What a producer reports of a signed request (as the guard does), with `overrides`. */
function reportOf(request: SignedRequest, claims: AccessTokenClaims, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    txn: claims.txn,
    jti: claims.jti,
    method: request.method,
    target_uri: request.url,
    signature_input: String(request.headers['signature-input']),
    signature: String(request.headers.signature).replace(/^sig1=:|:$/g, ''),
    signature_base: signatureBaseOf(request),
    content_digest: String(request.headers['content-digest']),
    ...overrides,
  };
}

/** The RFC 9421 base the signer signed, rebuilt from the request as the guard does. */
function signatureBaseOf(request: SignedRequest): string {
  const input = String(request.headers['signature-input']).replace(/^sig1=/, '');
  const components = [...input.slice(1, input.indexOf(')')).matchAll(/"([^"]+)"/g)].map((m) => m[1]!);
  const url = new URL(request.url);
  const value = (id: string) => (id === '@method' ? request.method : id === '@target-uri' ? url.href : id === '@authority' ? url.host : String(request.headers[id]));
  return [...components.map((id) => `"${id}": ${value(id)}`), `"@signature-params": ${input}`].join('\n');
}

test('Clearance records the jti of the token the signature covers: a report naming another is refused, audited, and nothing is recorded', async (t) => {
  const { h, sign, claims, producerToken } = await signedOrderHarness(t);
  const post = (body: unknown) => h.app.inject({ method: 'POST', url: '/evidence', headers: { 'content-type': 'application/json', authorization: `Bearer ${producerToken}` }, payload: JSON.stringify(body) });
  const request = sign();
  const lying = await post(reportOf(request, claims, { jti: 'jti-of-another-token' }));
  assert.equal(lying.statusCode, 400, lying.body);
  assert.equal(lying.json().error, 'invalid_request');
  assert.match(lying.json().error_description, /jti/);
  assert.equal((await h.ctx.storage.db.selectFrom('signing_evidence').select('id').execute()).length, 0, 'nothing recorded');
  const refused = await h.ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', 'evidence.refused').execute();
  assert.deepEqual(refused.map((r) => JSON.parse(r.event).details?.reason ?? JSON.parse(r.event).decision?.reasons?.[0]), ['jti_mismatch']);
  // The truthful report of the same request is recorded, with the covered token's jti.
  const recorded = await post(reportOf(request, claims));
  assert.equal(recorded.statusCode, 201, recorded.body);
  const event = JSON.parse((await h.ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', 'evidence.recorded').executeTakeFirstOrThrow()).event);
  assert.equal(event.details.jti, claims.jti);
  const record = JSON.parse((await h.ctx.storage.db.selectFrom('signing_evidence').select('record').executeTakeFirstOrThrow()).record);
  assert.equal(record.request.jti, claims.jti);
});

test('Clearance refuses, audited, evidence whose covered token is not bound to the signing certificate, or is none of its tokens', async (t) => {
  const { h, sign, claims, producerToken } = await signedOrderHarness(t);
  const post = (body: unknown) => h.app.inject({ method: 'POST', url: '/evidence', headers: { 'content-type': 'application/json', authorization: `Bearer ${producerToken}` }, payload: JSON.stringify(body) });
  // algo-7 signs a request carrying a token bound to no certificate of theirs (the producer's own).
  const unbound = await post(reportOf(sign(orderBody, { authorization: `Bearer ${producerToken}` }), { ...claims, jti: decodeJwt(producerToken).jti as string }));
  assert.equal(unbound.statusCode, 400, unbound.body);
  assert.match(unbound.json().error_description, /bound/);
  const forged = await post(reportOf(sign(orderBody, { authorization: 'Bearer not-a-token-of-this-server' }), claims));
  assert.equal(forged.statusCode, 400, forged.body);
  assert.match(forged.json().error_description, /token/);
  assert.equal((await h.ctx.storage.db.selectFrom('signing_evidence').select('id').execute()).length, 0, 'nothing recorded');
  const refused = await h.ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', 'evidence.refused').execute();
  assert.deepEqual(refused.map((r) => JSON.parse(r.event).details?.reason ?? JSON.parse(r.event).decision?.reasons?.[0]), ['key_binding', 'token_unknown']);
});

test('Clearance names the profile of the certificate that verified the signature, whatever a report says', async (t) => {
  const { h, sign, claims, producerToken } = await signedOrderHarness(t);
  const recorded = await h.app.inject({ method: 'POST', url: '/evidence', headers: { 'content-type': 'application/json', authorization: `Bearer ${producerToken}` }, payload: JSON.stringify(reportOf(sign(), claims, { profile: 'treasury-admin', signer: { profile: 'treasury-admin' } })) });
  assert.equal(recorded.statusCode, 201, recorded.body);
  const serial = JSON.parse((await h.ctx.storage.db.selectFrom('signing_evidence').select('record').executeTakeFirstOrThrow()).record).signer.serial as string;
  const certificate = await h.ctx.storage.db.selectFrom('pki_certificates').select(['profile']).where('serial', '=', serial).executeTakeFirstOrThrow();
  const event = JSON.parse((await h.ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', 'evidence.recorded').executeTakeFirstOrThrow()).event);
  assert.equal(event.details.profile, certificate.profile);
  assert.notEqual(event.details.profile, 'treasury-admin');
});

test('in production Clearance records no evidence without a time-stamp authority: 503, nothing recorded, audited; in development it records it unstamped', async (t) => {
  const { h, sign, claims, producerToken } = await signedOrderHarness(t, { tsa: false });
  const post = (body: unknown) => h.app.inject({ method: 'POST', url: '/evidence', headers: { 'content-type': 'application/json', authorization: `Bearer ${producerToken}` }, payload: JSON.stringify(body) });
  const config = h.ctx.config as { mode: string };
  config.mode = 'production';
  t.after(() => {
    config.mode = 'development';
  });
  const refused = await post(reportOf(sign(), claims));
  assert.equal(refused.statusCode, 503, refused.body);
  assert.equal(refused.json().error, 'temporarily_unavailable');
  assert.match(refused.json().error_description, /CLEARANCE_TSA_URL/);
  assert.equal((await h.ctx.storage.db.selectFrom('signing_evidence').select('id').execute()).length, 0, 'nothing recorded');
  const events = await h.ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', 'evidence.refused').execute();
  assert.deepEqual(events.map((r) => [JSON.parse(r.event).details.error, JSON.parse(r.event).details.reason]), [['temporarily_unavailable', 'no_tsa']]);
  // A developer's machine records it, unstamped (verify-bundle says so: "no time stamp").
  config.mode = 'development';
  const recorded = await post(reportOf(sign(), claims));
  assert.equal(recorded.statusCode, 201, recorded.body);
  assert.equal(recorded.json().timestamp, undefined);
});

/**
 * A certificate Clearance's issuing CA signs with the timeStamping EKU alone and critical, as RFC
 * 3161 §2.3 shapes a TSA's, and its key: no profile issues one (a profile certificate's EKU is never
 * critical), but nothing in the trust of a stamp may rest on that.
 */
async function timeStampingCertificateOfOwnCa(h: Awaited<ReturnType<typeof signedOrderHarness>>['h']): Promise<{ key: KeyObject; certificate: string }> {
  const { authority, key: issuingKey } = await h.ctx.pki.authorities.issuing();
  const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const certificate = await signCertificate(
    {
      serial: newSerial(),
      subject: 'CN=Not a TSA',
      publicKey: pair.publicKey.export({ format: 'der', type: 'spki' }),
      notBefore: new Date(h.clock.now() - 60_000),
      notAfter: new Date(h.clock.now() + 86400_000),
      extensions: [new x509.BasicConstraintsExtension(false, undefined, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true), new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.timeStamping], true)],
    },
    authority.certificate,
    issuingKey,
  );
  return { key: pair.privateKey, certificate: certificate.toString('pem') };
}

test("a stamp signed by a certificate of Clearance's own CA is refused, even when CLEARANCE_TSA_TRUST names that CA: 503, nothing recorded, audited", async (t) => {
  // An operator pointed the TSA trust at Clearance's own CA (its issuing CA, as a CA bundle of the
  // firm's would); algo-7's profile grants time_stamping, and algo-7 answers for the TSA with a time of its choosing.
  const trust = scratch(t).at('tsa-trust.pem');
  let signer: { key: KeyObject; certificate: string; genTime: Date } | undefined;
  const forged = await startForgedTsa(t, () => signer!);
  const { h, sign, claims, producerToken, agentKey, certificatePem } = await signedOrderHarness(t, { tsa: { url: forged.url, trustFile: trust }, ekus: ['client_auth', 'time_stamping'] });
  assert.ok(new X509Certificate(certificatePem).keyUsage?.includes('1.3.6.1.5.5.7.3.8'), 'the agent holds a time_stamping certificate');
  writeFileSync(trust, (await h.ctx.pki.authorities.all()).filter((a) => a.role !== 'ocsp').map((a) => a.pem).join('\n'));
  const post = (body: unknown) => h.app.inject({ method: 'POST', url: '/evidence', headers: { 'content-type': 'application/json', authorization: `Bearer ${producerToken}` }, payload: JSON.stringify(body) });
  const refusedWith = async (stampedBy: { key: KeyObject; certificate: string }) => {
    signer = { ...stampedBy, genTime: new Date('2020-01-01T00:00:00Z') };
    const requests = forged.requests;
    const refused = await post(reportOf(sign(), claims));
    assert.equal(forged.requests, requests + 1, 'Clearance asked the configured TSA');
    assert.equal(refused.statusCode, 503, refused.body);
    assert.equal(refused.json().error, 'temporarily_unavailable');
    assert.equal(refused.headers['cache-control'], 'no-store');
    return refused.json().error_description as string;
  };
  // algo-7's own certificate: timeStamping beside clientAuth, not critical (RFC 3161 §2.3).
  assert.match(await refusedWith({ key: agentKey, certificate: certificatePem }), /timeStamping EKU alone/);
  // One shaped as a TSA's, but of Clearance's own CA.
  assert.match(await refusedWith(await timeStampingCertificateOfOwnCa(h)), /Clearance's own CA/);
  assert.equal((await h.ctx.storage.db.selectFrom('signing_evidence').select('id').execute()).length, 0, 'nothing recorded');
  const events = await h.ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', 'evidence.refused').execute();
  assert.deepEqual(events.map((r) => JSON.parse(r.event).details.reason), ['tsa_untrusted', 'tsa_untrusted']);
});

test("verify-bundle refuses a stamp by a certificate that is no TSA's (an agent's time_stamping certificate, or any of Clearance's own CA), even when the bundle's TSA anchors name that CA", async (t) => {
  const { h, tsa, sign, claims, producerToken, agentKey, certificatePem } = await signedOrderHarness(t, { ekus: ['client_auth', 'time_stamping'] });
  const recorded = await h.app.inject({ method: 'POST', url: '/evidence', headers: { 'content-type': 'application/json', authorization: `Bearer ${producerToken}` }, payload: JSON.stringify(reportOf(sign(), claims)) });
  assert.equal(recorded.statusCode, 201, recorded.body);
  const { record } = await h.ctx.storage.db.selectFrom('signing_evidence').select('record').executeTakeFirstOrThrow();
  const digest = createHash('sha256').update(record).digest();
  const ownCa = (await h.ctx.pki.authorities.all()).filter((a) => a.role !== 'ocsp').map((a) => a.pem);
  const { resolveMasterKey } = await import('../../src/keys/master-key.ts');
  const bundleStamped = async (token: Buffer) => {
    // As a record stamped before this rule would be: the token is the one in the table.
    await h.ctx.storage.db.updateTable('signing_evidence').set({ timestamp_token: token.toString('base64') }).execute();
    await createSealer(h.ctx, resolveMasterKey(h.ctx.config).key).sealOnce();
    const key = await new AuditKeys(h.ctx.storage.db, resolveMasterKey(h.ctx.config).key, h.ctx.clock).signingKey(auditOrigin(h.ctx.config.issuer));
    const { text } = await exportBundle(h.ctx.storage.db, { query: { txn: String(claims.txn) }, key, jwksInForce: (from, to) => h.ctx.keys.jwksInForce(from, to), now: h.clock.now(), tsaTrust: [tsa.caPem, ...ownCa] });
    return verifyBundle(text);
  };
  const genTime = new Date(h.clock.now() + 3600_000);
  // algo-7's own certificate: timeStamping beside clientAuth, not critical.
  const byAgent = await bundleStamped(forgeTimestampToken({ key: agentKey, certificate: certificatePem, digest, genTime }));
  assert.equal(byAgent.ok, false);
  assert.match(byAgent.problems.join('\n'), /timeStamping EKU alone/);
  // A certificate of Clearance's issuing CA shaped as RFC 3161 §2.3 asks (no profile issues one: its EKU is never critical).
  const shaped = await timeStampingCertificateOfOwnCa(h);
  const byOwnCa = await bundleStamped(forgeTimestampToken({ ...shaped, digest, genTime }));
  assert.equal(byOwnCa.ok, false);
  assert.match(byOwnCa.problems.join('\n'), /Clearance's own CA/);
});
