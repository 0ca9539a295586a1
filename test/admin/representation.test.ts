import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { adminAudience } from '../../src/admin/authorize.ts';
import { mergePatch } from '../../src/endpoints/admin/representation.ts';
import { assertOAuthError, protocolFixture, type ProtocolFixture } from '../endpoints/fixture.ts';

/**
 * The admin API's one write rule (src/endpoints/admin/representation.ts, issue 12 item 7): PUT
 * replaces the whole representation and refuses a body that leaves a member out; PATCH takes a
 * JSON Merge Patch (RFC 7396) and changes only what it names.
 */

type Method = 'GET' | 'PUT' | 'PATCH';

async function call(f: ProtocolFixture, method: Method, url: string, body?: unknown, contentType?: string): Promise<LightMyRequestResponse> {
  const token = await f.accessToken('admin-ops', { resource: adminAudience(f.issuer) });
  const type = contentType ?? (method === 'PATCH' ? 'application/merge-patch+json' : 'application/json');
  return f.inject({
    method,
    url,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': type }) },
    ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
  });
}

async function get(f: ProtocolFixture, url: string): Promise<Record<string, unknown>> {
  const response = await call(f, 'GET', url);
  assert.equal(response.statusCode, 200, response.body);
  return response.json() as Record<string, unknown>;
}

const alice = {
  name: 'Alice Trader',
  email: 'alice@broker.example',
  desks: ['fx-spot'],
  attributes: { kyc_status: 'verified', suitability: ['fx'], region: 'emea' },
  status: 'active',
};

async function withAlice(t: Parameters<typeof protocolFixture>[0]): Promise<ProtocolFixture> {
  const f = await protocolFixture(t);
  const created = await call(f, 'PUT', '/admin/users/alice', alice);
  assert.equal(created.statusCode, 200, created.body);
  return f;
}

/** The representation without what a write changes by itself. */
function stable(user: Record<string, unknown>): Record<string, unknown> {
  const { updated_at: _u, outcome: _o, ...rest } = user;
  return rest;
}

describe('PUT on an admin resource replaces the whole representation', () => {
  test('refuses a PUT of a person with only status, naming the missing members, and changes nothing', async (t) => {
    const f = await withAlice(t);
    const before = await get(f, '/admin/users/alice');
    const refused = assertOAuthError(await call(f, 'PUT', '/admin/users/alice', { status: 'locked' }), 400, 'invalid_request');
    assert.match(String(refused.error_description), /missing members: name, email, desks, roles, attributes/);
    assert.deepEqual(await get(f, '/admin/users/alice'), before);
  });

  test('takes back what GET shows, read-only members included, and refuses a changed read-only member', async (t) => {
    const f = await withAlice(t);
    const shown = await get(f, '/admin/users/alice');
    const again = await call(f, 'PUT', '/admin/users/alice', shown);
    assert.equal(again.statusCode, 200, again.body);
    assert.equal(again.json().outcome, 'unchanged');
    const renamed = await call(f, 'PUT', '/admin/users/alice', { ...shown, name: 'Alice B. Trader' });
    assert.equal(renamed.json().outcome, 'updated');
    const refused = assertOAuthError(await call(f, 'PUT', '/admin/users/alice', { ...shown, id: 'someone-else' }), 400, 'invalid_request');
    assert.match(String(refused.error_description), /read-only member of the user: id/);
    // null removes an optional member in a PUT too.
    const cleared = await call(f, 'PUT', '/admin/users/alice', { ...(await get(f, '/admin/users/alice')), email: null });
    assert.equal(cleared.statusCode, 200, cleared.body);
    assert.equal(cleared.json().email, null);
    assert.equal(cleared.json().name, 'Alice B. Trader');
  });

  test('refuses a partial PUT of a client or a resource server, naming what is missing', async (t) => {
    const f = await protocolFixture(t);
    const client = await get(f, '/admin/clients/broker-3');
    const refusedClient = assertOAuthError(await call(f, 'PUT', '/admin/clients/broker-3', { scope: 'order:create' }), 400, 'invalid_request');
    assert.match(String(refusedClient.error_description), /a PUT replaces the whole client; missing members: kind, token_endpoint_auth_method, grant_types/);
    assert.deepEqual(await get(f, '/admin/clients/broker-3'), client);

    const servers = async () => (await get(f, '/admin/resource-servers')).resource_servers;
    const before = await servers();
    const refusedServer = assertOAuthError(await call(f, 'PUT', '/admin/resource-servers', { identifier: 'https://orders.example.com/api', scopes: ['order:create'] }), 400, 'invalid_request');
    assert.match(String(refusedServer.error_description), /missing members: name, access_token_ttl, require_sender_constraint, introspection_clients/);
    assert.deepEqual(await servers(), before);
  });
});

describe('PATCH on an admin resource applies a JSON Merge Patch (RFC 7396)', () => {
  test('changes only the status of a person when the patch names only status', async (t) => {
    const f = await withAlice(t);
    const before = await get(f, '/admin/users/alice');
    const patched = await call(f, 'PATCH', '/admin/users/alice', { status: 'locked' });
    assert.equal(patched.statusCode, 200, patched.body);
    const after = await get(f, '/admin/users/alice');
    assert.equal(after.status, 'locked');
    const { status: _s, locked_at: _l, lock_reason: _r, ...rest } = stable(after);
    const { status: _s0, locked_at: _l0, lock_reason: _r0, ...restBefore } = stable(before);
    assert.deepEqual(rest, restBefore, 'name, email, desks and attributes are kept');
  });

  test('removes an optional member with null, at the top and inside an object', async (t) => {
    const f = await withAlice(t);
    const patched = await call(f, 'PATCH', '/admin/users/alice', { email: null, attributes: { region: null, kyc_status: 'expired' } });
    assert.equal(patched.statusCode, 200, patched.body);
    const after = await get(f, '/admin/users/alice');
    assert.equal(after.email, null);
    assert.equal(after.name, 'Alice Trader');
    // An older document's attributes.kyc_status is the person's KYC record (src/risk/kyc), not an attribute.
    assert.deepEqual(after.attributes, { suitability: ['fx'] });
    assert.equal((await get(f, '/admin/kyc/users/alice')).status, 'expired');
    assert.deepEqual(after.desks, ['fx-spot']);
  });

  test('refuses a patch that would make the person invalid, and changes nothing', async (t) => {
    const f = await withAlice(t);
    const before = await get(f, '/admin/users/alice');
    const refused = assertOAuthError(await call(f, 'PATCH', '/admin/users/alice', { email: 'not-an-address', status: 'gone' }), 400, 'invalid_request');
    assert.match(String(refused.error_description), /users\[0\]\.email: must be an email address/);
    assert.match(String(refused.error_description), /users\[0\]\.status: must be one of/);
    assertOAuthError(await call(f, 'PATCH', '/admin/users/alice', { username: 'bob' }), 400, 'invalid_request');
    assertOAuthError(await call(f, 'PATCH', '/admin/users/alice', { created_at: '2020-01-01T00:00:00.000Z' }), 400, 'invalid_request');
    assertOAuthError(await call(f, 'PATCH', '/admin/users/alice', ['status', 'locked']), 400, 'invalid_request');
    assert.deepEqual(await get(f, '/admin/users/alice'), before);
  });

  test('answers 415 with Accept-Patch for another media type, and 404 for an unknown person', async (t) => {
    const f = await withAlice(t);
    const wrongType = assertOAuthError(await call(f, 'PATCH', '/admin/users/alice', { status: 'locked' }, 'application/json'), 415, 'invalid_request');
    assert.match(String(wrongType.error_description), /application\/merge-patch\+json/);
    const response = await call(f, 'PATCH', '/admin/users/alice', { status: 'locked' }, 'application/json-patch+json');
    assert.equal(response.statusCode, 415);
    assert.equal((await get(f, '/admin/users/alice')).status, 'active');
    const accept = await call(f, 'PATCH', '/admin/users/alice', { status: 'locked' }, 'application/json');
    assert.equal(accept.headers['accept-patch'], 'application/merge-patch+json');
    assertOAuthError(await call(f, 'PATCH', '/admin/users/nobody', { status: 'locked' }), 404, 'not_found');
  });

  test('patches a client and a resource server, member by member', async (t) => {
    const f = await protocolFixture(t);
    const client = await get(f, '/admin/clients/broker-3');
    const patched = await call(f, 'PATCH', '/admin/clients/broker-3', { client_name: 'Broker Three', scope: 'order:create order:cancel' });
    assert.equal(patched.statusCode, 200, patched.body);
    assert.equal(patched.json().outcome, 'updated');
    assert.equal(patched.json().client_secret, undefined, 'the secret is kept, not shown');
    assert.deepEqual(await get(f, '/admin/clients/broker-3'), { ...client, client_name: 'Broker Three', scope: 'order:create order:cancel' });
    const unnamed = await call(f, 'PATCH', '/admin/clients/broker-3', { client_name: null });
    assert.equal(unnamed.statusCode, 200, unnamed.body);
    assert.deepEqual(await get(f, '/admin/clients/broker-3'), { ...client, scope: 'order:create order:cancel' });
    assertOAuthError(await call(f, 'PATCH', '/admin/clients/broker-3', { grant_types: null }), 400, 'invalid_request');
    assertOAuthError(await call(f, 'PATCH', '/admin/clients/nobody', { client_name: 'x' }), 404, 'not_found');

    const orders = 'https://orders.example.com/api';
    const path = `/admin/resource-servers/${encodeURIComponent(orders)}`;
    const server = async () => ((await get(f, '/admin/resource-servers')).resource_servers as Record<string, unknown>[]).find((r) => r.identifier === orders)!;
    const before = await server();
    const ttl = await call(f, 'PATCH', path, { access_token_ttl: 60 });
    assert.equal(ttl.statusCode, 200, ttl.body);
    assert.deepEqual(await server(), { ...before, access_token_ttl: 60 });
    assertOAuthError(await call(f, 'PATCH', path, { access_token_ttl: 0 }), 400, 'invalid_request');
    assertOAuthError(await call(f, 'PATCH', path, { identifier: 'https://elsewhere.example.com' }), 400, 'invalid_request');
    assert.deepEqual(await server(), { ...before, access_token_ttl: 60 });
  });
});

describe('mergePatch (RFC 7396 Appendix A)', () => {
  test('gives the results of the RFC\'s examples', () => {
    const examples: [unknown, unknown, unknown][] = [
      [{ a: 'b' }, { a: 'c' }, { a: 'c' }],
      [{ a: 'b' }, { b: 'c' }, { a: 'b', b: 'c' }],
      [{ a: 'b' }, { a: null }, {}],
      [{ a: 'b', b: 'c' }, { a: null }, { b: 'c' }],
      [{ a: ['b'] }, { a: 'c' }, { a: 'c' }],
      [{ a: 'c' }, { a: ['b'] }, { a: ['b'] }],
      [{ a: { b: 'c' } }, { a: { b: 'd', c: null } }, { a: { b: 'd' } }],
      [{ a: [{ b: 'c' }] }, { a: [1] }, { a: [1] }],
      [['a', 'b'], ['c', 'd'], ['c', 'd']],
      [{ a: 'b' }, ['c'], ['c']],
      [{ a: 'foo' }, null, null],
      [{ a: 'foo' }, 'bar', 'bar'],
      [{ e: null }, { a: 1 }, { e: null, a: 1 }],
      [[1, 2], { a: 'b', c: null }, { a: 'b' }],
      [{}, { a: { bb: { ccc: null } } }, { a: { bb: {} } }],
    ];
    for (const [target, patch, result] of examples) assert.deepEqual(mergePatch(target, patch), result, JSON.stringify([target, patch]));
  });

  test('never sets a prototype through a __proto__ member', () => {
    const patched = mergePatch({}, JSON.parse('{"__proto__": {"polluted": true}}')) as Record<string, unknown>;
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    assert.equal(Object.getPrototypeOf(patched), Object.prototype);
    assert.deepEqual(Object.keys(patched), ['__proto__']);
  });
});
