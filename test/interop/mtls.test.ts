import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import * as client from 'openid-client';
import { decodeJwt } from 'jose';
import { Agent } from 'undici';
import { makePki, type Pem, type Pki } from '../helpers/pki.ts';
import { startTestServer } from '../helpers/server.ts';

// openid-client v6 authenticating with tls_client_auth over a real TLS connection (RFC 8705):
// its requests go through an undici Agent that presents the client certificate.

const settlementApi = 'https://settlement.example.com/api';

/** openid-client's fetch, sending every request with `certificate` (or none) and trusting the test CA. */
function fetchPresenting(pki: Pki, certificate?: Pem): client.CustomFetch {
  const dispatcher = new Agent({ connect: { ca: pki.ca.cert, ...(certificate ? { cert: certificate.cert, key: certificate.key } : {}) } });
  return (url, options) => fetch(url, { ...options, dispatcher } as RequestInit);
}

async function setUp(t: TestContext) {
  const pki = makePki(t);
  const server = await startTestServer({
    t,
    env: { CLEARANCE_TLS_CERT: pki.server.certFile, CLEARANCE_TLS_KEY: pki.server.keyFile, CLEARANCE_TLS_CLIENT_CA: pki.ca.certFile },
  });
  await server.apply({
    resource_servers: [{ identifier: settlementApi, scopes: ['settlement:submit'], require_sender_constraint: true }],
    clients: [
      {
        client_id: 'settlement-gateway',
        token_endpoint_auth_method: 'tls_client_auth',
        tls_client_auth_subject_dn: 'CN=settlement-gateway,O=Clearing House,C=GB',
        grant_types: ['client_credentials'],
        scope: 'settlement:submit',
      },
    ],
  });
  return { pki, server };
}

async function configure(issuer: string, fetchImpl: client.CustomFetch): Promise<client.Configuration> {
  return client.discovery(new URL(issuer), 'settlement-gateway', undefined, client.TlsClientAuth(), { [client.customFetch]: fetchImpl });
}

test('openid-client gets a certificate-bound token with tls_client_auth and introspects it over mTLS', async (t) => {
  const { pki, server } = await setUp(t);
  const certificate = pki.issueClient('gateway', '/C=GB/O=Clearing House/CN=settlement-gateway');
  const config = await configure(server.issuer, fetchPresenting(pki, certificate));
  const tokens = await client.clientCredentialsGrant(config, { scope: 'settlement:submit', resource: settlementApi });
  assert.deepEqual(decodeJwt(tokens.access_token).cnf, { 'x5t#S256': certificate.thumbprint });
  const introspection = await client.tokenIntrospection(config, tokens.access_token);
  assert.equal(introspection.active, true);
  assert.deepEqual(introspection.cnf, { 'x5t#S256': certificate.thumbprint });
});

test('openid-client is refused with a certificate of another subject, a self-signed one, or none', async (t) => {
  const { pki, server } = await setUp(t);
  for (const certificate of [
    pki.issueClient('other', '/C=GB/O=Clearing House/CN=someone-else'),
    pki.selfSigned('forged', '/C=GB/O=Clearing House/CN=settlement-gateway'),
    undefined,
  ]) {
    const config = await configure(server.issuer, fetchPresenting(pki, certificate));
    await assert.rejects(client.clientCredentialsGrant(config, { scope: 'settlement:submit', resource: settlementApi }), (error: unknown) => {
      assert.ok(error instanceof client.ResponseBodyError, String(error));
      assert.equal(error.error, 'invalid_client');
      return true;
    });
  }
});
