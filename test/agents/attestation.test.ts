import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';
import { decodeJwt } from 'jose';
import { testDialects } from '../helpers/storage.ts';
import { agentHarness, v1, v2 } from './fixture.ts';

// Workload attestation (docs/agents.md "Attestation", src/agents/attestation.ts).

type Harness = Awaited<ReturnType<typeof agentHarness>>;

async function approve(h: Harness, model: typeof v1, retirePrevious = false): Promise<string> {
  const { request } = await h.propose(model, retirePrevious);
  assert.ok((await h.decide(request.id, 'mrisk')).ok);
  return request.id;
}

async function refusals(h: Harness): Promise<string[]> {
  const rows = await h.ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', 'agent.attestation_refused').orderBy('seq').execute();
  return rows.map((r) => (JSON.parse(r.event) as { details: { reason: string } }).details.reason);
}

for (const dialect of testDialects()) {
  test(`[${dialect.name}] a model version approved again after it was retired (a rollback) is attested under its new approval`, async (t) => {
    const h = await agentHarness(t, { dialect });
    await approve(h, v1);
    await approve(h, v2, true);
    // v2 misbehaves: the firm rolls back to the very same v1 artifact, validated and approved anew.
    const rollback = await approve(h, v1, true);
    const { csr, attestation } = await h.attest(v1);
    const issued = await h.certificate(attestation, csr.csrPem);
    assert.equal(issued.statusCode, 201, issued.body);
    const token = await h.token(issued.json().certificate as string);
    assert.equal(token.statusCode, 200, token.body);
    assert.equal((decodeJwt(token.json().access_token as string).agent as { approval: string }).approval, rollback);
  });

  test(`[${dialect.name}] a model version proposed again after a denial is attested once approved`, async (t) => {
    const h = await agentHarness(t, { dialect });
    const { request } = await h.propose(v1);
    assert.ok((await h.decide(request.id, 'mrisk', 'deny')).ok);
    await approve(h, v1);
    const { csr, attestation } = await h.attest(v1);
    const issued = await h.certificate(attestation, csr.csrPem);
    assert.equal(issued.statusCode, 201, issued.body);
  });
}

test('an attestation whose jti was used before is refused as replayed with 400, not a server error, audited and alerted', async (t) => {
  const h = await agentHarness(t);
  await approve(h, v1);
  const jti = randomUUID();
  const first = await h.attest(v1, { claims: { jti } });
  assert.equal((await h.certificate(first.attestation, first.csr.csrPem)).statusCode, 201);
  // Fresh nonce, fresh key, the same attestation id: a pipeline (or whoever holds its key) replaying.
  const second = await h.attest(v1, { claims: { jti } });
  const response = await h.certificate(second.attestation, second.csr.csrPem);
  assert.equal(response.statusCode, 400, response.body);
  assert.equal(response.json().error, 'invalid_request');
  assert.match(response.json().error_description, /jti .*used/);
  assert.match(String(response.headers['cache-control']), /no-store/);
  assert.deepEqual(await refusals(h), ['replay']);
  const certificates = await h.ctx.storage.db.selectFrom('agent_credentials').select('serial').execute();
  assert.equal(certificates.length, 1);
});

test('of two certificate requests racing with the same attestation jti, one is issued and the other refused as replayed, never a server error', async (t) => {
  const h = await agentHarness(t);
  await approve(h, v1);
  const jti = randomUUID();
  const racing = [await h.attest(v1, { claims: { jti } }), await h.attest(v1, { claims: { jti } })];
  const responses = await Promise.all(racing.map((r) => h.certificate(r.attestation, r.csr.csrPem)));
  assert.deepEqual(responses.map((r) => r.statusCode).sort(), [201, 400], responses.map((r) => r.body).join('\n'));
  assert.match(responses.find((r) => r.statusCode === 400)!.json().error_description, /jti .*used/);
  assert.deepEqual(await refusals(h), ['replay']);
});

test('nonces nobody answered are deleted once expired: asking for nonces, which needs no credential, does not grow the store without end', async (t) => {
  const h = await agentHarness(t);
  for (let i = 0; i < 5; i++) await h.nonce();
  h.clock.advance(11 * 60_000);
  const kept = await h.nonce();
  const rows = await h.ctx.storage.db.selectFrom('agent_nonces').select('expires_at').execute();
  assert.equal(rows.length, 1, `${rows.length} nonces kept, 5 of them expired`);
  // The one kept still works.
  await approve(h, v1);
  const { csr, attestation } = await h.attest(v1);
  assert.equal((await h.certificate(attestation, csr.csrPem)).statusCode, 201);
  assert.ok(kept.length > 0);
});

test('an attestation addressed to several audiences, this issuer among them, is refused: an attestation is for this issuer only', async (t) => {
  const h = await agentHarness(t);
  await approve(h, v1);
  // RFC 7519 §4.1.3 lets `aud` be an array: one naming another relying party too could be presented there as well.
  const shared = await h.attest(v1, { claims: { aud: [h.ctx.config.issuer, 'https://other-ca.example.com'] } });
  const response = await h.certificate(shared.attestation, shared.csr.csrPem);
  assert.equal(response.statusCode, 400, response.body);
  assert.equal(response.json().error, 'invalid_request');
  assert.match(response.json().error_description, /audience/);
  assert.deepEqual(await refusals(h), ['claims']);
  // A single audience, as a string or a one-member array, is this issuer's.
  const single = await h.attest(v1, { claims: { aud: [h.ctx.config.issuer] } });
  assert.equal((await h.certificate(single.attestation, single.csr.csrPem)).statusCode, 201);
});
