import assert from 'node:assert/strict';
import { X509Certificate, createHash, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { decodeJwt } from 'jose';
import { Agent, request } from 'undici';
import { decideConsent } from '../../src/authorization/interactions.ts';
import { startSession } from '../../src/identity/sessions.ts';
import { upsertUser } from '../../src/identity/users.ts';
import { makePki, type Pem, type Pki } from '../helpers/pki.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { assertOAuthError } from './fixture.ts';

// RFC 8705 over real TLS: Clearance listens with HTTPS and asks for client certificates; an
// undici Agent presents them. Also the TLS-terminating proxy header, trusted only from proxies.

const clearingApi = 'https://clearing.example.com/api';

/** An HTTPS Clearance with a tls_client_auth client and a self_signed_tls_client_auth agent whose certificate is `bot`. */
async function tlsServer(t: Parameters<typeof makePki>[0] & object, pki: Pki): Promise<{ server: TestServer; bot: Pem }> {
  const bot = pki.selfSigned('bot', '/CN=bot');
  const server = await startTestServer({
    t,
    env: { CLEARANCE_TLS_CERT: pki.server.certFile, CLEARANCE_TLS_KEY: pki.server.keyFile, CLEARANCE_TLS_CLIENT_CA: pki.ca.certFile },
  });
  await server.apply({
    resource_servers: [{ identifier: clearingApi, scopes: ['settlement:submit'], require_sender_constraint: true }],
    clients: [
      {
        client_id: 'clearing-connector',
        token_endpoint_auth_method: 'tls_client_auth',
        tls_client_auth_subject_dn: 'CN=clearing-connector,O=Broker Ltd,C=GB',
        grant_types: ['client_credentials'],
        scope: 'settlement:submit',
      },
      {
        client_id: 'self-signed-bot',
        kind: 'agent',
        token_endpoint_auth_method: 'self_signed_tls_client_auth',
        jwks: { keys: [new X509Certificate(bot.cert).publicKey.export({ format: 'jwk' })] },
        grant_types: ['client_credentials'],
        scope: 'settlement:submit',
      },
    ],
  });
  return { server, bot };
}

function agent(pki: Pki, client?: Pem): Agent {
  return new Agent({ connect: { ca: pki.ca.cert, ...(client ? { cert: client.cert, key: client.key } : {}) } });
}

async function token(server: TestServer, dispatcher: Agent, clientId: string) {
  const response = await request(`${server.issuer}/token`, {
    method: 'POST',
    dispatcher,
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: `grant_type=client_credentials&client_id=${clientId}&scope=settlement%3Asubmit`,
  });
  return { status: response.statusCode, body: (await response.body.json()) as Record<string, unknown> };
}

/** The same token request, answered in the shape assertOAuthError reads (status, headers, raw body). */
async function tokenResponse(server: TestServer, dispatcher: Agent, clientId: string): Promise<LightMyRequestResponse> {
  const response = await request(`${server.issuer}/token`, {
    method: 'POST',
    dispatcher,
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: `grant_type=client_credentials&client_id=${clientId}&scope=settlement%3Asubmit`,
  });
  const body = await response.body.text();
  return { statusCode: response.statusCode, headers: response.headers, body, json: () => JSON.parse(body) as unknown } as unknown as LightMyRequestResponse;
}

test('tls_client_auth over HTTPS issues a token bound to the presented certificate', async (t) => {
  const pki = makePki(t);
  const { server } = await tlsServer(t, pki);
  const client = pki.issueClient('connector', '/C=GB/O=Broker Ltd/CN=clearing-connector');
  const { status, body } = await token(server, agent(pki, client), 'clearing-connector');
  assert.equal(status, 200, JSON.stringify(body));
  assert.equal(body.token_type, 'Bearer');
  const claims = decodeJwt(body.access_token as string);
  assert.deepEqual(claims.cnf, { 'x5t#S256': client.thumbprint });
  assert.equal(claims.aud, clearingApi);
});

test('tls_client_auth without a client certificate is invalid_client', async (t) => {
  const pki = makePki(t);
  const { server } = await tlsServer(t, pki);
  const { status, body } = await token(server, agent(pki), 'clearing-connector');
  assert.equal(status, 401);
  assert.equal(body.error, 'invalid_client');
});

test('tls_client_auth refuses a CA-signed certificate with another subject, and a self-signed one with the right subject', async (t) => {
  const pki = makePki(t);
  const { server } = await tlsServer(t, pki);
  const other = pki.issueClient('other', '/C=GB/O=Broker Ltd/CN=someone-else');
  assert.equal((await token(server, agent(pki, other), 'clearing-connector')).status, 401);
  const forged = pki.selfSigned('forged', '/C=GB/O=Broker Ltd/CN=clearing-connector');
  const { status, body } = await token(server, agent(pki, forged), 'clearing-connector');
  assert.equal(status, 401);
  assert.equal(body.error, 'invalid_client');
});

test('self_signed_tls_client_auth accepts the registered self-signed certificate and binds the token to it', async (t) => {
  const pki = makePki(t);
  const { server, bot } = await tlsServer(t, pki);
  const { status, body } = await token(server, agent(pki, bot), 'self-signed-bot');
  assert.equal(status, 200, JSON.stringify(body));
  assert.deepEqual(decodeJwt(body.access_token as string).cnf, { 'x5t#S256': bot.thumbprint });
  const stranger = pki.selfSigned('stranger', '/CN=bot');
  assert.equal((await token(server, agent(pki, stranger), 'self-signed-bot')).status, 401);
});

test('self_signed_tls_client_auth without a client certificate is a 401 invalid_client, JSON and never cached', async (t) => {
  const pki = makePki(t);
  const { server, bot } = await tlsServer(t, pki);
  // The good case: the same request over a connection that presents the registered certificate.
  assert.equal((await tokenResponse(server, agent(pki, bot), 'self-signed-bot')).statusCode, 200);
  // RFC 8705 §2.2: the client authenticates by the certificate of the TLS connection; without one
  // there is nothing to authenticate it by. RFC 6749 §5.2: invalid_client (401, as Clearance
  // answers every failed client authentication).
  const body = assertOAuthError(await tokenResponse(server, agent(pki), 'self-signed-bot'), 401, 'invalid_client', 'no certificate');
  assert.equal(body.error_description, 'a client certificate is required');
});

test('self_signed_tls_client_auth refuses a certificate whose key is not registered, self-signed or CA-issued, with 401 invalid_client', async (t) => {
  const pki = makePki(t);
  const { server, bot } = await tlsServer(t, pki);
  assert.equal((await tokenResponse(server, agent(pki, bot), 'self-signed-bot')).statusCode, 200, 'the registered certificate');
  // RFC 8705 §2.2: the trust is the registered key, not the subject and not a CA: the same
  // subject with another key is refused, and so is a certificate the configured CA issued.
  const stranger = pki.selfSigned('stranger', '/CN=bot');
  assertOAuthError(await tokenResponse(server, agent(pki, stranger), 'self-signed-bot'), 401, 'invalid_client', 'self-signed, another key');
  const caIssued = pki.issueClient('bot-ca', '/CN=bot');
  assertOAuthError(await tokenResponse(server, agent(pki, caIssued), 'self-signed-bot'), 401, 'invalid_client', 'CA-issued, another key');
});

test('a sender-constrained resource gets no token for a client without a certificate', async (t) => {
  const pki = makePki(t);
  const { server } = await tlsServer(t, pki);
  await server.apply({
    clients: [{ client_id: 'secret-svc', grant_types: ['client_credentials'], scope: 'settlement:submit' }],
  });
  const response = await request(`${server.issuer}/token`, {
    method: 'POST',
    dispatcher: agent(pki),
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${Buffer.from(`secret-svc:${server.secrets['secret-svc']}`).toString('base64')}`,
    },
    body: 'grant_type=client_credentials&scope=settlement%3Asubmit',
  });
  const body = (await response.body.json()) as Record<string, unknown>;
  assert.equal(response.statusCode, 400);
  assert.equal(body.error, 'invalid_request');
});

test('a certificate-bound admin token is refused when presented with another certificate', async (t) => {
  const pki = makePki(t);
  const { server } = await tlsServer(t, pki);
  await server.apply({
    clients: [
      {
        client_id: 'ops-admin',
        token_endpoint_auth_method: 'tls_client_auth',
        tls_client_auth_subject_dn: 'CN=ops-admin',
        grant_types: ['client_credentials'],
        scope: 'admin:read',
      },
    ],
  });
  const admin = pki.issueClient('ops-admin', '/CN=ops-admin');
  const issued = await request(`${server.issuer}/token`, {
    method: 'POST',
    dispatcher: agent(pki, admin),
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: `grant_type=client_credentials&client_id=ops-admin&resource=${encodeURIComponent(`${server.issuer}/admin`)}`,
  });
  const { access_token } = (await issued.body.json()) as { access_token: string };
  const call = async (dispatcher: Agent) =>
    (await request(`${server.issuer}/admin/clients`, { dispatcher, headers: { authorization: `Bearer ${access_token}` } })).statusCode;
  assert.equal(await call(agent(pki, admin)), 200);
  assert.equal(await call(agent(pki, pki.issueClient('thief', '/CN=thief'))), 401);
  assert.equal(await call(agent(pki)), 401);
});

test('a client certificate in the proxy header counts only when the request comes from a trusted proxy', async (t) => {
  const pki = makePki(t);
  const client = pki.issueClient('connector', '/C=GB/O=Broker Ltd/CN=clearing-connector');
  const header = `:${new X509Certificate(client.cert).raw.toString('base64')}:`; // RFC 9440 §2.2
  for (const [proxies, expected] of [['127.0.0.1', 200], ['10.9.8.7', 401]] as const) {
    const server = await startTestServer({
      t,
      env: { CLEARANCE_CLIENT_CERT_HEADER: 'Client-Cert', CLEARANCE_TRUSTED_PROXIES: proxies },
    });
    await server.apply({
      resource_servers: [{ identifier: clearingApi, scopes: ['settlement:submit'] }],
      clients: [
        {
          client_id: 'clearing-connector',
          token_endpoint_auth_method: 'tls_client_auth',
          tls_client_auth_subject_dn: 'CN=clearing-connector,O=Broker Ltd,C=GB',
          grant_types: ['client_credentials'],
          scope: 'settlement:submit',
        },
      ],
    });
    const response = await fetch(`${server.issuer}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'client-cert': header },
      body: 'grant_type=client_credentials&client_id=clearing-connector&scope=settlement%3Asubmit',
    });
    assert.equal(response.status, expected, `trusted proxies ${proxies}`);
    if (expected === 200) {
      const { access_token } = (await response.json()) as { access_token: string };
      assert.deepEqual(decodeJwt(access_token).cnf, { 'x5t#S256': client.thumbprint });
    }
  }
});

test('a public client runs the code flow over mutual TLS: its tokens and refresh token are bound to its certificate', async (t) => {
  const pki = makePki(t);
  const { server } = await tlsServer(t, pki);
  const app = pki.selfSigned('desk', '/CN=desk-native');
  const redirect = 'http://127.0.0.1/cb';
  await server.apply({
    resource_servers: [{ identifier: 'https://orders.example.com/api', scopes: ['order:create'], require_sender_constraint: true }],
    clients: [{ client_id: 'desk-native', kind: 'app', token_endpoint_auth_method: 'none', grant_types: ['authorization_code', 'refresh_token'], redirect_uris: [redirect], scope: 'order:create' }],
  });
  const ctx = server.running.ctx;
  const { id: userId } = await ctx.storage.db.transaction().execute((trx) => upsertUser(trx, ctx.clock.now(), { username: 'alice' }, { keep: true }));
  const session = await startSession(ctx, { userId, acr: 'urn:clearance:acr:pwd', amr: ['pwd'], cookieHeader: undefined });
  const verifier = randomBytes(32).toString('base64url');
  const query = new URLSearchParams({
    client_id: 'desk-native',
    response_type: 'code',
    redirect_uri: redirect,
    scope: 'order:create',
    code_challenge: createHash('sha256').update(verifier).digest('base64url'),
    code_challenge_method: 'S256',
  });
  // The person's browser (no client certificate): /authorize, consent through the people side's contract, resume.
  const browser = agent(pki);
  const started = await request(`${server.issuer}/authorize?${query}`, { dispatcher: browser, headers: { cookie: session.setCookie.split(';')[0]! } });
  assert.equal(started.statusCode, 303);
  const interaction = new URL(String(started.headers.location)).pathname.split('/').pop()!;
  await decideConsent(ctx, interaction, session.authentication, true);
  const cookies = [session.setCookie, ...([] as string[]).concat(started.headers['set-cookie'] ?? [])].map((c) => c.split(';')[0]).join('; ');
  const resumed = await request(`${server.issuer}/authorize/resume/${interaction}`, { dispatcher: browser, headers: { cookie: cookies } });
  const code = new URL(String(resumed.headers.location)).searchParams.get('code')!;
  assert.ok(code, String(resumed.headers.location));

  const post = async (dispatcher: Agent, form: Record<string, string>) => {
    const response = await request(`${server.issuer}/token`, { method: 'POST', dispatcher, headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ client_id: 'desk-native', ...form }).toString() });
    return { status: response.statusCode, body: (await response.body.json()) as Record<string, string> };
  };
  // Without a certificate the sender-constrained Order API gets no token; with one, a bound token.
  assert.equal((await post(agent(pki), { grant_type: 'authorization_code', code, code_verifier: verifier, redirect_uri: redirect })).status, 400);
  const issued = await post(agent(pki, app), { grant_type: 'authorization_code', code, code_verifier: verifier, redirect_uri: redirect });
  assert.equal(issued.status, 200, JSON.stringify(issued.body));
  assert.deepEqual(decodeJwt(issued.body.access_token!).cnf, { 'x5t#S256': app.thumbprint });

  const stolen = await post(agent(pki, pki.selfSigned('thief', '/CN=desk-native')), { grant_type: 'refresh_token', refresh_token: issued.body.refresh_token! });
  assert.equal(stolen.status, 400);
  assert.equal(stolen.body.error, 'invalid_grant');
  const refreshed = await post(agent(pki, app), { grant_type: 'refresh_token', refresh_token: issued.body.refresh_token! });
  assert.equal(refreshed.status, 200, JSON.stringify(refreshed.body));
  assert.deepEqual(decodeJwt(refreshed.body.access_token!).cnf, { 'x5t#S256': app.thumbprint });
});
