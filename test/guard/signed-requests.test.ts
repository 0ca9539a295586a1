import assert from 'node:assert/strict';
import { createHash, createPrivateKey, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { test, type TestContext } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { contentDigest, createSignedRequestVerifier, SignedRequestError, signRequest, type SignedRequest } from '../../src/guard/index.ts';
import type { AccessTokenClaims } from '../../src/guard/token.ts';
import { leafExtensions, newSerial, signCertificate } from '../../src/pki/build.ts';
import { softwareKey } from '../../src/pki/custody/software.ts';
import { requestCertificate, type IssuedCertificate } from '../../src/pki/issuance.ts';
import { answerOcsp } from '../../src/pki/ocsp/responder.ts';
import { revokeCertificate } from '../../src/pki/revocation.ts';
import type { StatusAnswer } from '../../src/pki/status.ts';
import { protocolFixture } from '../endpoints/fixture.ts';
import { applyDocument, initTestCa, opensslCsr, scratch, tradingAgentProfile } from '../pki/fixture.ts';

// The guard's OCSP check of a signed request's certificate (src/guard/signed-requests.ts,
// src/guard/ocsp.ts): it trusts an answer signed by the issuing CA's key or by the responder
// Clearance designated for that CA — never by another certificate the CA issued that happens to
// carry the OCSPSigning EKU (as a profile could grant before the rule in src/pki/profiles.ts).

const ocspSigning = '1.3.6.1.5.5.7.3.9';
const clientAuth = '1.3.6.1.5.5.7.3.2';

/** fetch answered by the app in-process; POSTs to /pki/ocsp go to `ocsp` when given (whoever answers that URL). */
function fetchVia(app: FastifyInstance, ocsp?: (request: Buffer) => Promise<Buffer>): typeof fetch {
  return (async (input: string | URL | Request, init?: RequestInit) => {
    const url = new URL(String(input));
    if (ocsp && url.pathname === '/pki/ocsp') return new Response(await ocsp(Buffer.from(init!.body as Uint8Array)), { status: 200, headers: { 'content-type': 'application/ocsp-response' } });
    const response = await app.inject({ method: (init?.method ?? 'GET') as 'GET', url: url.pathname + url.search, headers: (init?.headers ?? {}) as Record<string, string>, ...(init?.body ? { payload: init.body as Buffer } : {}) });
    return new Response(response.rawPayload, { status: response.statusCode, headers: response.headers as Record<string, string> });
  }) as typeof fetch;
}

async function harness(t: TestContext) {
  const f = await protocolFixture(t, { risk: 'off' });
  await initTestCa(f.ctx);
  await applyDocument(f.ctx, { certificate_profiles: [tradingAgentProfile] });
  const files = scratch(t);
  const csr = opensslCsr(files, 'algo-7');
  const signer = (await requestCertificate(f.ctx, { profile: 'trading-agent', csr: csr.csrPem, holder: 'algo-7', requestedBy: 'pipeline', requesterType: 'client' })) as IssuedCertificate;
  const key = createPrivateKey(readFileSync(csr.key));
  const thumbprint = createHash('sha256').update(new X509Certificate(signer.certificatePem).raw).digest('base64url');
  const claims = { iss: f.issuer, sub: 'algo-7', aud: 'https://broker.example', exp: 0, iat: 0, jti: 'jti-1', client_id: 'algo-7', txn: 'txn-1', cnf: { 'x5t#S256': thumbprint } } as AccessTokenClaims;
  const root = (await f.ctx.pki.authorities.all()).find((a) => a.role === 'root')!.pem;
  const verifier = (ocsp?: (request: Buffer) => Promise<Buffer>) => createSignedRequestVerifier({ issuer: f.issuer, roots: [root], fetch: fetchVia(f.app, ocsp), now: () => f.clock.now() });
  const body = Buffer.from('{"side":"buy"}');
  const sign = (): SignedRequest => {
    const request: SignedRequest = { method: 'POST', url: 'https://broker.example/orders', headers: { authorization: 'Bearer t', txn: 'txn-1', 'content-digest': contentDigest(body) }, body };
    Object.assign(request.headers, signRequest({ method: request.method, targetUri: request.url, headers: request.headers }, { key, keyid: signer.serial, created: Math.floor(f.clock.now() / 1000), nonce: crypto.randomUUID() }));
    return request;
  };
  const outcome = async (using: ReturnType<typeof verifier>) => {
    try {
      await using.verify(sign(), claims);
      return 'accepted';
    } catch (error) {
      assert.ok(error instanceof SignedRequestError, String(error));
      return `${error.code}: ${error.message}`;
    }
  };
  return { f, signer, verifier, outcome };
}

/**
 * A certificate of the CA for an agent whose profile granted ocsp_signing, as an older release
 * issued it (src/pki/issuance.ts signs exactly these extensions), and its key.
 */
async function agentCertificateWithOcspSigning(f: Awaited<ReturnType<typeof harness>>['f']) {
  const { authority, key } = await f.ctx.pki.authorities.issuing();
  const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const now = f.clock.now();
  const certificate = await signCertificate(
    {
      serial: newSerial(),
      subject: 'CN=algo-9, O=Example Broker',
      publicKey: pair.publicKey.export({ format: 'der', type: 'spki' }),
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + 8 * 3600_000),
      extensions: leafExtensions({
        ekuOids: [clientAuth, ocspSigning],
        policies: [],
        sans: [{ type: 'uri', value: 'spiffe://broker.example/agent/algo-9' }],
        crlUrl: `${f.issuer}/pki/crl/${authority.id}`,
        ocspUrl: `${f.issuer}/pki/ocsp`,
        caIssuersUrl: `${f.issuer}/pki/ca/${authority.id}`,
        keyEncipherment: false,
      }),
    },
    authority.certificate,
    key,
  );
  return { authority, certificate: new Uint8Array(certificate.rawData), key: softwareKey('attacker', 'EC-P256', pair.privateKey) };
}

test('the guard refuses a `good` for a revoked certificate signed by an agent certificate the CA issued with OCSPSigning, and takes the designated responder’s `revoked`', async (t) => {
  const { f, signer, verifier, outcome } = await harness(t);
  // Clearance's own responder (the one it designated for the issuing CA) answers `good`: accepted.
  assert.equal(await outcome(verifier()), 'accepted');
  await revokeCertificate(f.ctx, { serial: signer.serial, reason: 'keyCompromise', actor: 'test' });
  assert.match(await outcome(verifier()), /^revoked: /);
  // The agent answers at the OCSP URL (a proxy, a poisoned name): `good`, signed with its own key,
  // its certificate (issued by the same CA, EKU OCSPSigning) included — Clearance's own responder code.
  const agent = await agentCertificateWithOcspSigning(f);
  const forged = (request: Buffer) =>
    answerOcsp(request, {
      issuers: [{ id: agent.authority.id, certificate: new Uint8Array(agent.authority.certificate.rawData) }],
      responderFor: async () => ({ certificate: agent.certificate, key: agent.key }),
      status: async () => ({ status: 'good' }) as StatusAnswer,
      now: new Date(f.clock.now()),
      validitySeconds: 300,
    });
  assert.match(await outcome(verifier(forged)), /^status_unknown: the OCSP responder certificate is not the one the CA designated/);
});
