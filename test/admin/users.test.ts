import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { adminAudience } from '../../src/admin/authorize.ts';
import { verifyPassword } from '../../src/identity/passwords.ts';
import { assertOAuthError, protocolFixture, type ProtocolFixture } from '../endpoints/fixture.ts';

async function adminToken(f: ProtocolFixture, clientId = 'admin-ops'): Promise<string> {
  return f.accessToken(clientId, { resource: adminAudience(f.issuer) });
}

function call(f: ProtocolFixture, method: 'GET' | 'PUT', url: string, token: string, body?: unknown): Promise<LightMyRequestResponse> {
  return f.inject({
    method,
    url,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
  });
}

const password = 'trader-passphrase-2024';
const alice = {
  password,
  name: 'Alice Trader',
  email: 'alice@broker.example',
  desks: ['fx-spot'],
  roles: ['trader'],
  attributes: { kyc_status: 'verified', suitability: ['fx'] },
  status: 'active',
};

describe('the admin API for users', () => {
  test('creates a user with PUT, answers without the password or its hash, and a second PUT is unchanged', async (t) => {
    const f = await protocolFixture(t);
    const token = await adminToken(f);
    const created = await call(f, 'PUT', '/admin/users/alice', token, alice);
    assert.equal(created.statusCode, 200, created.body);
    const body = created.json() as Record<string, unknown>;
    assert.equal(body.outcome, 'created');
    assert.equal(body.username, 'alice');
    assert.match(String(body.id), /^[0-9a-f-]{36}$/);
    assert.equal(body.has_password, true);
    // The KYC status is the person's KYC record (src/risk/kyc, GET /admin/kyc/users/alice), not an attribute.
    assert.deepEqual(body.attributes, { suitability: ['fx'] });
    assert.equal((await call(f, 'GET', '/admin/kyc/users/alice', token)).json().status, 'verified');
    assert.equal(body.status, 'active');
    assert.doesNotMatch(created.body, new RegExp(`${password}|argon2|password_hash`));
    const stored = await f.ctx.storage.db.selectFrom('users').select('password_hash').where('username', '=', 'alice').executeTakeFirstOrThrow();
    assert.equal(await verifyPassword(password, stored.password_hash!), true);

    const again = await call(f, 'PUT', '/admin/users/alice', token, alice);
    assert.equal(again.json().outcome, 'unchanged');
    assert.doesNotMatch(await f.auditText(), new RegExp(password));
  });

  test('lists and reads users without hashes, and 404 for an unknown one', async (t) => {
    const f = await protocolFixture(t);
    await call(f, 'PUT', '/admin/users/alice', await adminToken(f), alice);
    const token = await adminToken(f, 'admin-viewer');
    const list = await call(f, 'GET', '/admin/users', token);
    assert.equal(list.statusCode, 200, list.body);
    assert.equal(list.headers['cache-control'], 'no-store');
    const { users } = list.json() as { users: Record<string, unknown>[] };
    assert.deepEqual(users.map((u) => u.username), ['alice']);
    assert.deepEqual(Object.keys(users[0]!).filter((k) => /password|hash|secret/.test(k)), ['has_password']);
    assert.doesNotMatch(list.body, /argon2/);
    const one = await call(f, 'GET', '/admin/users/alice', token);
    assert.equal(one.statusCode, 200);
    assert.equal(one.json().name, 'Alice Trader');
    assertOAuthError(await call(f, 'GET', '/admin/users/nobody', token), 404, 'not_found');
    assertOAuthError(await call(f, 'GET', '/admin/users/Alice', token), 404, 'not_found');
  });

  test('refuses an invalid user with every problem, path-addressed, and writes nothing', async (t) => {
    const f = await protocolFixture(t);
    const token = await adminToken(f);
    const response = await call(f, 'PUT', '/admin/users/bob', token, { password: 'short', status: 'gone', username: 'bob' });
    assertOAuthError(response, 400, 'invalid_request');
    assert.equal(response.json().error_description, 'users[0].password: must be at least 12 characters; users[0].status: must be one of active, locked, disabled');
    assertOAuthError(await call(f, 'PUT', '/admin/users/bob', token, { username: 'robert' }), 400, 'invalid_request');
    assertOAuthError(await call(f, 'PUT', '/admin/users/bob', token, ['not', 'an', 'object']), 400, 'invalid_request');
    assert.equal(await f.ctx.storage.db.selectFrom('users').select('id').executeTakeFirst(), undefined);
  });

  test('needs admin:write to change a user and admin:read to read one', async (t) => {
    const f = await protocolFixture(t);
    assertOAuthError(await call(f, 'PUT', '/admin/users/alice', await adminToken(f, 'admin-viewer'), alice), 403, 'insufficient_scope');
    const response = await f.inject({ method: 'GET', url: '/admin/users' });
    assertOAuthError(response, 401, 'invalid_token');
  });
});
