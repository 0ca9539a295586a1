import { createPublicKey, randomUUID, X509Certificate } from 'node:crypto';
import { Pkcs10CertificateRequest } from '../../src/pki/x509.ts';
import type { TestContext } from 'node:test';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { modelApprovalKind } from '../../src/approvals/kinds/model-approval.ts';
import { decideApprovalRequest } from '../../src/approvals/requests.ts';
import { proposeModel } from '../../src/agents/models.ts';
import { buildApp } from '../../src/http/app.ts';
import { acr } from '../../src/identity/acr.ts';
import { findUserByUsername } from '../../src/identity/users.ts';
import { testContext, type TestDialect } from '../helpers/storage.ts';
import { applyDocument, initTestCa, opensslCsr, scratch, tradingAgentProfile } from '../pki/fixture.ts';

export const executionApi = 'https://execution.example.com/api';
export const ownerLei = '5493001KJTIIGC8Y1R12';
export const digest = (seed: string) => `sha256:${Buffer.from(seed.padEnd(32, '.')).toString('hex').slice(0, 64).padEnd(64, '0')}`;
export const v1 = { version: '1.0.0', model: digest('model-v1'), image: digest('image-v1') };
export const v2 = { version: '2.0.0', model: digest('model-v2'), image: digest('image-v2') };

/**
 * A Clearance with its CA, the trading-agent profile, an execution API, a deployment pipeline
 * (`ci-main`, an ES256 key the test holds), agent algo-7 (production, hardware keys only), a
 * model validator and a model-risk approver; client certificates reach it through a trusted proxy.
 */
export async function agentHarness(t: TestContext, options: { dialect?: TestDialect; env?: NodeJS.ProcessEnv } = {}) {
  const env = { CLEARANCE_CLIENT_CERT_HEADER: 'x-client-cert', CLEARANCE_TRUSTED_PROXIES: '127.0.0.1', ...options.env };
  const { ctx, clock } = await testContext({ t, env, risk: 'off', ...(options.dialect ? { dialect: options.dialect } : {}) });
  await initTestCa(ctx);
  const pipeline = await generateKeyPair('ES256');
  const pipelineJwk = { ...(await exportJWK(pipeline.publicKey)), kid: 'ci-main-1', alg: 'ES256', use: 'sig' };
  await applyDocument(ctx, {
    legal_entities: [{ lei: ownerLei, name: 'Example Asset Manager', jurisdiction: 'GB', home_region: 'eu', roles: ['asset_manager'], desks: [{ id: 'rates-eu', name: 'EU rates', product_classes: ['bond'] }] }],
    regions: [{ id: 'eu', name: 'Europe' }],
    certificate_profiles: [tradingAgentProfile],
    resource_servers: [{ identifier: executionApi, scopes: ['order:create'], require_sender_constraint: true }],
    clients: [
      { client_id: 'algo-7', kind: 'agent', owner_lei: ownerLei, token_endpoint_auth_method: 'tls_client_auth', tls_client_auth_san_uri: 'spiffe://broker.example/agent/algo-7', grant_types: ['client_credentials'], scope: 'order:create' },
    ],
    pipelines: [{ id: 'ci-main', name: 'Main deployment pipeline', jwks: { keys: [pipelineJwk] } }],
    agents: [{ id: 'algo-7', strategy: 'eu-rates-momentum', environment: 'production', owner_lei: ownerLei, desk: 'rates-eu', venues: ['XLON'], instrument_classes: ['bond'], notional_envelope: { max: 5_000_000, currency: 'EUR' }, pipelines: ['ci-main'] }],
    users: [
      { username: 'val', password: 'correct horse battery staple 7', roles: ['model-validator'] },
      { username: 'mrisk', password: 'correct horse battery staple 7', roles: ['model-risk'] },
      { username: 'trader', password: 'correct horse battery staple 7', roles: [] },
    ],
  });
  clock.advance(2000);
  const app = buildApp(ctx);
  const files = scratch(t);
  const person = async (username: string) => (await findUserByUsername(ctx, username))!;

  const harness = {
    ctx,
    clock,
    app,
    files,
    pipeline: pipeline.privateKey,
    async propose(model: typeof v1, retirePrevious = false) {
      const validator = await person('val');
      return proposeModel(ctx, { agentId: 'algo-7', version: model.version, modelDigest: model.model, imageDigest: model.image, validatedBy: validator.id, retirePrevious });
    },
    async decide(requestId: string, username: string, decision: 'approve' | 'deny' = 'approve') {
      const approver = await person(username);
      return decideApprovalRequest(ctx, modelApprovalKind, {
        requestId,
        approver: { userId: approver.id, username, roles: approver.roles, desks: approver.desks },
        proof: { method: 'token', acr: acr.phishingResistant, amr: ['hwk', 'user', 'mfa'], authTime: Math.floor(clock.now() / 1000), jti: randomUUID(), clientId: 'approvals-app' },
        decision,
        ...(decision === 'deny' ? { reason: 'not validated enough' } : {}),
      });
    },
    async nonce(): Promise<string> {
      const response = await app.inject({ method: 'POST', url: '/agents/algo-7/nonce' });
      if (response.statusCode !== 200) throw new Error(response.body);
      return response.json().nonce as string;
    },
    /** A fresh key and CSR, and an attestation for them (overrides change one thing). */
    async attest(model: typeof v1, overrides: { claims?: Record<string, unknown>; key?: CryptoKey; header?: Record<string, unknown>; jkt?: string; lifetime?: number } = {}) {
      const csr = opensslCsr(files, `agent-${randomUUID().slice(0, 8)}`);
      return { csr, attestation: await harness.sign(model, csr.csrPem, overrides) };
    },
    async sign(model: typeof v1, csrPem: string, overrides: { claims?: Record<string, unknown>; key?: CryptoKey; header?: Record<string, unknown>; jkt?: string; lifetime?: number } = {}) {
      const spki = Buffer.from(new Pkcs10CertificateRequest(csrPem).publicKey.rawData);
      const jkt = overrides.jkt ?? (await calculateJwkThumbprint(createPublicKey({ key: spki, format: 'der', type: 'spki' }).export({ format: 'jwk' }) as JWK, 'sha256'));
      const now = Math.floor(clock.now() / 1000);
      return new SignJWT({
        iss: 'ci-main',
        sub: 'algo-7',
        aud: ctx.config.issuer,
        iat: now,
        exp: now + (overrides.lifetime ?? 300),
        jti: randomUUID(),
        nonce: await harness.nonce(),
        image_digest: model.image,
        model_digest: model.model,
        model_version: model.version,
        key_storage: 'hsm',
        cnf: { jkt },
        ...overrides.claims,
      })
        .setProtectedHeader({ alg: 'ES256', typ: 'attestation+jwt', kid: 'ci-main-1', ...overrides.header })
        .sign(overrides.key ?? pipeline.privateKey);
    },
    async certificate(attestation: string, csrPem: string) {
      return app.inject({ method: 'POST', url: '/agents/algo-7/certificate', headers: { 'content-type': 'application/json' }, payload: JSON.stringify({ attestation, csr: csrPem }) });
    },
    async token(certificatePem: string) {
      return app.inject({
        method: 'POST',
        url: '/token',
        headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-client-cert': `:${new X509Certificate(certificatePem).raw.toString('base64')}:` },
        payload: `grant_type=client_credentials&client_id=algo-7&scope=order%3Acreate&resource=${encodeURIComponent(executionApi)}`,
      });
    },
  };
  return harness;
}
