import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { describe, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { assertOAuthError, basicAuthorization, ordersApi, protocolFixture, type ProtocolFixture } from '../../endpoints/fixture.ts';
import { makeCertificate } from '../authentication/fixture.ts';

const serviceMetadata = {
  client_name: 'Algo desk 7',
  grant_types: ['client_credentials'],
  token_endpoint_auth_method: 'client_secret_basic',
  scope: 'order:create',
};

function register(f: ProtocolFixture, token: string | undefined, body: unknown): Promise<LightMyRequestResponse> {
  return f.inject({
    method: 'POST',
    url: '/register',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    payload: JSON.stringify(body),
  });
}

function manage(f: ProtocolFixture, method: 'GET' | 'PUT' | 'DELETE', clientId: string, token: string, body?: unknown): Promise<LightMyRequestResponse> {
  return f.inject({
    method,
    url: `/register/${encodeURIComponent(clientId)}`,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
  });
}

interface Registered {
  client_id: string;
  client_secret: string;
  registration_access_token: string;
  registration_client_uri: string;
  [key: string]: unknown;
}

async function registered(f: ProtocolFixture, body: unknown = serviceMetadata, token?: string): Promise<Registered> {
  const response = await register(f, token ?? (await f.initialAccessToken()), body);
  assert.equal(response.statusCode, 201, response.body);
  return response.json() as Registered;
}

describe('dynamic client registration (RFC 7591)', () => {
  test('refuses a registration without an initial access token with 401', async (t) => {
    const f = await protocolFixture(t);
    const response = await register(f, undefined, serviceMetadata);
    assertOAuthError(response, 401, 'invalid_token');
    assert.match(String(response.headers['www-authenticate']), /^Bearer realm="clearance"/);
  });

  test('refuses an unknown initial access token with 401 invalid_token', async (t) => {
    const f = await protocolFixture(t);
    assertOAuthError(await register(f, 'not-a-real-token', serviceMetadata), 401, 'invalid_token');
  });

  test('refuses a used-up initial access token with 401 invalid_token', async (t) => {
    const f = await protocolFixture(t);
    const token = await f.initialAccessToken({ uses: 1 });
    assert.equal((await register(f, token, serviceMetadata)).statusCode, 201);
    const again = await register(f, token, serviceMetadata);
    assertOAuthError(again, 401, 'invalid_token');
    assert.match(String(again.headers['www-authenticate']), /error="invalid_token"/);
  });

  test('allows as many registrations as the initial access token has uses', async (t) => {
    const f = await protocolFixture(t);
    const token = await f.initialAccessToken({ uses: 3 });
    for (let i = 0; i < 3; i++) assert.equal((await register(f, token, serviceMetadata)).statusCode, 201, `use ${i}`);
    assertOAuthError(await register(f, token, serviceMetadata), 401, 'invalid_token');
  });

  test('refuses an expired initial access token with 401 invalid_token', async (t) => {
    const f = await protocolFixture(t);
    const token = await f.initialAccessToken({ ttlSeconds: 60 });
    f.clock.advance(61_000);
    assertOAuthError(await register(f, token, serviceMetadata), 401, 'invalid_token');
  });

  test('registers a client with 201, a secret that expires after the maximum secret age and a registration access token', async (t) => {
    const f = await protocolFixture(t);
    const response = await register(f, await f.initialAccessToken(), serviceMetadata);
    assert.equal(response.statusCode, 201, response.body);
    assert.match(String(response.headers['content-type']), /^application\/json/);
    assert.equal(response.headers['cache-control'], 'no-store');
    const body = response.json() as Registered;
    assert.equal(typeof body.client_id, 'string');
    assert.ok(body.client_id.length > 0);
    assert.equal(typeof body.client_secret, 'string');
    assert.ok(body.client_secret.length >= 32, 'at least 128 bits');
    // RFC 7591 §3.2.1; CLEARANCE_CLIENT_SECRET_MAX_AGE_DAYS defaults to 365 (docs/lifecycle.md).
    assert.equal(body.client_secret_expires_at, Math.floor(f.clock.now() / 1000) + 365 * 86_400);
    assert.equal(typeof body.registration_access_token, 'string');
    assert.equal(body.registration_client_uri, `${f.issuer}/register/${encodeURIComponent(body.client_id)}`);
    assert.equal(body.client_name, 'Algo desk 7');
    assert.equal(body.scope, 'order:create');
    assert.deepEqual(body.grant_types, ['client_credentials']);
    assert.equal(body.token_endpoint_auth_method, 'client_secret_basic');
    assert.equal(typeof body.client_id_issued_at, 'number');

    const events = await f.auditEvents('client.registered');
    assert.equal(events.length, 1);
    assert.equal(events[0]!.client, body.client_id);
    const text = await f.auditText();
    assert.ok(!text.includes(body.client_secret), 'no secret in the audit log');
    assert.ok(!text.includes(body.registration_access_token), 'no registration token in the audit log');
  });

  test('lets the registered client get a token with client_credentials', async (t) => {
    const f = await protocolFixture(t);
    const client = await registered(f);
    const response = await f.token({
      auth: basicAuthorization(client.client_id, client.client_secret),
      form: { grant_type: 'client_credentials', resource: ordersApi },
    });
    assert.equal(response.statusCode, 200, response.body);
    assert.equal(response.json().scope, 'order:create');
  });

  test("grants the initial access token's scopes when the metadata names none", async (t) => {
    const f = await protocolFixture(t);
    const { scope: _omitted, ...withoutScope } = serviceMetadata;
    const client = await registered(f, withoutScope, await f.initialAccessToken({ scope: 'order:create order:cancel' }));
    assert.equal(client.scope, 'order:create order:cancel');
  });

  test("refuses a scope outside the initial access token's with invalid_client_metadata", async (t) => {
    const f = await protocolFixture(t);
    const token = await f.initialAccessToken({ scope: 'order:create' });
    const response = await register(f, token, { ...serviceMetadata, scope: 'order:create order:amend' });
    assertOAuthError(response, 400, 'invalid_client_metadata');
    // The refusal did not use the token up.
    assert.equal((await register(f, token, serviceMetadata)).statusCode, 201);
  });

  test('refuses an http redirect_uri with invalid_redirect_uri', async (t) => {
    const f = await protocolFixture(t);
    const token = await f.initialAccessToken();
    const response = await register(f, token, {
      grant_types: ['authorization_code'],
      redirect_uris: ['http://desk.example.com/callback'],
      scope: 'order:create',
    });
    assertOAuthError(response, 400, 'invalid_redirect_uri');
    const fragment = await register(f, token, {
      grant_types: ['authorization_code'],
      redirect_uris: ['https://desk.example.com/callback#x'],
      scope: 'order:create',
    });
    assertOAuthError(fragment, 400, 'invalid_redirect_uri');
  });

  test('takes an http redirect_uri on a loopback host (RFC 8252 §7.3), not on a name that only looks like one', async (t) => {
    const f = await protocolFixture(t);
    const token = await f.initialAccessToken({ uses: 10 });
    const withRedirect = (uri: string) => register(f, token, { grant_types: ['authorization_code'], redirect_uris: [uri], scope: 'order:create' });
    for (const uri of ['http://127.0.0.1:8080/callback', 'http://[::1]/callback', 'http://[::ffff:127.0.0.1]/callback']) {
      assert.equal((await withRedirect(uri)).statusCode, 201, uri);
    }
    for (const uri of ['http://127.0.0.1.nip.io/callback', 'http://desk.localhost/callback', 'http://localhost.example.com/callback']) {
      assertOAuthError(await withRedirect(uri), 400, 'invalid_redirect_uri');
    }
  });

  test('refuses a jwks key that cannot be imported with invalid_client_metadata, naming the key, and takes a real one', async (t) => {
    const f = await protocolFixture(t);
    const token = await f.initialAccessToken({ uses: 2 });
    const real = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'jwk' }) as Record<string, string>;
    const keyed = (key: Record<string, unknown>) => ({ ...serviceMetadata, token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [key] } });
    // A point off the curve: a key no assertion could ever be verified with.
    const refused = assertOAuthError(await register(f, token, keyed({ ...real, y: real.x })), 400, 'invalid_client_metadata');
    assert.match(String(refused.error_description), /jwks\.keys\[0\].*cannot be imported/);
    assertOAuthError(await register(f, token, keyed({ ...real, kid: 7 })), 400, 'invalid_client_metadata', 'a kid that is not a string');
    const accepted = await register(f, token, keyed({ ...real, kid: 'desk-7-1' }));
    assert.equal(accepted.statusCode, 201, accepted.body);
  });

  test("refuses a jwks key whose x5c certificate holds another key (RFC 7517 §4.7) with invalid_client_metadata", async (t) => {
    const f = await protocolFixture(t);
    const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'jwk' });
    const someoneElse = makeCertificate({ subject: '/CN=someone else' }).certificate.raw.toString('base64');
    const response = await register(f, await f.initialAccessToken(), {
      ...serviceMetadata,
      token_endpoint_auth_method: 'self_signed_tls_client_auth',
      jwks: { keys: [{ ...key, x5c: [someoneElse] }] },
    });
    const body = assertOAuthError(response, 400, 'invalid_client_metadata');
    assert.match(String(body.error_description), /jwks\.keys\[0\]\.x5c\[0\]/);
  });

  test('does not use up a single-use initial access token on invalid metadata', async (t) => {
    const f = await protocolFixture(t);
    const token = await f.initialAccessToken({ uses: 1 });
    for (const body of [
      { ...serviceMetadata, grant_types: ['password'] },
      { ...serviceMetadata, token_endpoint_auth_method: 'none' },
      { ...serviceMetadata, jwks_uri: 'http://keys.example.com/jwks' },
      [serviceMetadata],
      'metadata',
      null,
    ]) {
      const response = await register(f, token, body);
      assertOAuthError(response, 400, 'invalid_client_metadata', JSON.stringify(body));
    }
    assert.equal((await register(f, token, serviceMetadata)).statusCode, 201, 'the token still has its one use');
  });

  test('ignores metadata it does not understand (RFC 7591 §2)', async (t) => {
    const f = await protocolFixture(t);
    const client = await registered(f, { ...serviceMetadata, software_statement_hint: 'x', logo_uri: 'https://x.example.com/l.png' });
    assert.equal(client.software_statement_hint, undefined);
    assert.equal(client.logo_uri, undefined);
    assert.equal((await f.ctx.clients.get(client.client_id))?.metadata.client_name, 'Algo desk 7');
  });

  test('refuses a client_id in the body with invalid_client_metadata', async (t) => {
    const f = await protocolFixture(t);
    const token = await f.initialAccessToken();
    assertOAuthError(await register(f, token, { ...serviceMetadata, client_id: 'broker-1' }), 400, 'invalid_client_metadata');
    assert.equal((await f.ctx.clients.get('broker-1'))?.metadata.scope?.includes('trade:execute'), true, 'broker-1 untouched');
  });

  test('refuses a body that is not JSON without using the token', async (t) => {
    const f = await protocolFixture(t);
    const token = await f.initialAccessToken();
    const broken = await f.inject({
      method: 'POST',
      url: '/register',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      payload: '{"client_name":',
    });
    assertOAuthError(broken, 400, 'invalid_request');
    const xml = await f.inject({
      method: 'POST',
      url: '/register',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/xml' },
      payload: '<client/>',
    });
    assertOAuthError(xml, 415, 'invalid_request');
    const form = await f.inject({
      method: 'POST',
      url: '/register',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-www-form-urlencoded' },
      payload: 'grant_types=client_credentials&scope=order%3Acreate',
    });
    assertOAuthError(form, 415, 'invalid_request');
    assert.equal((await register(f, token, serviceMetadata)).statusCode, 201);
  });

  test('registers exactly one client when a single-use token is raced', async (t) => {
    const f = await protocolFixture(t);
    const token = await f.initialAccessToken({ uses: 1 });
    const responses = await Promise.all(Array.from({ length: 6 }, () => register(f, token, serviceMetadata)));
    const statuses = responses.map((r) => r.statusCode).sort();
    assert.deepEqual(statuses, [201, 401, 401, 401, 401, 401], responses.map((r) => r.body).join('\n'));
    for (const r of responses.filter((r) => r.statusCode === 401)) assertOAuthError(r, 401, 'invalid_token');
    const dynamic = (await f.ctx.clients.list()).filter((c) => c.metadata.client_id.startsWith('dyn-'));
    assert.equal(dynamic.length, 1);
  });
});

describe('registration management (RFC 7592)', () => {
  test('reads the registration with its registration access token, without the secret', async (t) => {
    const f = await protocolFixture(t);
    const client = await registered(f);
    const response = await manage(f, 'GET', client.client_id, client.registration_access_token);
    assert.equal(response.statusCode, 200, response.body);
    assert.equal(response.headers['cache-control'], 'no-store');
    const body = response.json() as Record<string, unknown>;
    assert.equal(body.client_id, client.client_id);
    assert.equal(body.client_name, 'Algo desk 7');
    assert.equal(body.registration_client_uri, client.registration_client_uri);
    assert.equal(body.client_secret, undefined);
    assert.ok(!response.body.includes(client.client_secret));
  });

  test('refuses a wrong registration access token with 401 on GET, PUT and DELETE', async (t) => {
    const f = await protocolFixture(t);
    const client = await registered(f);
    const other = await registered(f);
    for (const token of ['wrong', other.registration_access_token, client.client_secret]) {
      assertOAuthError(await manage(f, 'GET', client.client_id, token), 401, 'invalid_token', 'GET');
      assertOAuthError(await manage(f, 'PUT', client.client_id, token, { ...serviceMetadata, client_id: client.client_id }), 401, 'invalid_token', 'PUT');
      assertOAuthError(await manage(f, 'DELETE', client.client_id, token), 401, 'invalid_token', 'DELETE');
    }
    const missing = await f.inject({ method: 'GET', url: `/register/${client.client_id}` });
    assertOAuthError(missing, 401, 'invalid_token');
    assert.ok(await f.ctx.clients.get(client.client_id), 'the client still exists');
  });

  test('refuses management of a client that was not registered dynamically with 401', async (t) => {
    const f = await protocolFixture(t);
    const client = await registered(f);
    assertOAuthError(await manage(f, 'GET', 'broker-1', client.registration_access_token), 401, 'invalid_token');
    assertOAuthError(await manage(f, 'DELETE', 'broker-1', client.registration_access_token), 401, 'invalid_token');
    assert.ok(await f.ctx.clients.get('broker-1'));
  });

  test('updates the registration with PUT, keeping the secret', async (t) => {
    const f = await protocolFixture(t);
    const client = await registered(f, serviceMetadata, await f.initialAccessToken({ scope: 'order:create order:cancel' }));
    const response = await manage(f, 'PUT', client.client_id, client.registration_access_token, {
      ...serviceMetadata,
      client_id: client.client_id,
      client_name: 'Algo desk 7 (renamed)',
      scope: 'order:create',
    });
    assert.equal(response.statusCode, 200, response.body);
    assert.equal(response.headers['cache-control'], 'no-store');
    assert.equal(response.json().client_name, 'Algo desk 7 (renamed)');
    assert.equal(response.json().client_secret, undefined);
    const issued = await f.token({
      auth: basicAuthorization(client.client_id, client.client_secret),
      form: { grant_type: 'client_credentials', resource: ordersApi },
    });
    assert.equal(issued.statusCode, 200, issued.body);
  });

  test('refuses a PUT that widens the scope, drops or changes client_id, or sets a secret', async (t) => {
    const f = await protocolFixture(t);
    const client = await registered(f);
    const token = client.registration_access_token;
    const base = { ...serviceMetadata, client_id: client.client_id };
    assertOAuthError(await manage(f, 'PUT', client.client_id, token, { ...base, scope: 'order:create order:cancel' }), 400, 'invalid_client_metadata');
    assertOAuthError(await manage(f, 'PUT', client.client_id, token, serviceMetadata), 400, 'invalid_client_metadata');
    assertOAuthError(await manage(f, 'PUT', client.client_id, token, { ...base, client_id: 'broker-1' }), 400, 'invalid_client_metadata');
    assertOAuthError(await manage(f, 'PUT', client.client_id, token, { ...base, client_secret: 'mine' }), 400, 'invalid_client_metadata');
    assertOAuthError(await manage(f, 'PUT', client.client_id, token, { ...base, redirect_uris: ['http://x.example.com/cb'], grant_types: ['authorization_code'] }), 400, 'invalid_redirect_uri');
    const form = await f.inject({
      method: 'PUT',
      url: `/register/${client.client_id}`,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-www-form-urlencoded' },
      payload: `client_id=${client.client_id}&client_name=x`,
    });
    assertOAuthError(form, 415, 'invalid_request');
    assert.equal((await f.ctx.clients.get(client.client_id))?.metadata.scope, 'order:create');
  });

  test('deletes the registration with DELETE; the client can no longer authenticate', async (t) => {
    const f = await protocolFixture(t);
    const client = await registered(f);
    const auth = basicAuthorization(client.client_id, client.client_secret);
    const form = { grant_type: 'client_credentials', resource: ordersApi };
    assert.equal((await f.token({ auth, form })).statusCode, 200);

    const deleted = await manage(f, 'DELETE', client.client_id, client.registration_access_token);
    assert.equal(deleted.statusCode, 204, deleted.body);
    assert.equal(deleted.body, '');

    assertOAuthError(await f.token({ auth, form }), 401, 'invalid_client');
    assertOAuthError(await manage(f, 'GET', client.client_id, client.registration_access_token), 401, 'invalid_token');
    assertOAuthError(await manage(f, 'DELETE', client.client_id, client.registration_access_token), 401, 'invalid_token');
  });
});
