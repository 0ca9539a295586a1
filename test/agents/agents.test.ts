import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { test } from 'node:test';
import { decodeJwt, generateKeyPair } from 'jose';
import { requestCertificate, type IssuedCertificate } from '../../src/pki/issuance.ts';
import { testDialects } from '../helpers/storage.ts';
import { opensslCsr } from '../pki/fixture.ts';
import { agentHarness, v1, v2 } from './fixture.ts';

// Algorithmic agents bound to approved model versions (docs/agents.md): a model version has no
// trading authority until a second person holding model-risk approves it; the agent obtains its
// certificate only with a fresh, nonce-bound, key-bound attestation from its pipeline for an
// approved version; its tokens say which version trades.

async function refusals(h: Awaited<ReturnType<typeof agentHarness>>): Promise<string[]> {
  const rows = await h.ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', 'agent.attestation_refused').orderBy('seq').execute();
  return rows.map((r) => (JSON.parse(r.event) as { details: { reason: string } }).details.reason);
}

for (const dialect of testDialects()) {
  test(`[${dialect.name}] an approved model version gets a certificate and a token naming it; a retrained one is refused until approved`, async (t) => {
    const h = await agentHarness(t, { dialect });
    const first = await h.propose(v1);
    assert.equal(first.binding.status, 'pending');
    // Pending: no trading authority, no certificate.
    const early = await h.attest(v1);
    const refused = await h.certificate(early.attestation, early.csr.csrPem);
    assert.equal(refused.statusCode, 400);
    assert.match(refused.json().error_description, /no trading authority/);
    const approved = await h.decide(first.request.id, 'mrisk');
    assert.ok(approved.ok && approved.settled === 'approved', JSON.stringify(approved));

    const { csr, attestation } = await h.attest(v1);
    const issued = await h.certificate(attestation, csr.csrPem);
    assert.equal(issued.statusCode, 201, issued.body);
    const v1Certificate = issued.json().certificate as string;
    const token = await h.token(v1Certificate);
    assert.equal(token.statusCode, 200, token.body);
    const claims = decodeJwt(token.json().access_token as string);
    assert.deepEqual(claims.agent, { id: 'algo-7', strategy: 'eu-rates-momentum', environment: 'production', model_version: '1.0.0', model_digest: v1.model, approval: first.request.id });

    // Retrained: a new digest has no authority until approved; v1 keeps trading meanwhile.
    const second = await h.propose(v2, true);
    const retrained = await h.attest(v2);
    assert.equal((await h.certificate(retrained.attestation, retrained.csr.csrPem)).statusCode, 400);
    assert.equal((await h.token(v1Certificate)).statusCode, 200);
    assert.ok((await h.decide(second.request.id, 'mrisk')).ok);
    // Approving v2 with retire_previous retired v1: its certificate is revoked at once.
    const afterRetire = await h.token(v1Certificate);
    assert.equal(afterRetire.statusCode, 401, afterRetire.body);
    assert.equal(afterRetire.json().error, 'invalid_client');
    const again = await h.attest(v2);
    const v2Issued = await h.certificate(again.attestation, again.csr.csrPem);
    assert.equal(v2Issued.statusCode, 201, v2Issued.body);
    const v2Token = await h.token(v2Issued.json().certificate as string);
    assert.equal(v2Token.statusCode, 200, v2Token.body);
    assert.equal((decodeJwt(v2Token.json().access_token as string).agent as { model_version: string }).model_version, '2.0.0');
    assert.deepEqual(await refusals(h), ['model_not_approved', 'model_not_approved']);
    const alerts = await h.ctx.storage.db.selectFrom('alerts').select('type').where('type', '=', 'agent.attestation_refused').execute();
    assert.equal(alerts.length, 2);
  });
}

test('every forged, replayed, re-bound or mismatched attestation is refused with its reason, audited and alerted', async (t) => {
  const h = await agentHarness(t);
  const { request } = await h.propose(v1);
  assert.ok((await h.decide(request.id, 'mrisk')).ok);
  const attempt = async (expected: RegExp, make: () => Promise<{ attestation: string; csrPem: string }>) => {
    const { attestation, csrPem } = await make();
    const response = await h.certificate(attestation, csrPem);
    assert.equal(response.statusCode, 400, `${expected}: ${response.body}`);
    assert.equal(response.json().error, 'invalid_request');
    assert.match(response.json().error_description, expected);
    assert.match(String(response.headers['cache-control']), /no-store/);
  };
  const plain = async (overrides: Parameters<typeof h.attest>[1]) => {
    const { csr, attestation } = await h.attest(v1, overrides);
    return { attestation, csrPem: csr.csrPem };
  };
  const forger = await generateKeyPair('ES256');
  await attempt(/not signed by a pipeline/, () => plain({ key: forger.privateKey }));
  await attempt(/or version|not bound/, () => plain({ claims: { image_digest: v2.image } }));
  await attempt(/not bound/, () => plain({ claims: { model_digest: v2.model } }));
  await attempt(/is not the certificate request's key/, () => plain({ jkt: 'A'.repeat(43) }));
  await attempt(/longer than 600/, () => plain({ lifetime: 3600 }));
  await attempt(/key storage software/, () => plain({ claims: { key_storage: 'software' } }));
  await attempt(/typ must be/, () => plain({ header: { typ: 'JWT' } }));
  await attempt(/claims refused/, () => plain({ claims: { sub: 'algo-8' } }));
  // A nonce Clearance never issued, then a replayed one.
  await attempt(/nonce is unknown, used or expired/, () => plain({ claims: { nonce: 'made-up' } }));
  const good = await h.attest(v1);
  assert.equal((await h.certificate(good.attestation, good.csr.csrPem)).statusCode, 201);
  await attempt(/nonce is unknown, used or expired|already/, async () => ({ attestation: good.attestation, csrPem: good.csr.csrPem }));
  // The same attestation re-bound to another key.
  await attempt(/is not the certificate request's key/, async () => ({ attestation: (await h.attest(v1)).attestation, csrPem: opensslCsr(h.files, 'rebound').csrPem }));
  // An expired nonce.
  const stale = await h.attest(v1);
  h.clock.advance(6 * 60_000);
  await attempt(/claims refused|nonce/, async () => ({ attestation: stale.attestation, csrPem: stale.csr.csrPem }));
  const reasons = await refusals(h);
  assert.equal(reasons.length, 12, reasons.join(', '));
  assert.ok(reasons.includes('signature') && reasons.includes('model_unknown') && reasons.includes('key_binding') && reasons.includes('nonce') && reasons.includes('lifetime') && reasons.includes('key_storage'));
  const rows = await h.ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', 'agent.attestation_refused').execute();
  assert.ok(rows.every((r) => !r.event.includes('eyJ')), 'no attestation in the log');
});

test('an attestation issued in the future, or expiring before it was issued, is refused as not fresh: its expiry is minutes from now', async (t) => {
  const h = await agentHarness(t);
  const { request } = await h.propose(v1);
  assert.ok((await h.decide(request.id, 'mrisk')).ok);
  const now = Math.floor(h.clock.now() / 1000);
  const year = 365 * 86400;
  for (const claims of [
    { iat: now + year, exp: now + year + 300 }, // valid for a year and more, "300 s long"
    { iat: now + year, exp: now + 300 }, // exp before iat: a negative lifetime is not "at most 10 minutes"
    { iat: now + 50, exp: now + 40 }, // within the skew, still expiring before it was issued
  ]) {
    const { csr, attestation } = await h.attest(v1, { claims });
    const response = await h.certificate(attestation, csr.csrPem);
    assert.equal(response.statusCode, 400, `${JSON.stringify(claims)}: ${response.body}`);
    assert.match(response.json().error_description, /issued in the future|expires before it was issued/);
  }
  assert.deepEqual(await refusals(h), ['lifetime', 'lifetime', 'lifetime']);
});

test('an attested agent certificate is not renewed over mTLS: a new key needs a new attestation (its storage, its model), refused and audited', async (t) => {
  const h = await agentHarness(t);
  const { request } = await h.propose(v1);
  assert.ok((await h.decide(request.id, 'mrisk')).ok);
  const { csr, attestation } = await h.attest(v1);
  const issued = await h.certificate(attestation, csr.csrPem);
  assert.equal(issued.statusCode, 201, issued.body);
  // A key nobody attested (a software key, say) for the production agent algo-7, on the strength of the old certificate.
  const unattested = opensslCsr(h.files, 'renewal-software-key');
  const renewed = await h.app.inject({
    method: 'POST',
    url: '/pki/certificates/renew',
    headers: { 'content-type': 'application/json', 'x-client-cert': `:${new X509Certificate(issued.json().certificate as string).raw.toString('base64')}:` },
    payload: JSON.stringify({ csr: unattested.csrPem }),
  });
  assert.equal(renewed.statusCode, 400, renewed.body);
  assert.equal(renewed.json().error, 'invalid_request');
  assert.match(renewed.json().error_description, /attestation/);
  const certificates = await h.ctx.storage.db.selectFrom('pki_certificates').select('serial').where('holder', '=', 'algo-7').execute();
  assert.equal(certificates.length, 1, 'no second certificate for algo-7');
  const refused = await h.ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', 'pki.issuance_refused').execute();
  assert.deepEqual(refused.map((r) => JSON.parse(r.event).details.reason), ['agent_certificate']);
});

test('an agent client gets no token with a certificate that no attestation made', async (t) => {
  const h = await agentHarness(t);
  const { csrPem } = opensslCsr(h.files, 'manual');
  const manual = (await requestCertificate(h.ctx, { profile: 'trading-agent', csr: csrPem, holder: 'algo-7', requestedBy: 'operator', requesterType: 'client' })) as IssuedCertificate;
  const response = await h.token(manual.certificatePem);
  assert.equal(response.statusCode, 400, response.body);
  assert.equal(response.json().error, 'unauthorized_client');
  assert.match(response.json().error_description, /workload attestation/);
});

test('the validator never approves their own model version, nor does a person without model-risk', async (t) => {
  const h = await agentHarness(t);
  const { request } = await h.propose(v1);
  const own = await h.decide(request.id, 'val');
  assert.equal(own.ok, false);
  const unqualified = await h.decide(request.id, 'trader');
  assert.equal(unqualified.ok, false);
  const denied = await h.decide(request.id, 'mrisk', 'deny');
  assert.ok(denied.ok && denied.settled === 'denied');
  const status = await h.ctx.storage.db.selectFrom('agent_models').select('status').where('id', '=', String(request.content.model_id)).executeTakeFirstOrThrow();
  assert.equal(status.status, 'denied');
  const { csr, attestation } = await h.attest(v1);
  assert.equal((await h.certificate(attestation, csr.csrPem)).statusCode, 400);
});

test('apply refuses a shared identity, a software key outside development, and unknown pipelines or clients', async (t) => {
  const h = await agentHarness(t);
  const { planApply } = await import('../../src/apply/index.ts');
  const base = { id: 'algo-9', strategy: 'eu-rates-momentum', environment: 'production', owner_lei: '5493001KJTIIGC8Y1R12', desk: 'rates-eu', pipelines: ['ci-main'] };
  const { problems } = await planApply(h.ctx, {
    agents: [
      { ...base, client_id: 'algo-7' },
      { ...base, id: 'algo-10', client_id: 'algo-10', strategy: 'other', key_storage: ['software'] },
      { ...base, id: 'algo-11', client_id: 'nobody', strategy: 'third', pipelines: ['ci-nowhere'] },
    ],
  });
  const text = problems.map((p) => `${p.path}: ${p.message}`).join('\n');
  assert.match(text, /agents\[0\]\.client_id: is agent algo-7's client/);
  assert.match(text, /agents\[0\]\.strategy: agent algo-7 already runs/);
  assert.match(text, /agents\[1\]\.key_storage: may name software only for a development agent/);
  assert.match(text, /agents\[2\]\.client_id: "nobody" is not a client/);
  assert.match(text, /agents\[2\]\.pipelines\[0\]: "ci-nowhere" is not a declared pipeline/);
});

test('a policy sees context.agent: one requiring an approved model passes, one requiring a mandate refuses', async (t) => {
  const h = await agentHarness(t);
  const { request } = await h.propose(v1);
  assert.ok((await h.decide(request.id, 'mrisk')).ok);
  const { csr, attestation } = await h.attest(v1);
  const certificate = (await h.certificate(attestation, csr.csrPem)).json().certificate as string;
  const policy = (version: string, condition: string) => ({
    policies: [{ version, text: `@id("all") permit (principal, action, resource);\n@id("agents") forbid (principal is Agent, action in Action::"trading", resource) unless { ${condition} };`, change_ref: 'CHG-18', author: 'alice.author', approver: 'bob.approver', active: true }],
  });
  const { applyDocument } = await import('../pki/fixture.ts');
  await applyDocument(h.ctx, policy('agents-1', 'context has agent && context.agent.model_approved && context.agent.model_version == "1.0.0" && context.agent.venues.contains("XLON") && context.agent has max_notional && context.agent.max_notional == 5000000'));
  const allowed = await h.token(certificate);
  assert.equal(allowed.statusCode, 200, allowed.body);
  await applyDocument(h.ctx, policy('agents-2', 'context has mandate && context has agent && context.agent.model_approved'));
  const refused = await h.token(certificate);
  assert.equal(refused.statusCode, 400, refused.body);
  assert.equal(refused.json().error, 'invalid_scope');
  assert.match(refused.json().error_description, /agents/);
});
