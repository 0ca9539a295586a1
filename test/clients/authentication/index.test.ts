import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { describe, test, type TestContext } from 'node:test';
import type { AgentDefinition } from '../../../src/agents/definition.ts';
import type { AgentSnapshot } from '../../../src/agents/registry.ts';
import { authenticateClient, claimedClientId, type AuthDeps } from '../../../src/clients/authentication/index.ts';
import type { CertificateProfile } from '../../../src/pki/profiles.ts';
import { MemoryAuthFailureThrottle } from '../../../src/clients/authentication/throttle.ts';
import { FormParameters } from '../../../src/parameters.ts';
import {
  assertionBody,
  assertionClaims,
  basic,
  harness,
  keyPair,
  makeCertificate,
  rejectsWith,
  request,
  signAssertion,
  type Harness,
  type KeyPair,
} from './fixture.ts';
import { agentHarness, ownerLei, v1 } from '../../agents/fixture.ts';
import { applyDocument, tradingAgentProfile } from '../../pki/fixture.ts';

interface Setup {
  h: Harness;
  /** client_secret_basic client "risk-service" and its secret. */
  secret: string;
  /** client_secret_post client "ops-service" and its secret. */
  postSecret: string;
  /** private_key_jwt client "oms-service" and its key. */
  key: KeyPair;
}

async function setup(t: TestContext): Promise<Setup> {
  const h = await harness(t);
  const secret = (await h.register({ client_id: 'risk-service', token_endpoint_auth_method: 'client_secret_basic' }))!;
  const postSecret = (await h.register({ client_id: 'ops-service', token_endpoint_auth_method: 'client_secret_post' }))!;
  const key = keyPair('ES256');
  await h.register({ client_id: 'oms-service', token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [key.jwk] } });
  await h.register({
    client_id: 'trader-app',
    kind: 'app',
    token_endpoint_auth_method: 'none',
    grant_types: ['authorization_code'],
    redirect_uris: ['https://trader.example.com/cb'],
  });
  return { h, secret, postSecret, key };
}

describe('authenticateClient: one method per request', () => {
  test('rejects a request with no client authentication', async (t) => {
    const { h } = await setup(t);
    await rejectsWith(h.authenticate({ body: {} }), { detail: /no client authentication and no client_id/, description: /client authentication is required/ });
  });

  test('rejects a client_id alone for a confidential client', async (t) => {
    const { h } = await setup(t);
    await rejectsWith(h.authenticate({ body: { client_id: 'risk-service' } }), { detail: /sent only client_id but is registered for client_secret_basic/ });
    await rejectsWith(h.authenticate({ body: { client_id: 'oms-service' } }), { detail: /sent only client_id but is registered for private_key_jwt/ });
  });

  test('rejects double auth: a Basic header and client_secret in the body', async (t) => {
    const { h, secret } = await setup(t);
    await rejectsWith(h.authenticate({ authorization: basic('risk-service', secret), body: { client_id: 'risk-service', client_secret: secret } }), {
      detail: /more than one client authentication method: client_secret_basic, client_secret_post/,
    });
  });

  test('rejects double auth: a Basic header and a client assertion', async (t) => {
    const { h, secret, key } = await setup(t);
    const body = assertionBody(signAssertion(key, assertionClaims('oms-service', h.clock)));
    await rejectsWith(h.authenticate({ authorization: basic('risk-service', secret), body }), {
      detail: /more than one client authentication method: client_secret_basic, private_key_jwt/,
    });
  });

  test('rejects double auth: client_secret and a client assertion in the body', async (t) => {
    const { h, postSecret, key } = await setup(t);
    const body = assertionBody(signAssertion(key, assertionClaims('oms-service', h.clock)), { client_secret: postSecret });
    await rejectsWith(h.authenticate({ body }), { detail: /more than one client authentication method: client_secret_post, private_key_jwt/ });
  });

  test('rejects a client authentication parameter sent twice', async (t) => {
    const { h, postSecret } = await setup(t);
    const form = new FormParameters(`grant_type=client_credentials&client_id=ops-service&client_id=risk-service&client_secret=${postSecret}`);
    await rejectsWith(h.authenticate({ form }), { error: 'invalid_request', status: 400, detail: /repeated client authentication parameters: client_id/ });
  });
});

describe('authenticateClient: the client_id and the credentials name one client', () => {
  test("rejects client B's id in the body with A's Basic credentials", async (t) => {
    const { h, secret } = await setup(t);
    const error = await rejectsWith(h.authenticate({ authorization: basic('risk-service', secret), body: { client_id: 'ops-service' } }), {
      detail: /client_id "ops-service" in the body differs from "risk-service" authenticated by client_secret_basic/,
    });
    assert.equal(error.headers['www-authenticate'], 'Basic realm="clearance"');
  });

  test("rejects client B's id in the body with A's client assertion", async (t) => {
    const { h, key } = await setup(t);
    const body = assertionBody(signAssertion(key, assertionClaims('oms-service', h.clock)), { client_id: 'risk-service' });
    await rejectsWith(h.authenticate({ body }), { detail: /client_id "risk-service" in the body differs from "oms-service"/ });
  });

  test('rejects an unknown client_id', async (t) => {
    const { h } = await setup(t);
    await rejectsWith(h.authenticate({ body: { client_id: 'ghost', client_secret: 'x' } }), { detail: /unknown client "ghost"/ });
  });

  test('rejects an overlong client_id as unknown without looking it up', async (t) => {
    const { h } = await setup(t);
    let lookups = 0;
    const clients = { get: async (id: string) => (lookups++, h.clients.get(id)) };
    await rejectsWith(authenticateClient(request({ body: { client_id: 'c'.repeat(5000), client_secret: 'x' } }), { ...h.deps, clients }), {
      detail: /unknown client/,
    });
    assert.equal(lookups, 0);
  });
});

describe('authenticateClient: the registered method', () => {
  test('rejects a private_key_jwt client that sends a client secret', async (t) => {
    const { h } = await setup(t);
    await rejectsWith(h.authenticate({ body: { client_id: 'oms-service', client_secret: 'guess' } }), {
      detail: /used client_secret_post but is registered for private_key_jwt/,
    });
  });

  test('rejects a secret client that sends a client assertion', async (t) => {
    const { h } = await setup(t);
    const attackerKey = keyPair('ES256');
    await rejectsWith(h.authenticate({ body: assertionBody(signAssertion(attackerKey, assertionClaims('risk-service', h.clock))) }), {
      detail: /used private_key_jwt but is registered for client_secret_basic/,
    });
  });

  test('authenticates a public client by client_id when the caller allows public clients', async (t) => {
    const { h } = await setup(t);
    const result = await h.authenticate({ body: { client_id: 'trader-app' }, allowPublic: true });
    assert.equal(result.method, 'none');
    assert.equal(result.client.metadata.client_id, 'trader-app');
  });

  test('rejects a public client where the caller does not allow public clients', async (t) => {
    const { h } = await setup(t);
    await rejectsWith(h.authenticate({ body: { client_id: 'trader-app' } }), { detail: /public client trader-app cannot authenticate here/ });
  });

  test('rejects a public client that sends a secret', async (t) => {
    const { h } = await setup(t);
    await rejectsWith(h.authenticate({ body: { client_id: 'trader-app', client_secret: 'x' }, allowPublic: true }), {
      detail: /used client_secret_post but is registered for none/,
    });
  });

  test('returns the certificate thumbprint for a secret client that presents a certificate', async (t) => {
    const { h, secret } = await setup(t);
    const { certificate } = makeCertificate({ subject: '/CN=risk-service' });
    const result = await h.authenticate({ authorization: basic('risk-service', secret), certificate });
    assert.equal(result.certificateThumbprint, Buffer.from(certificate.fingerprint256.replaceAll(':', ''), 'hex').toString('base64url'));
  });
});

describe('authenticateClient: failures', () => {
  test('passes errors that are not authentication failures through, without counting them', async (t) => {
    const { h, secret } = await setup(t);
    const throttle = new MemoryAuthFailureThrottle(h.clock, { perAddress: { max: 1, windowMs: 60_000 } });
    const clients = {
      get: async () => {
        throw new Error('database is down');
      },
    };
    const deps = { ...h.deps, clients, throttle };
    await assert.rejects(authenticateClient(request({ authorization: basic('risk-service', secret) }), deps), /database is down/);
    assert.equal(await throttle.check({ address: '192.0.2.10', secret: false }), undefined);
  });

  test('gives every failure a detail and never puts the secret in it', async (t) => {
    const { h } = await setup(t);
    const secretGuess = 'guessed-secret-value-1234';
    const error = await rejectsWith(h.authenticate({ authorization: basic('risk-service', secretGuess) }), { detail: /wrong secret/ });
    assert.ok(!error.detail!.includes(secretGuess));
    assert.ok(!error.description!.includes(secretGuess));
  });
});

describe('claimedClientId', () => {
  test('names the client a failed request claimed, from whichever credential it carried', async (t) => {
    const { h, key } = await setup(t);
    assert.equal(claimedClientId(request({ authorization: basic('risk-service', 'wrong') })), 'risk-service');
    assert.equal(claimedClientId(request({ body: { client_id: 'ops-service', client_secret: 'wrong' } })), 'ops-service');
    assert.equal(claimedClientId(request({ body: assertionBody(signAssertion(key, assertionClaims('oms-service', h.clock))) })), 'oms-service');
    assert.equal(claimedClientId(request({ authorization: 'Basic ***', body: { client_id: 'trader-app' } })), 'trader-app');
    assert.equal(claimedClientId(request({ body: {} })), undefined);
    assert.equal(claimedClientId(request({ body: { client_id: 'x'.repeat(200) } })), undefined);
  });
});

describe("tls_client_auth with an agent's certificate of Clearance's CA", () => {
  /** certificateTrust answering that the presented certificate is one of Clearance's CA (a workload profile) issued to `holder`. */
  function ownCertificate(holder: string): Pick<AuthDeps, 'certificateTrust'> {
    const profile = { ...tradingAgentProfile, kind: 'workload' } as unknown as CertificateProfile;
    return { certificateTrust: async () => ({ ours: true, ok: true, certificate: { serial: '0a', profile, holder, authorityId: 'ca' } }) };
  }
  /** A registry with agent algo-x (client algo-x) and agent y-agent (client algo-y). */
  const agents: AuthDeps['agents'] = {
    snapshot: async () =>
      ({ byClient: new Map([['algo-x', { id: 'algo-x', client_id: 'algo-x' }], ['algo-y', { id: 'y-agent', client_id: 'algo-y' }]] as [string, AgentDefinition][]) }) as unknown as AgentSnapshot,
  };
  /** The SAN of algo-x's certificates, which each of these clients registered. */
  const san = 'spiffe://broker.example/agent/algo-x';

  async function setupAgents(t: TestContext) {
    const h = await harness(t);
    for (const id of ['algo-x', 'algo-y', 'algo-z']) {
      await h.register({ client_id: id, kind: 'agent', token_endpoint_auth_method: 'tls_client_auth', tls_client_auth_san_uri: san });
    }
    const { certificate } = makeCertificate({ subject: '/CN=algo-x', san: `URI:${san}` });
    const as = (clientId: string, holder: string, registry: AuthDeps['agents'] | null = agents) =>
      authenticateClient(request({ body: { client_id: clientId }, certificate, certificateChainVerified: true }), { ...h.deps, ...ownCertificate(holder), ...(registry ? { agents: registry } : {}) });
    return { as };
  }

  test('refuses the certificate of one agent for the client of another agent that registered its SAN', async (t) => {
    const { as } = await setupAgents(t);
    await rejectsWith(as('algo-y', 'algo-x'), { detail: /client algo-y presented certificate 0a of Clearance's CA, which was issued to "algo-x", not to its agent "y-agent"/ });
  });

  test("authenticates an agent's client with a certificate issued to its agent, whose id may differ from the client's", async (t) => {
    const { as } = await setupAgents(t);
    assert.equal((await as('algo-x', 'algo-x')).client.metadata.client_id, 'algo-x');
    assert.equal((await as('algo-y', 'y-agent')).client.metadata.client_id, 'algo-y');
  });

  test('holds a client of kind agent that no agent uses, or one checked without the registry, to a certificate issued to its own id', async (t) => {
    const { as } = await setupAgents(t);
    assert.equal((await as('algo-z', 'algo-z')).client.metadata.client_id, 'algo-z');
    await rejectsWith(as('algo-z', 'algo-x'), { detail: /client algo-z presented certificate 0a of Clearance's CA, which was issued to "algo-x"/ });
    await rejectsWith(as('algo-y', 'y-agent', null), { detail: /which was issued to "y-agent"/ });
  });
});

describe("tls_client_auth with an agent's certificate, over HTTP", () => {
  test("refuses agent X's attested certificate as the client of agent Y that registered X's SAN, at introspection, revocation and the token endpoint", async (t) => {
    const h = await agentHarness(t);
    // Agent algo-8's client registered the SAN of algo-7's certificates.
    await applyDocument(h.ctx, {
      clients: [
        { client_id: 'algo-8', kind: 'agent', owner_lei: ownerLei, token_endpoint_auth_method: 'tls_client_auth', tls_client_auth_san_uri: 'spiffe://broker.example/agent/algo-7', grant_types: ['client_credentials'], scope: 'order:create' },
      ],
      agents: [{ id: 'algo-8', strategy: 'eu-rates-carry', environment: 'production', owner_lei: ownerLei, desk: 'rates-eu', venues: ['XLON'], instrument_classes: ['bond'], pipelines: ['ci-main'] }],
    });
    h.clock.advance(2000);
    const proposed = await h.propose(v1);
    assert.ok((await h.decide(proposed.request.id, 'mrisk')).ok);
    const { csr, attestation } = await h.attest(v1);
    const issued = await h.certificate(attestation, csr.csrPem);
    assert.equal(issued.statusCode, 201, issued.body);
    const algo7Certificate = new X509Certificate(issued.json().certificate as string);
    const post = (url: string, clientId: string, body: string) =>
      h.app.inject({
        method: 'POST',
        url,
        headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-client-cert': `:${algo7Certificate.raw.toString('base64')}:` },
        payload: `client_id=${clientId}&${body}`,
      });
    // Its own client: the certificate authenticates.
    assert.equal((await post('/introspect', 'algo-7', 'token=not-a-token')).statusCode, 200);
    for (const [url, body] of [
      ['/introspect', 'token=not-a-token'],
      ['/revoke', 'token=not-a-token'],
      ['/token', 'grant_type=client_credentials&scope=order%3Acreate'],
    ] as const) {
      const refused = await post(url, 'algo-8', body);
      assert.equal(refused.statusCode, 401, `${url}: ${refused.body}`);
      assert.equal(refused.json().error, 'invalid_client', url);
      assert.equal(refused.headers['cache-control'], 'no-store', url);
    }
    const failures = await h.ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', 'client.auth_failed').execute();
    const reasons = failures.map((row) => (JSON.parse(row.event) as { decision: { reasons: string[] } }).decision.reasons[0]);
    assert.equal(reasons.length, 3);
    for (const reason of reasons) assert.match(reason!, /issued to "algo-7", not to its agent "algo-8"/);
  });
});
