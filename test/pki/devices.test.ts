import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { test, type TestContext } from 'node:test';
import { requestCertificate, type IssuedCertificate } from '../../src/pki/issuance.ts';
import { revokeCertificate } from '../../src/pki/revocation.ts';
import { codeFlowFixture, type CodeFlowFixture } from '../authorization/fixture.ts';
import { approveAndRedeem, csrfOf, get, Jar, post, startAuthorization } from '../endpoints/people-browser.ts';
import { applyDocument, initTestCa, opensslCsr, scratch, tradingAgentProfile } from './fixture.ts';

// Managed devices (docs/pki.md "Managed devices", AMENDMENTS "PKI, agents, signing"): a person who
// signs in presenting a trader workstation's `device` certificate over mTLS has a session on that
// device — its id in the sign-in's event, the session and every token of the grant, and a policy
// can require it — but the certificate is never a factor of the person: amr stays their own.

const password = 'correct horse battery staple 7';
const deviceProfile = { ...tradingAgentProfile, name: 'managed-device', kind: 'device', san: { uri: ['spiffe://broker.example/device/{holder}'] }, name_constraints: { uri: ['spiffe://broker.example/device/'] } };

async function harness(t: TestContext) {
  const f = await codeFlowFixture(t, { risk: 'off', env: { CLEARANCE_CLIENT_CERT_HEADER: 'x-client-cert', CLEARANCE_TRUSTED_PROXIES: '127.0.0.1' } });
  await initTestCa(f.ctx);
  await applyDocument(f.ctx, { certificate_profiles: [deviceProfile, tradingAgentProfile], users: [{ username: 'carol', password, name: 'Carol' }] });
  f.clock.advance(2000);
  const files = scratch(t);
  const issue = async (holder: string, profile = 'managed-device') =>
    (await requestCertificate(f.ctx, { profile, csr: opensslCsr(files, holder).csrPem, holder, requestedBy: 'mdm', requesterType: 'client' })) as IssuedCertificate;
  return { f, issue };
}

/** A password sign-in through the pages, the browser presenting `certificate` (through the trusted proxy), then consent and the code redeemed. */
async function signIn(f: CodeFlowFixture, certificate: string | undefined) {
  const jar = new Jar();
  const { id, verifier } = await startAuthorization(f, jar);
  const page = await get(f, `/interaction/${id}`, jar);
  const headers: Record<string, string> = certificate ? { 'x-client-cert': `:${new X509Certificate(certificate).raw.toString('base64')}:` } : {};
  const signedIn = await post(f, `/interaction/${id}/login`, { csrf_token: csrfOf(page.body), username: 'carol', password }, jar, headers);
  assert.equal(signedIn.statusCode, 303, signedIn.body);
  return approveAndRedeem(f, jar, id, verifier, signedIn);
}

async function lastEvent(f: CodeFlowFixture, type: string): Promise<{ details: Record<string, unknown> }> {
  const row = await f.ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', type).orderBy('seq', 'desc').executeTakeFirstOrThrow();
  return JSON.parse(row.event) as { details: Record<string, unknown> };
}

test('a sign-in from a managed device names the device in its event, session and tokens, and adds no factor', async (t) => {
  const { f, issue } = await harness(t);
  const device = await issue('ws-042');
  const { accessToken, idToken } = await signIn(f, device.certificatePem);
  assert.equal(accessToken.device_id, 'ws-042');
  assert.deepEqual(idToken.amr, ['pwd'], 'a device certificate is never the person’s factor (no hwk)');
  assert.equal((await lastEvent(f, 'user.login_succeeded')).details.device_id, 'ws-042');
  assert.equal((await lastEvent(f, 'token.issued')).details.device_id, 'ws-042');
  const session = await f.ctx.storage.db.selectFrom('sessions').select('device_id').where('ended_at', 'is', null).orderBy('created_at', 'desc').executeTakeFirstOrThrow();
  assert.equal(session.device_id, 'ws-042');
});

test('no certificate, a workload certificate or a revoked device certificate is no managed device', async (t) => {
  const { f, issue } = await harness(t);
  assert.equal((await signIn(f, undefined)).accessToken.device_id, undefined);
  const workload = await issue('algo-7', 'trading-agent');
  assert.equal((await signIn(f, workload.certificatePem)).accessToken.device_id, undefined);
  const device = await issue('ws-043');
  await revokeCertificate(f.ctx, { serial: device.serial, reason: 'affiliationChanged', actor: 'test' });
  assert.equal((await signIn(f, device.certificatePem)).accessToken.device_id, undefined);
});

test('a policy requiring a managed device for trading refuses the same person without one', async (t) => {
  const { f, issue } = await harness(t);
  await applyDocument(f.ctx, {
    policies: [
      {
        version: 'devices-1',
        text: '@id("all") permit (principal, action, resource);\n@id("managed-device-for-trading") forbid (principal is User, action in Action::"trading", resource) unless { context has managed_device && context.managed_device };',
        change_ref: 'CHG-18',
        author: 'alice.author',
        approver: 'bob.approver',
        active: true,
      },
    ],
  });
  const device = await issue('ws-044');
  assert.equal((await signIn(f, device.certificatePem)).accessToken.scope, 'order:create');
  await assert.rejects(signIn(f, undefined), /invalid_scope|managed-device-for-trading/);
});

test('a device certificate is asked for by the enrolling service naming the device, and only for a device profile', async (t) => {
  const { f } = await harness(t);
  const files = scratch(t);
  await f.apply({
    clients: [{ client_id: 'mdm', kind: 'service', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], scope: 'pki:issue:managed-device pki:issue:trading-agent' }],
  });
  const { pkiAudience } = await import('../../src/resource-servers/builtins.ts');
  const token = await f.accessToken('mdm', { resource: pkiAudience(f.issuer), scope: 'pki:issue:managed-device pki:issue:trading-agent' });
  const ask = (body: Record<string, unknown>) => f.inject({ method: 'POST', url: '/pki/certificates', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, payload: JSON.stringify(body) });
  const csr = opensslCsr(files, 'ws').csrPem;
  const issued = await ask({ profile: 'managed-device', holder: 'ws-045', csr });
  assert.equal(issued.statusCode, 201, issued.body);
  assert.equal(issued.json().holder, 'ws-045');
  assert.equal((await ask({ profile: 'managed-device', csr })).statusCode, 400);
  assert.match((await ask({ profile: 'trading-agent', holder: 'someone-else', csr })).json().error_description, /only for a device profile/);
});
