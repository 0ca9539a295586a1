import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { adminAudience } from '../../src/admin/authorize.ts';
import { planApply } from '../../src/apply/index.ts';
import { formatProblem } from '../../src/validation.ts';
import { assertOAuthError, protocolFixture } from '../endpoints/fixture.ts';
import { testContext } from '../helpers/storage.ts';

// A resource server's `owner_lei` (src/resource-servers/definition.ts, docs/apply.md): the firm that
// runs the API, a declared legal entity — checked in apply and through the admin API alike, stored
// with the definition, and the firm a token for it makes a party to the trade (docs/evidence.md).

const firm = '5493001KJTIIGC8Y1R12';
const undeclared = '254900EXAMPLEUS0AA64';
const entities = { regions: [{ id: 'uk' }], legal_entities: [{ lei: firm, name: 'Firm', jurisdiction: 'GB', home_region: 'uk', roles: ['clearing'] }] };
const server = (owner_lei: unknown) => ({ identifier: 'https://clearing.example.com', scopes: ['settlement:submit'], owner_lei });

describe('a resource server’s owner_lei in apply', () => {
  test('accepts a legal entity declared in the same document or before, and stores it with the resource server', async (t) => {
    const { ctx } = await testContext({ t });
    const { plan, problems } = await planApply(ctx, { ...entities, resource_servers: [server(firm)] });
    assert.deepEqual(problems.map(formatProblem), []);
    assert.equal(plan!.resourceServers[0]!.owner_lei, firm);
  });

  test('refuses an LEI that is malformed or no declared legal entity, at its path', async (t) => {
    const { ctx } = await testContext({ t });
    const problems = async (owner: unknown) => (await planApply(ctx, { ...entities, resource_servers: [server(owner)] })).problems.map(formatProblem);
    assert.deepEqual(await problems('5493001KJTIIGC8Y1R13'), ['resource_servers[0].owner_lei: must be a valid LEI (ISO 17442: 20 characters, check digits)']);
    assert.deepEqual(await problems(undeclared), [`resource_servers[0].owner_lei: "${undeclared}" is not a declared legal entity (add it under legal_entities)`]);
    assert.equal((await problems(42)).length, 1);
  });
});

describe('a resource server’s owner_lei through the admin API', () => {
  test('PUT and PATCH store a declared one, refuse an undeclared one (400) and show it on GET', async (t) => {
    const f = await protocolFixture(t);
    await f.apply(entities);
    const token = await f.accessToken('admin-ops', { resource: adminAudience(f.issuer) });
    const call = (method: 'PUT' | 'PATCH' | 'GET', url: string, body?: unknown) =>
      f.inject({
        method,
        url,
        headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': method === 'PATCH' ? 'application/merge-patch+json' : 'application/json' }) },
        ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
      });
    const identifier = 'https://clearing.example.com';
    const put = await call('PUT', '/admin/resource-servers', { identifier, scopes: ['settlement:submit'], access_token_ttl: 300, require_sender_constraint: false, owner_lei: firm });
    assert.equal(put.statusCode, 200, put.body);
    assert.equal(put.json().owner_lei, firm);
    const listed = async () => ((await call('GET', '/admin/resource-servers')).json().resource_servers as Record<string, unknown>[]).find((r) => r.identifier === identifier)!;
    assert.equal((await listed()).owner_lei, firm);
    const path = `/admin/resource-servers/${encodeURIComponent(identifier)}`;
    const refused = assertOAuthError(await call('PATCH', path, { owner_lei: undeclared }), 400, 'invalid_request');
    assert.match(String(refused.error_description), /owner_lei: .254900EXAMPLEUS0AA64. is not a declared legal entity/);
    assert.equal((await listed()).owner_lei, firm, 'unchanged');
    // JSON Merge Patch: null removes the member.
    assert.equal((await call('PATCH', path, { owner_lei: null })).statusCode, 200);
    assert.equal((await listed()).owner_lei, undefined);
  });
});
