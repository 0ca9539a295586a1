import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { adminAudience } from '../../src/admin/authorize.ts';
import { mintAccessToken, newJti } from '../../src/tokens/access-token.ts';
import { exampleMandate } from '../mandates/fixture.ts';
import { assertOAuthError, ordersApi, protocolFixture, type ProtocolFixture } from './fixture.ts';
import { auditRefuses } from '../helpers/audit-faults.ts';

async function adminToken(f: ProtocolFixture, clientId = 'admin-ops'): Promise<string> {
  return f.accessToken(clientId, { resource: adminAudience(f.issuer) });
}

function call(f: ProtocolFixture, method: 'GET' | 'POST', url: string, token: string | undefined, body?: unknown): Promise<LightMyRequestResponse> {
  return f.inject({
    method,
    url,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
  });
}

const day = 86_400_000;

/**
 * The example mandate for broker-1 on the fixture's Order API, in force from yesterday for a year
 * (the fixture's clock starts at the real time, and its signing key with it).
 */
const brokerMandate = {
  ...exampleMandate,
  grantee: { client_id: 'broker-1' },
  scopes: ['order:create', 'order:cancel'],
  effective_from: new Date(Date.now() - day).toISOString(),
  effective_to: new Date(Date.now() + 365 * day).toISOString(),
};

/** An access token for broker-1 that names a mandate version, as a grant will mint it. */
async function mandateToken(f: ProtocolFixture, mandate: { id: string; v: number }): Promise<string> {
  const now = Math.floor(f.clock.now() / 1000);
  return mintAccessToken(f.ctx.keys, {
    iss: f.issuer,
    sub: 'broker-1',
    aud: ordersApi,
    exp: now + 120,
    iat: now,
    jti: newJti(),
    client_id: 'broker-1',
    scope: 'order:create',
    mandate,
  });
}

async function introspection(f: ProtocolFixture, token: string, caller = 'broker-1'): Promise<Record<string, unknown>> {
  const response = await f.post('/introspect', { auth: f.basic(caller), form: { token } });
  assert.equal(response.statusCode, 200, response.body);
  return response.json() as Record<string, unknown>;
}

describe('the admin API for mandates', () => {
  test('a live token becomes inactive at introspection the moment its mandate is revoked', async (t) => {
    const f = await protocolFixture(t);
    const admin = await adminToken(f);
    const created = await call(f, 'POST', '/admin/mandates', admin, { ...brokerMandate, accepted_by: 'broker-coo' });
    assert.equal(created.statusCode, 201, created.body);
    assert.equal(created.json().status, 'active');
    assert.equal(created.json().accepted_at, new Date(f.clock.now()).toISOString(), 'accepted_at defaults to now');

    const token = await mandateToken(f, { id: brokerMandate.id, v: 1 });
    const live = await introspection(f, token);
    assert.equal(live.active, true);
    assert.deepEqual(live.mandate, { id: brokerMandate.id, v: 1 });
    assert.equal((await introspection(f, token, 'orders-gateway')).active, true);

    const revoked = await call(f, 'POST', `/admin/mandates/${brokerMandate.id}/revoke`, admin, { reason: 'client agreement terminated', revoked_by: 'grantor-coo' });
    assert.equal(revoked.statusCode, 200, revoked.body);
    assert.equal(revoked.json().status, 'revoked');
    assert.equal(revoked.json().revoked_by, 'grantor-coo');
    assert.equal(revoked.json().revoke_reason, 'client agreement terminated');
    assert.deepEqual(await introspection(f, token), { active: false });
    assert.deepEqual(await introspection(f, token, 'orders-gateway'), { active: false });

    const [event] = await f.auditEvents('mandate.revoked');
    assert.equal(event!.actor, 'admin-ops');
    assert.deepEqual(event!.mandate, { id: brokerMandate.id, v: 1 });
    assert.equal(typeof event!.requestId, 'string');
  });

  test('creates a proposal, accepts it, and amends it: the amended version is superseded at once and kept in the history', async (t) => {
    const f = await protocolFixture(t);
    const admin = await adminToken(f);
    const proposed = await call(f, 'POST', '/admin/mandates', admin, brokerMandate);
    assert.equal(proposed.statusCode, 201, proposed.body);
    assert.equal(proposed.json().status, 'proposed');
    assert.equal(proposed.json().created_by, 'admin-ops');

    const accepted = await call(f, 'POST', `/admin/mandates/${brokerMandate.id}/accept`, admin, { version: 1, accepted_by: 'broker-coo', accepted_at: new Date(f.clock.now() - 3600_000).toISOString() });
    assert.equal(accepted.statusCode, 200, accepted.body);
    assert.equal(accepted.json().status, 'active');
    assert.equal(accepted.json().accepted_by, 'broker-coo');
    const v1Token = await mandateToken(f, { id: brokerMandate.id, v: 1 });
    assert.equal((await introspection(f, v1Token)).active, true);

    f.clock.advance(60_000);
    const { id: _id, ...terms } = brokerMandate;
    const amended = await call(f, 'POST', `/admin/mandates/${brokerMandate.id}/amend`, admin, {
      ...terms,
      version: 1,
      constraints: { ...brokerMandate.constraints, max_notional: { amount: '1000000', currency: 'USD' } },
    });
    assert.equal(amended.statusCode, 200, amended.body);
    const body = amended.json() as Record<string, unknown> & { history: Record<string, unknown>[] };
    assert.equal(body.version, 2);
    assert.equal(body.status, 'proposed');
    assert.deepEqual(body.history.map((v) => [v.version, v.status]), [[1, 'superseded'], [2, 'proposed']]);
    assert.deepEqual((body.history[0]!.constraints as { max_notional: unknown }).max_notional, { amount: '5000000', currency: 'USD' });
    assert.deepEqual(await introspection(f, v1Token), { active: false }, 'superseded by the amendment');

    const read = await call(f, 'GET', `/admin/mandates/${brokerMandate.id}`, await adminToken(f, 'admin-viewer'));
    assert.equal(read.statusCode, 200, read.body);
    assert.equal(read.headers['cache-control'], 'no-store');
    assert.equal(read.json().version, 2);
    assert.equal(read.json().history.length, 2);
    assert.deepEqual(read.json().grantee, { client_id: 'broker-1' });
    assert.deepEqual(read.json().legal_basis, brokerMandate.legal_basis);

    const list = await call(f, 'GET', '/admin/mandates?status=proposed&grantee=broker-1', admin);
    assert.deepEqual((list.json().mandates as { id: string; version: number }[]).map((m) => [m.id, m.version]), [[brokerMandate.id, 2]]);
    assert.deepEqual((await call(f, 'GET', '/admin/mandates?status=active', admin)).json().mandates, []);
    assert.deepEqual((await f.auditEvents()).filter((e) => e.type.startsWith('mandate.')).map((e) => `${e.type} v${e.mandate!.v}`), [
      'mandate.created v1',
      'mandate.accepted v1',
      'mandate.amended v2',
    ]);
  });

  test('answers 400 with every problem at its path, 404 for an unknown mandate and 409 for a step the mandate does not allow', async (t) => {
    const f = await protocolFixture(t);
    const admin = await adminToken(f);
    const invalid = assertOAuthError(
      await call(f, 'POST', '/admin/mandates', admin, { ...brokerMandate, scopes: ['order:delete'], grantee: { client_id: 'nobody' }, constraints: { venues: ['xlon'] } }),
      400,
      'invalid_request',
    );
    assert.equal(invalid.error_description, "constraints.venues[0]: must be an ISO 10383 market identifier code such as XLON");
    const crossChecked = assertOAuthError(await call(f, 'POST', '/admin/mandates', admin, { ...brokerMandate, scopes: ['order:delete'], grantee: { client_id: 'nobody' } }), 400, 'invalid_request');
    assert.equal(crossChecked.error_description, "scopes: 'order:delete' is not offered by any resource server; grantee.client_id: no client 'nobody'");
    assertOAuthError(await call(f, 'POST', '/admin/mandates', admin, ['not an object']), 400, 'invalid_request');
    assertOAuthError(await call(f, 'GET', '/admin/mandates/nope', admin), 404, 'not_found');
    assertOAuthError(await call(f, 'POST', '/admin/mandates/nope/revoke', admin, { reason: 'x' }), 404, 'not_found');
    assertOAuthError(await call(f, 'GET', '/admin/mandates?status=gone', admin), 400, 'invalid_request');

    assert.equal((await call(f, 'POST', '/admin/mandates', admin, brokerMandate)).statusCode, 201);
    assertOAuthError(await call(f, 'POST', '/admin/mandates', admin, brokerMandate), 409, 'invalid_request');
    assertOAuthError(await call(f, 'POST', `/admin/mandates/${brokerMandate.id}/accept`, admin, { version: 2, accepted_by: 'x' }), 409, 'invalid_request');
    const missing = assertOAuthError(await call(f, 'POST', `/admin/mandates/${brokerMandate.id}/accept`, admin, { version: 1 }), 400, 'invalid_request');
    assert.equal(missing.error_description, 'accepted_by: is required');
    const noReason = assertOAuthError(await call(f, 'POST', `/admin/mandates/${brokerMandate.id}/revoke`, admin, { why: 'x' }), 400, 'invalid_request');
    assert.equal(noReason.error_description, 'why: is not a recognised field; reason: must be a non-empty string');
    const { id: _id, ...terms } = brokerMandate;
    const unchanged = assertOAuthError(await call(f, 'POST', `/admin/mandates/${brokerMandate.id}/amend`, admin, { ...terms, version: 1 }), 400, 'invalid_request');
    assert.equal(unchanged.error_description, 'the amendment changes nothing');
    assert.equal((await call(f, 'POST', `/admin/mandates/${brokerMandate.id}/revoke`, admin, { reason: 'withdrawn' })).statusCode, 200);
    assertOAuthError(await call(f, 'POST', `/admin/mandates/${brokerMandate.id}/revoke`, admin, { reason: 'withdrawn' }), 409, 'invalid_request');
    assertOAuthError(await call(f, 'POST', `/admin/mandates/${brokerMandate.id}/amend`, admin, { ...terms, scopes: ['order:create'], version: 1 }), 409, 'invalid_request');
  });

  test('puts each read of mandates that name people (a grantee, a signatory) on the record as people.reviewed by the reader, before answering', async (t) => {
    const f = await protocolFixture(t);
    const viewer = await adminToken(f, 'admin-viewer');
    assert.deepEqual((await call(f, 'GET', '/admin/mandates', viewer)).json().mandates, []);
    assert.equal((await f.auditEvents('people.reviewed')).length, 0, 'an empty page names no one');

    await f.apply({ users: [{ username: 'ana', password: 'a-long-enough-password-1', name: 'Ana Trader' }, { username: 'signer', password: 'a-long-enough-password-1', name: 'Sam Signer' }] });
    const personal = { ...brokerMandate, id: 'mandate-ana', grantee: { user: 'ana' }, granted_by: 'signer' };
    assert.equal((await call(f, 'POST', '/admin/mandates', await adminToken(f), personal)).statusCode, 201);
    assert.equal((await call(f, 'POST', '/admin/mandates', await adminToken(f), brokerMandate)).statusCode, 201);
    assert.equal((await f.auditEvents('people.reviewed')).length, 0, 'a write is on the record as mandate.created');

    assert.equal((await call(f, 'GET', '/admin/mandates', viewer)).json().mandates.length, 2);
    const one = await call(f, 'GET', '/admin/mandates/mandate-ana', viewer);
    assert.equal(one.statusCode, 200, one.body);
    const ana = one.json().grantee.user as string;
    assert.equal((await call(f, 'GET', `/admin/mandates/${brokerMandate.id}`, viewer)).statusCode, 200);

    const reads = await f.auditEvents('people.reviewed');
    assert.deepEqual(
      reads.map((e) => [e.actor, e.client, e.subject ?? null, e.details]),
      [
        ['admin-viewer', 'admin-viewer', null, { people: 2, via: 'mandates', mandates: 2 }],
        ['admin-viewer', 'admin-viewer', ana, { people: 2, via: 'mandates', mandate: 'mandate-ana' }],
        // A mandate between a legal entity and a client names no one in the directory, and may name a person in accepted_by or revoked_by.
        ['admin-viewer', 'admin-viewer', null, { people: 0, via: 'mandates', mandate: brokerMandate.id }],
      ],
    );
  });

  test('answers server_error, never a mandate, when its read cannot be put on the record', async (t) => {
    const f = await protocolFixture(t);
    assert.equal((await call(f, 'POST', '/admin/mandates', await adminToken(f), { ...brokerMandate, accepted_by: 'broker-coo' })).statusCode, 201);
    const viewer = await adminToken(f, 'admin-viewer');
    auditRefuses(t, f.ctx, 'people.reviewed');
    for (const url of ['/admin/mandates', `/admin/mandates/${brokerMandate.id}`]) {
      const failed = await call(f, 'GET', url, viewer);
      assert.deepEqual([failed.statusCode, failed.json().error, failed.headers['cache-control']], [500, 'server_error', 'no-store'], url);
      assert.doesNotMatch(failed.body, /broker-coo/, url);
    }
  });

  test('reads with admin:read, changes only with admin:write, and refuses a request without a token', async (t) => {
    const f = await protocolFixture(t);
    const viewer = await adminToken(f, 'admin-viewer');
    assert.equal((await call(f, 'GET', '/admin/mandates', viewer)).statusCode, 200);
    assertOAuthError(await call(f, 'POST', '/admin/mandates', viewer, brokerMandate), 403, 'insufficient_scope');
    assertOAuthError(await call(f, 'POST', '/admin/mandates/x/revoke', viewer, { reason: 'x' }), 403, 'insufficient_scope');
    assertOAuthError(await call(f, 'GET', '/admin/mandates', undefined), 401, 'invalid_token');
    const notAdmin = await f.accessToken('broker-1', { resource: ordersApi });
    assertOAuthError(await call(f, 'GET', '/admin/mandates', notAdmin), 401, 'invalid_token');
  });
});
