import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { test } from 'node:test';
import { applyDocument } from '../pki/fixture.ts';
import { agentHarness, ownerLei, v1, v2 } from './fixture.ts';

// An agent's live tokens end with its authority (docs/agents.md "Tokens"): introspection, token
// exchange and Clearance's own resources ask src/tokens/liveness.ts, which asks the agent registry.

type Harness = Awaited<ReturnType<typeof agentHarness>>;

const algo7 = { id: 'algo-7', strategy: 'eu-rates-momentum', environment: 'production', owner_lei: ownerLei, desk: 'rates-eu', venues: ['XLON'], instrument_classes: ['bond'], notional_envelope: { max: 5_000_000, currency: 'EUR' }, pipelines: ['ci-main'] };

/** An approved model version, an attested certificate for it and a token issued with that certificate. */
async function tradingWith(h: Harness, model: typeof v1, retirePrevious = false): Promise<{ certificate: string; token: string }> {
  const { request } = await h.propose(model, retirePrevious);
  assert.ok((await h.decide(request.id, 'mrisk')).ok);
  const { csr, attestation } = await h.attest(model);
  const issued = await h.certificate(attestation, csr.csrPem);
  assert.equal(issued.statusCode, 201, issued.body);
  const certificate = issued.json().certificate as string;
  const token = await h.token(certificate);
  assert.equal(token.statusCode, 200, token.body);
  return { certificate, token: token.json().access_token as string };
}

/** RFC 7662 introspection by the agent itself, authenticated with `certificate`. */
async function introspect(h: Harness, certificate: string, token: string): Promise<Record<string, unknown>> {
  const response = await h.app.inject({
    method: 'POST',
    url: '/introspect',
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-client-cert': `:${new X509Certificate(certificate).raw.toString('base64')}:` },
    payload: `client_id=algo-7&token=${encodeURIComponent(token)}`,
  });
  assert.equal(response.statusCode, 200, response.body);
  return response.json() as Record<string, unknown>;
}

test("a token issued for a model version that was retired since is inactive at introspection: the version's trading authority is gone at once", async (t) => {
  const h = await agentHarness(t);
  const first = await tradingWith(h, v1);
  h.clock.advance(2000);
  // v2 is approved with retire_previous: v1 has no authority from this moment.
  const second = await tradingWith(h, v2, true);
  assert.equal((await introspect(h, second.certificate, second.token)).active, true);
  assert.equal((await introspect(h, second.certificate, first.token)).active, false, 'the v1 token outlived the retirement of v1');
});

test('a token issued before its agent was disabled stays dead when the agent is enabled again', async (t) => {
  const h = await agentHarness(t);
  const { certificate, token } = await tradingWith(h, v1);
  h.clock.advance(2000);
  await applyDocument(h.ctx, { agents: [{ ...algo7, status: 'disabled' }] });
  h.clock.advance(2000);
  await applyDocument(h.ctx, { agents: [{ ...algo7, status: 'active' }] });
  h.clock.advance(2000);
  // The agent trades again with new tokens; the one from before the kill switch does not come back.
  const fresh = await h.token(certificate);
  assert.equal(fresh.statusCode, 200, fresh.body);
  assert.equal((await introspect(h, certificate, fresh.json().access_token as string)).active, true);
  assert.equal((await introspect(h, certificate, token)).active, false, 'a token from before the agent was disabled is live again');
});
