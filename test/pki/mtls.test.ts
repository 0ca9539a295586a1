import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { decodeJwt } from 'jose';
import { Agent, request } from 'undici';
import { buildApp } from '../../src/http/app.ts';
import { createLogger } from '../../src/log.ts';
import { requestCertificate, type IssuedCertificate } from '../../src/pki/issuance.ts';
import { revokeCertificate } from '../../src/pki/revocation.ts';
import { revocationCheckMs } from '../../src/pki/status.ts';
import { openContext } from '../../src/server.ts';
import { makePki } from '../helpers/pki.ts';
import { startTestServer } from '../helpers/server.ts';
import { testContext, testDialects } from '../helpers/storage.ts';
import { applyDocument, initTestCa, opensslCsr, scratch, tradingAgentProfile } from './fixture.ts';

// Clearance's own mTLS client authentication trusts its CA by profile and refuses a revoked
// certificate at once on the node that revoked it, and within the status check interval (1 s,
// docs/pki.md) on every other node — whoever validated the TLS handshake.

const executionApi = 'https://execution.example.com/api';

const agentSetup = {
  certificate_profiles: [tradingAgentProfile, { ...tradingAgentProfile, name: 'risk-service', client_auth: false, ekus: ['server_auth'], san: { uri: ['spiffe://broker.example/svc/{holder}'] } }],
  resource_servers: [{ identifier: executionApi, scopes: ['order:create'], require_sender_constraint: true }],
  clients: [
    {
      client_id: 'algo-7',
      kind: 'agent',
      token_endpoint_auth_method: 'tls_client_auth',
      tls_client_auth_san_uri: 'spiffe://broker.example/agent/algo-7',
      grant_types: ['client_credentials'],
      scope: 'order:create',
    },
    {
      client_id: 'risk-7',
      kind: 'service',
      token_endpoint_auth_method: 'tls_client_auth',
      tls_client_auth_san_uri: 'spiffe://broker.example/svc/risk-7',
      grant_types: ['client_credentials'],
      scope: 'order:create',
    },
  ],
};

async function issueFor(ctx: Parameters<typeof requestCertificate>[0], files: ReturnType<typeof scratch>, holder: string, profile = 'trading-agent') {
  const { key, csrPem } = opensslCsr(files, holder);
  const issued = (await requestCertificate(ctx, { profile, csr: csrPem, holder, requestedBy: 'pipeline', requesterType: 'client' })) as IssuedCertificate;
  return { ...issued, key: readFileSync(key, 'utf8') };
}

test('over real TLS, an agent authenticates with its CA certificate and is refused at once after revocation', async (t) => {
  // The listener's own client CA is another one: Clearance validates its CA's chain itself.
  const tls = makePki(t);
  const server = await startTestServer({ t, env: { CLEARANCE_TLS_CERT: tls.server.certFile, CLEARANCE_TLS_KEY: tls.server.keyFile, CLEARANCE_TLS_CLIENT_CA: tls.ca.certFile } });
  const ctx = server.running.ctx;
  await initTestCa(ctx);
  await server.apply(agentSetup);
  const files = scratch(t);
  const cert = await issueFor(ctx, files, 'algo-7');
  const token = async () => {
    const dispatcher = new Agent({ connect: { ca: tls.ca.cert, cert: cert.chainPem, key: cert.key } });
    t.after(() => dispatcher.close());
    const response = await request(`${server.issuer}/token`, {
      method: 'POST',
      dispatcher,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `grant_type=client_credentials&client_id=algo-7&scope=order%3Acreate&resource=${encodeURIComponent(executionApi)}`,
    });
    return { status: response.statusCode, body: (await response.body.json()) as Record<string, unknown> };
  };
  const issued = await token();
  assert.equal(issued.status, 200, JSON.stringify(issued.body));
  const thumbprint = (await import('node:crypto')).createHash('sha256').update(new X509Certificate(cert.certificatePem).raw).digest('base64url');
  assert.deepEqual(decodeJwt(issued.body.access_token as string).cnf, { 'x5t#S256': thumbprint });
  await revokeCertificate(ctx, { serial: cert.serial, reason: 'keyCompromise', actor: 'test' });
  const refused = await token();
  assert.equal(refused.status, 401);
  assert.equal(refused.body.error, 'invalid_client');
});

for (const dialect of testDialects()) {
  test(`[${dialect.name}] a revocation on one node is refused by another within the status check interval`, async (t) => {
    const env = { CLEARANCE_CLIENT_CERT_HEADER: 'x-client-cert', CLEARANCE_TRUSTED_PROXIES: '127.0.0.1' };
    const a = await testContext({ t, dialect, env, risk: 'off' });
    const b = await openContext(a.config, { clock: a.clock, log: createLogger('silent'), storage: a.database.connect() });
    t.after(() => (b.audit as { close?: () => Promise<void> }).close?.());
    await initTestCa(a.ctx);
    await applyDocument(a.ctx, agentSetup);
    a.clock.advance(2000);
    const files = scratch(t);
    const cert = await issueFor(a.ctx, files, 'algo-7');
    const header = `:${new X509Certificate(cert.certificatePem).raw.toString('base64')}:`;
    const token = (app: ReturnType<typeof buildApp>) =>
      app.inject({
        method: 'POST',
        url: '/token',
        headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-client-cert': header },
        payload: `grant_type=client_credentials&client_id=algo-7&scope=order%3Acreate&resource=${encodeURIComponent(executionApi)}`,
      });
    const nodeA = buildApp(a.ctx);
    const nodeB = buildApp(b);
    assert.equal((await token(nodeA)).statusCode, 200);
    assert.equal((await token(nodeB)).statusCode, 200);
    await revokeCertificate(a.ctx, { serial: cert.serial, reason: 'keyCompromise', actor: 'test' });
    assert.equal((await token(nodeA)).statusCode, 401, 'the revoking node refuses at once');
    a.clock.advance(revocationCheckMs + 1);
    const later = await token(nodeB);
    assert.equal(later.statusCode, 401, later.body);
    assert.equal(later.json().error, 'invalid_client');
    assert.match(later.headers['cache-control'] as string, /no-store/);
  });
}

test('a certificate of a profile that does not authenticate clients is refused by tls_client_auth', async (t) => {
  const env = { CLEARANCE_CLIENT_CERT_HEADER: 'x-client-cert', CLEARANCE_TRUSTED_PROXIES: '127.0.0.1' };
  const { ctx } = await testContext({ t, env, risk: 'off' });
  await initTestCa(ctx);
  await applyDocument(ctx, agentSetup);
  const files = scratch(t);
  const cert = await issueFor(ctx, files, 'risk-7', 'risk-service');
  const response = await buildApp(ctx).inject({
    method: 'POST',
    url: '/token',
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-client-cert': `:${new X509Certificate(cert.certificatePem).raw.toString('base64')}:` },
    payload: `grant_type=client_credentials&client_id=risk-7&scope=order%3Acreate&resource=${encodeURIComponent(executionApi)}`,
  });
  assert.equal(response.statusCode, 401);
  assert.equal(response.json().error, 'invalid_client');
});

test('an expired CA certificate is refused although the proxy vouched for its chain', async (t) => {
  const env = { CLEARANCE_CLIENT_CERT_HEADER: 'x-client-cert', CLEARANCE_TRUSTED_PROXIES: '127.0.0.1' };
  const { ctx, clock } = await testContext({ t, env, risk: 'off' });
  await initTestCa(ctx);
  await applyDocument(ctx, agentSetup);
  const cert = await issueFor(ctx, scratch(t), 'algo-7');
  clock.advance(9 * 3600_000);
  const response = await buildApp(ctx).inject({
    method: 'POST',
    url: '/token',
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-client-cert': `:${new X509Certificate(cert.certificatePem).raw.toString('base64')}:` },
    payload: `grant_type=client_credentials&client_id=algo-7&scope=order%3Acreate&resource=${encodeURIComponent(executionApi)}`,
  });
  assert.equal(response.statusCode, 401);
});
