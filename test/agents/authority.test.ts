import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { test } from 'node:test';
import { decodeJwt } from 'jose';
import { agentReferences, areAgentsLive } from '../../src/agents/authority.ts';
import { basicAuthorization, formBody } from '../endpoints/fixture.ts';
import { applyDocument } from '../pki/fixture.ts';
import { applyDocument as applyWithSecrets } from '../policy/fixture.ts';
import { agentHarness, executionApi, ownerLei, v1, v2 } from './fixture.ts';

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
  const { token } = await tradingWith(h, v1);
  h.clock.advance(2000);
  await applyDocument(h.ctx, { agents: [{ ...algo7, status: 'disabled' }] });
  h.clock.advance(2000);
  await applyDocument(h.ctx, { agents: [{ ...algo7, status: 'active' }] });
  h.clock.advance(2000);
  // The agent trades again with a new attested certificate (the kill switch revoked the old one,
  // test/agents/revocation.test.ts) and new tokens; the one from before the kill switch does not come back.
  const { csr, attestation } = await h.attest(v1);
  const reattested = await h.certificate(attestation, csr.csrPem);
  assert.equal(reattested.statusCode, 201, reattested.body);
  const renewed = reattested.json().certificate as string;
  const fresh = await h.token(renewed);
  assert.equal(fresh.statusCode, 200, fresh.body);
  assert.equal((await introspect(h, renewed, fresh.json().access_token as string)).active, true);
  assert.equal((await introspect(h, renewed, token)).active, false, 'a token from before the agent was disabled is live again');
});

const clearingApi = 'https://clearing.example.com/api';
const exchangeGrant = 'urn:ietf:params:oauth:grant-type:token-exchange';
const accessTokenType = 'urn:ietf:params:oauth:token-type:access_token';

/**
 * A gateway in front of the agent — another client, holding the agent's key — that may exchange
 * the agent's tokens for the execution API (its `exchange_clients`) and a clearing API to go to.
 */
async function withGateway(h: Harness): Promise<{ secret: string; certificateHeader: (certificate: string) => Record<string, string> }> {
  const secrets = await applyWithSecrets(h.ctx, {
    resource_servers: [
      { identifier: executionApi, scopes: ['order:create'], require_sender_constraint: true, exchange_clients: ['gateway'] },
      { identifier: clearingApi, scopes: ['order:create'] },
    ],
    clients: [{ client_id: 'gateway', kind: 'service', grant_types: [exchangeGrant], scope: 'order:create' }],
  });
  return { secret: secrets.gateway!, certificateHeader: (certificate) => ({ 'x-client-cert': `:${new X509Certificate(certificate).raw.toString('base64')}:` }) };
}

test("a token exchanged from an agent's token, at every hop, is inactive once the agent is disabled: it stays bound to the agent's liveness", async (t) => {
  const h = await agentHarness(t);
  const { certificate, token } = await tradingWith(h, v1);
  const gateway = await withGateway(h);
  // The subject token is bound to the agent's certificate (RFC 8705): the gateway proves it holds its key.
  const exchange = async (subjectToken: string, resource: string) => {
    const response = await h.app.inject({
      method: 'POST',
      url: '/token',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuthorization('gateway', gateway.secret), ...gateway.certificateHeader(certificate) },
      payload: formBody({ grant_type: exchangeGrant, subject_token: subjectToken, subject_token_type: accessTokenType, resource }),
    });
    assert.equal(response.statusCode, 200, response.body);
    return response.json().access_token as string;
  };
  const introspectAsGateway = async (exchanged: string) => {
    const response = await h.app.inject({
      method: 'POST',
      url: '/introspect',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuthorization('gateway', gateway.secret) },
      payload: formBody({ token: exchanged }),
    });
    assert.equal(response.statusCode, 200, response.body);
    return (response.json() as { active: boolean }).active;
  };
  const toClearing = await exchange(token, clearingApi);
  const backToExecution = await exchange(toClearing, executionApi);
  assert.equal(await introspectAsGateway(toClearing), true);
  assert.equal(await introspectAsGateway(backToExecution), true);

  h.clock.advance(2000);
  await applyDocument(h.ctx, { agents: [{ ...algo7, status: 'disabled' }] });
  h.clock.advance(2000);
  assert.equal(await introspectAsGateway(toClearing), false, 'a token exchanged from the agent\'s token outlived its kill switch');
  assert.equal(await introspectAsGateway(backToExecution), false, 'a token two hops from the agent\'s token outlived its kill switch');
  // What binds them: the agent and its model version's approval, carried down every hop.
  const approval = (decodeJwt(token).agent as { approval: string }).approval;
  assert.deepEqual(decodeJwt(toClearing).agents, [{ id: 'algo-7', approval }]);
  assert.deepEqual(decodeJwt(backToExecution).agents, [{ id: 'algo-7', approval }]);
});

test("a token exchanged from an agent's token is inactive once the model version it was attested for is retired", async (t) => {
  const h = await agentHarness(t);
  const first = await tradingWith(h, v1);
  const gateway = await withGateway(h);
  const response = await h.app.inject({
    method: 'POST',
    url: '/token',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuthorization('gateway', gateway.secret), ...gateway.certificateHeader(first.certificate) },
    payload: formBody({ grant_type: exchangeGrant, subject_token: first.token, subject_token_type: accessTokenType, resource: clearingApi }),
  });
  assert.equal(response.statusCode, 200, response.body);
  const exchanged = response.json().access_token as string;
  h.clock.advance(2000);
  const second = await tradingWith(h, v2, true);
  assert.equal((await introspect(h, second.certificate, second.token)).active, true);
  const view = await h.app.inject({
    method: 'POST',
    url: '/introspect',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuthorization('gateway', gateway.secret) },
    payload: formBody({ token: exchanged }),
  });
  assert.equal(view.json().active, false, 'a token exchanged from a v1 token outlived the retirement of v1');
});

test("an exchanged token's agents are the subject's and the actor's, with their earlier hops', once each", () => {
  const agent = { id: 'algo-7', strategy: 's', environment: 'production', model_version: '1.0.0', model_digest: 'sha256:x', approval: 'a-1' };
  const references = agentReferences([{ agent, agents: [{ id: 'algo-9', approval: 'a-9' }] }, { agents: [{ id: 'algo-7', approval: 'a-1' }, { id: 'algo-8', approval: 'a-8' }] }, undefined]);
  assert.deepEqual(references, [{ id: 'algo-7', approval: 'a-1' }, { id: 'algo-9', approval: 'a-9' }, { id: 'algo-8', approval: 'a-8' }]);
  assert.deepEqual(agentReferences([{}, undefined]), []);
});

test('a token whose agents claim is malformed, or names an agent or approval the registry does not know, is not live', async (t) => {
  const h = await agentHarness(t);
  const { token } = await tradingWith(h, v1);
  const approval = (decodeJwt(token).agent as { approval: string }).approval;
  const issuedAt = h.clock.now() + 1000;
  h.clock.advance(2000);
  const live = (agents: unknown) => areAgentsLive(h.ctx, { agents } as Parameters<typeof areAgentsLive>[1], issuedAt);
  assert.equal(await live([{ id: 'algo-7', approval }]), true);
  for (const agents of ['algo-7', [{ id: 'algo-7' }], [null], [{ id: 'algo-8', approval }], [{ id: 'algo-7', approval: 'another' }]]) {
    assert.equal(await live(agents), false, JSON.stringify(agents));
  }
});
