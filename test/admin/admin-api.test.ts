import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { adminAudience } from '../../src/admin/authorize.ts';
import { assertOAuthError, basicAuthorization, ordersApi, protocolFixture, type ProtocolFixture } from '../endpoints/fixture.ts';

async function adminToken(f: ProtocolFixture, clientId = 'admin-ops', scope?: string): Promise<string> {
  return f.accessToken(clientId, { resource: adminAudience(f.issuer), ...(scope ? { scope } : {}) });
}

function call(f: ProtocolFixture, method: 'GET' | 'PUT', url: string, token?: string, body?: unknown): Promise<LightMyRequestResponse> {
  return f.inject({
    method,
    url,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
  });
}

const newClient = {
  kind: 'service',
  client_name: 'Post-trade reconciler',
  token_endpoint_auth_method: 'client_secret_basic',
  grant_types: ['client_credentials'],
  scope: 'order:cancel',
};

describe('the admin API', () => {
  test('answers a request without Authorization with 401 and bare Bearer and DPoP challenges', async (t) => {
    const f = await protocolFixture(t);
    const response = await call(f, 'GET', '/admin/clients');
    assertOAuthError(response, 401, 'invalid_token');
    // RFC 6750 §3.1: no error code without credentials; RFC 9449 §7.1: the DPoP challenge names its algorithms.
    assert.equal(response.headers['www-authenticate'], 'Bearer realm="clearance", DPoP realm="clearance", algs="ES256 EdDSA Ed25519 PS256"');
  });

  test('refuses a token for another audience with 401 invalid_token', async (t) => {
    const f = await protocolFixture(t);
    const token = await f.accessToken('broker-1', { resource: ordersApi });
    const response = await call(f, 'GET', '/admin/clients', token);
    assertOAuthError(response, 401, 'invalid_token');
    assert.match(String(response.headers['www-authenticate']), /^Bearer realm="clearance", error="invalid_token"/);
  });

  test('refuses a malformed, forged or Basic credential with 401 invalid_token', async (t) => {
    const f = await protocolFixture(t);
    const token = await adminToken(f);
    const [h, p] = token.split('.');
    for (const authorization of [`Bearer ${h}.${p}.AAAA`, 'Bearer not-a-jwt', 'Bearer', basicAuthorization('admin-ops', f.secrets['admin-ops']!), `DPoP ${token}`]) {
      const response = await f.inject({ method: 'GET', url: '/admin/clients', headers: { authorization } });
      assertOAuthError(response, 401, 'invalid_token', authorization.slice(0, 20));
      // A bearer token under the DPoP scheme gets a DPoP challenge (it is not DPoP-bound).
      assert.match(String(response.headers['www-authenticate']), authorization.startsWith('DPoP') ? /^DPoP realm="clearance", error="invalid_token"/ : /^Bearer realm="clearance"/);
    }
  });

  test('refuses an expired admin token with 401 invalid_token', async (t) => {
    const f = await protocolFixture(t);
    const token = await adminToken(f);
    f.clock.advance(301_000);
    assertOAuthError(await call(f, 'GET', '/admin/clients', token), 401, 'invalid_token');
  });

  test('refuses an admin:read token on PUT with 403 insufficient_scope', async (t) => {
    const f = await protocolFixture(t);
    const token = await adminToken(f, 'admin-viewer');
    assert.equal((await call(f, 'GET', '/admin/clients', token)).statusCode, 200, 'admin:read may read');
    const response = await call(f, 'PUT', '/admin/clients/reconciler', token, newClient);
    assertOAuthError(response, 403, 'insufficient_scope');
    assert.match(String(response.headers['www-authenticate']), /error="insufficient_scope"/);
    assert.match(String(response.headers['www-authenticate']), /scope="admin:write"/);
    assert.equal(await f.ctx.clients.get('reconciler'), undefined, 'nothing was written');
  });

  test('refuses an admin:write-only token on GET with 403 insufficient_scope', async (t) => {
    const f = await protocolFixture(t);
    const token = await adminToken(f, 'admin-ops', 'admin:write');
    assertOAuthError(await call(f, 'GET', '/admin/clients', token), 403, 'insufficient_scope');
  });

  test('refuses an access_token in the query string with 400, even alongside a valid header', async (t) => {
    const f = await protocolFixture(t);
    const token = await adminToken(f);
    assertOAuthError(await call(f, 'GET', `/admin/clients?access_token=${token}`), 400, 'invalid_request');
    assertOAuthError(await call(f, 'GET', `/admin/clients?x=1&access_token=${token}`, token), 400, 'invalid_request');
  });

  test('refuses a revoked admin token with 401', async (t) => {
    const f = await protocolFixture(t);
    const token = await adminToken(f);
    assert.equal((await call(f, 'GET', '/admin/clients', token)).statusCode, 200);
    const revoked = await f.post('/revoke', { auth: f.basic('admin-ops'), form: { token } });
    assert.equal(revoked.statusCode, 200);
    assertOAuthError(await call(f, 'GET', '/admin/clients', token), 401, 'invalid_token');
  });

  test('lists client metadata and never a secret or a secret hash', async (t) => {
    const f = await protocolFixture(t);
    const response = await call(f, 'GET', '/admin/clients', await adminToken(f, 'admin-viewer'));
    assert.equal(response.statusCode, 200, response.body);
    assert.equal(response.headers['cache-control'], 'no-store');
    const { clients } = response.json() as { clients: Record<string, unknown>[] };
    const ids = clients.map((c) => c.client_id);
    for (const id of ['broker-1', 'broker-2', 'oms-service', 'trading-ui', 'admin-ops']) assert.ok(ids.includes(id), id);
    const broker = clients.find((c) => c.client_id === 'broker-1')!;
    assert.equal(broker.token_endpoint_auth_method, 'client_secret_basic');
    assert.deepEqual(broker.grant_types, ['client_credentials']);
    for (const client of clients) {
      // The secret's dates (RFC 7591 §3.2.1 client_secret_expires_at, ...) are shown; never the secret or its digest.
      const dates = ['client_secret_expires_at', 'client_secret_issued_at', 'previous_client_secret_valid_until'];
      assert.deepEqual(Object.keys(client).filter((k) => /secret|hash/i.test(k) && !dates.includes(k)), [], String(client.client_id));
    }
    for (const secret of Object.values(f.secrets)) assert.ok(!response.body.includes(secret));
    const hashes = await f.ctx.storage.db.selectFrom('clients').select('secret_hash').execute();
    for (const { secret_hash } of hashes) if (secret_hash) assert.ok(!response.body.includes(secret_hash));
  });

  test('reads one client, and 404 for an unknown one', async (t) => {
    const f = await protocolFixture(t);
    const token = await adminToken(f, 'admin-viewer');
    const response = await call(f, 'GET', '/admin/clients/oms-service', token);
    assert.equal(response.statusCode, 200, response.body);
    assert.equal(response.json().token_endpoint_auth_method, 'private_key_jwt');
    assertOAuthError(await call(f, 'GET', '/admin/clients/nobody', token), 404, 'not_found');
  });

  test('creates a client with PUT, returns its secret once, and a second PUT is unchanged', async (t) => {
    const f = await protocolFixture(t);
    const token = await adminToken(f);
    const created = await call(f, 'PUT', '/admin/clients/reconciler', token, newClient);
    assert.equal(created.statusCode, 200, created.body);
    const body = created.json() as Record<string, unknown>;
    assert.equal(body.outcome, 'created');
    assert.equal(body.client_id, 'reconciler');
    assert.equal(typeof body.client_secret, 'string');

    const again = await call(f, 'PUT', '/admin/clients/reconciler', token, newClient);
    assert.equal(again.statusCode, 200, again.body);
    assert.equal(again.json().outcome, 'unchanged');
    assert.equal(again.json().client_secret, undefined, 'the secret is shown once');

    // The secret works at the token endpoint.
    const issued = await f.token({
      auth: basicAuthorization('reconciler', body.client_secret as string),
      form: { grant_type: 'client_credentials', resource: ordersApi },
    });
    assert.equal(issued.statusCode, 200, issued.body);
    assert.equal(issued.json().scope, 'order:cancel');

    const changed = await call(f, 'PUT', '/admin/clients/reconciler', token, { ...newClient, client_name: 'Reconciler v2' });
    assert.equal(changed.json().outcome, 'updated');
    assert.equal(changed.json().client_secret, undefined, 'an update keeps the secret');

    const events = await f.auditEvents('config.applied');
    const mine = events.filter((e) => e.actor === 'admin-ops');
    assert.equal(mine.length, 2, 'created and updated are audited; unchanged is not');
    assert.equal((mine[0]!.details as Record<string, unknown>).via, 'admin-api');
    assert.ok(!(await f.auditText()).includes(body.client_secret as string));
  });

  test('refuses invalid metadata with 400 and a description addressed by path', async (t) => {
    const f = await protocolFixture(t);
    const token = await adminToken(f);
    const response = await call(f, 'PUT', '/admin/clients/reconciler', token, { ...newClient, grant_types: ['client_credentials', 'password'] });
    const body = assertOAuthError(response, 400, 'invalid_request');
    assert.match(String(body.error_description), /clients\[0\]\.grant_types\[1\]/);
    const unknownScope = await call(f, 'PUT', '/admin/clients/reconciler', token, { ...newClient, scope: 'order:explode' });
    assert.match(String(assertOAuthError(unknownScope, 400, 'invalid_request').error_description), /clients\[0\]\.scope/);
    const unknownField = await call(f, 'PUT', '/admin/clients/reconciler', token, { ...newClient, client_secret: 'chosen-by-me' });
    assert.match(String(assertOAuthError(unknownField, 400, 'invalid_request').error_description), /client_secret/);
    assert.equal(await f.ctx.clients.get('reconciler'), undefined, 'nothing was written');
  });

  test('refuses a client_id in the body that differs from the path', async (t) => {
    const f = await protocolFixture(t);
    const response = await call(f, 'PUT', '/admin/clients/reconciler', await adminToken(f), { ...newClient, client_id: 'broker-1' });
    assertOAuthError(response, 400, 'invalid_request');
  });

  test('refuses a body that is not a JSON object with 400', async (t) => {
    const f = await protocolFixture(t);
    const token = await adminToken(f);
    for (const body of [[1, 2], 'text', 42, null]) {
      const response = await call(f, 'PUT', '/admin/clients/reconciler', token, body);
      assertOAuthError(response, 400, 'invalid_request', JSON.stringify(body));
    }
    const broken = await f.inject({
      method: 'PUT',
      url: '/admin/clients/reconciler',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      payload: '{"kind":',
    });
    assertOAuthError(broken, 400, 'invalid_request');
  });

  test('refuses a client_id that the audit log could not record, with 400 and nothing written', async (t) => {
    const f = await protocolFixture(t);
    const jwtShaped = 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.sig';
    const response = await call(f, 'PUT', `/admin/clients/${jwtShaped}`, await adminToken(f), newClient);
    assert.match(String(assertOAuthError(response, 400, 'invalid_request').error_description), /clients\[0\]\.client_id/);
    assert.equal(await f.ctx.clients.get(jwtShaped), undefined);
  });

  test('creates and updates a resource server with PUT /admin/resource-servers', async (t) => {
    const f = await protocolFixture(t);
    const token = await adminToken(f);
    const server = { identifier: 'https://collateral.example.com', scopes: ['collateral:pledge'], access_token_ttl: 90 };
    // Created with a default (require_sender_constraint); replacing it names every member (representation.ts).
    const full = { ...server, require_sender_constraint: false };
    const created = await call(f, 'PUT', '/admin/resource-servers', token, server);
    assert.equal(created.statusCode, 200, created.body);
    assert.equal(created.json().outcome, 'created');
    assert.equal(created.json().access_token_ttl, 90);
    assert.equal(created.json().require_sender_constraint, false);
    assert.equal((await call(f, 'PUT', '/admin/resource-servers', token, full)).json().outcome, 'unchanged');
    assert.equal((await call(f, 'PUT', '/admin/resource-servers', token, { ...full, access_token_ttl: 60 })).json().outcome, 'updated');

    const listed = await call(f, 'GET', '/admin/resource-servers', await adminToken(f, 'admin-viewer'));
    assert.equal(listed.statusCode, 200);
    const entry = (listed.json().resource_servers as Record<string, unknown>[]).find((r) => r.identifier === server.identifier);
    assert.equal(entry?.access_token_ttl, 60);

    // A client may now be given its scope, and get a token for it with that lifetime.
    const client = await call(f, 'PUT', '/admin/clients/collateral-desk', token, { ...newClient, scope: 'collateral:pledge' });
    assert.equal(client.statusCode, 200, client.body);
    const issued = await f.token({
      auth: basicAuthorization('collateral-desk', client.json().client_secret),
      form: { grant_type: 'client_credentials', scope: 'collateral:pledge' },
    });
    assert.equal(issued.statusCode, 200, issued.body);
    assert.equal(issued.json().expires_in, 60);
  });

  test('refuses an invalid or reserved resource server with 400', async (t) => {
    const f = await protocolFixture(t);
    const token = await adminToken(f);
    const invalid = await call(f, 'PUT', '/admin/resource-servers', token, { identifier: 'http://collateral.example.com', scopes: ['Admin'] });
    const body = assertOAuthError(invalid, 400, 'invalid_request');
    assert.match(String(body.error_description), /resource_servers\[0\]\.identifier/);
    assert.match(String(body.error_description), /resource_servers\[0\]\.scopes\[0\]/);
    const reserved = await call(f, 'PUT', '/admin/resource-servers', token, { identifier: adminAudience(f.issuer), scopes: ['admin:read'] });
    assertOAuthError(reserved, 400, 'invalid_request');
    const missing = await f.inject({ method: 'PUT', url: '/admin/resource-servers', headers: { authorization: `Bearer ${token}` } });
    assertOAuthError(missing, 400, 'invalid_request');
  });
});
