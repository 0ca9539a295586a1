import assert from 'node:assert/strict';
import { test } from 'node:test';
import { executeApply, planApply } from '../../src/apply/index.ts';
import { X509Crl } from '../../src/pki/x509.ts';
import { applyDocument } from '../pki/fixture.ts';
import { agentHarness, ownerLei, v1 } from './fixture.ts';

// An agent disabled — by apply (its kill switch) or by apply's prune — loses its attested
// certificates in the same transaction (src/agents/revocation.ts): OCSP and the CRL say so to every
// relying party, not only Clearance's own token endpoint (docs/agents.md "Disabling an agent").

type Harness = Awaited<ReturnType<typeof agentHarness>>;

const algo7 = { id: 'algo-7', strategy: 'eu-rates-momentum', environment: 'production', owner_lei: ownerLei, desk: 'rates-eu', venues: ['XLON'], instrument_classes: ['bond'], notional_envelope: { max: 5_000_000, currency: 'EUR' }, pipelines: ['ci-main'] };

/** An approved model version and a certificate attested for it: its PEM and serial. */
async function attestedCertificate(h: Harness): Promise<{ certificate: string; serial: string }> {
  const { request } = await h.propose(v1);
  assert.ok((await h.decide(request.id, 'mrisk')).ok);
  const { csr, attestation } = await h.attest(v1);
  const issued = await h.certificate(attestation, csr.csrPem);
  assert.equal(issued.statusCode, 201, issued.body);
  return { certificate: issued.json().certificate as string, serial: issued.json().serial as string };
}

/** What OCSP (the status cache it answers from) and the published CRL say of `serial`, with the revocation event. */
async function revocationOf(h: Harness, serial: string) {
  const { authority } = await h.ctx.pki.authorities.issuing();
  const status = await h.ctx.pki.status.status(authority.id, serial);
  const published = await h.app.inject({ method: 'GET', url: `/pki/crl/${authority.id}` });
  assert.equal(published.statusCode, 200);
  const entry = new X509Crl(published.rawPayload).entries.find((e) => e.serialNumber.toLowerCase() === serial);
  const events = await h.ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', 'pki.certificate_revoked').execute();
  const event = events.map((r) => JSON.parse(r.event) as { actor: string; subject: string; details: Record<string, unknown> }).find((e) => e.details.serial === serial);
  return { ocsp: status.status === 'revoked' ? status.revocation.reason : status.status, crl: entry?.reason, event };
}

test('disabling an agent by apply revokes its attested certificates (cessationOfOperation): OCSP and the CRL say revoked, and re-enabling it needs a new attestation', async (t) => {
  const h = await agentHarness(t);
  const { certificate, serial } = await attestedCertificate(h);
  h.clock.advance(2000);
  await applyDocument(h.ctx, { agents: [{ ...algo7, status: 'disabled' }] });
  h.clock.advance(2000);
  const revoked = await revocationOf(h, serial);
  // RFC 5280 §5.3.1: cessationOfOperation (5) — no longer needed for its purpose, its key not suspected.
  assert.equal(revoked.ocsp, 5, 'OCSP still answers the disabled agent\'s certificate good');
  assert.equal(revoked.crl, 5, 'the CRL does not list the disabled agent\'s certificate');
  assert.equal(revoked.event?.actor, 'test');
  assert.equal(revoked.event?.subject, 'algo-7');
  assert.equal(revoked.event?.details.reason, 'cessationOfOperation');

  // Enabled again, the agent's old certificate does not come back: mTLS refuses it (RFC 8705 §2.1.2).
  await applyDocument(h.ctx, { agents: [{ ...algo7, status: 'active' }] });
  h.clock.advance(2000);
  const old = await h.token(certificate);
  assert.equal(old.statusCode, 401, old.body);
  assert.equal(old.json().error, 'invalid_client');
  const { csr, attestation } = await h.attest(v1);
  const fresh = await h.certificate(attestation, csr.csrPem);
  assert.equal(fresh.statusCode, 201, fresh.body);
  assert.equal((await h.token(fresh.json().certificate as string)).statusCode, 200);
});

test("apply's prune disabling an agent revokes its attested certificates in the same transaction", async (t) => {
  const h = await agentHarness(t);
  const { serial } = await attestedCertificate(h);
  h.clock.advance(2000);
  // A document authoritative for agents that no longer declares algo-7.
  const { plan, problems } = await planApply(h.ctx, { agents: [] });
  assert.ok(plan, JSON.stringify(problems));
  await executeApply(h.ctx, plan, { actor: 'ci-apply', via: 'cli' }, { prune: true, force: true });
  h.clock.advance(2000);
  assert.equal((await h.ctx.agents.snapshot()).agents.get('algo-7')?.status, 'disabled');
  const revoked = await revocationOf(h, serial);
  assert.equal(revoked.ocsp, 5, 'OCSP still answers the pruned agent\'s certificate good');
  assert.equal(revoked.crl, 5, 'the CRL does not list the pruned agent\'s certificate');
  assert.equal(revoked.event?.actor, 'ci-apply');
});

test('an apply that leaves a disabled agent disabled revokes its certificates once', async (t) => {
  const h = await agentHarness(t);
  const { serial } = await attestedCertificate(h);
  await applyDocument(h.ctx, { agents: [{ ...algo7, status: 'disabled' }] });
  await applyDocument(h.ctx, { agents: [{ ...algo7, status: 'disabled' }] });
  const events = await h.ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', 'pki.certificate_revoked').execute();
  assert.deepEqual(events.map((r) => JSON.parse(r.event).details.serial), [serial]);
});
