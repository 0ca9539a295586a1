import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { adminAudience } from '../../src/admin/authorize.ts';
import { consoleClientId } from '../../src/console/client.ts';
import { documentDigest } from '../../src/lifecycle/plan.ts';
import { assertOAuthError, ordersApi, protocolFixture, type ProtocolFixture } from '../endpoints/fixture.ts';

/**
 * POST /admin/apply (issue 23 item 1): apply through the admin API — the plan with dry_run=true
 * (admin:read), the apply and the prune with admin:write, the document's digest in the answer and
 * in every event it causes.
 */

async function adminToken(f: ProtocolFixture, clientId = 'admin-ops'): Promise<string> {
  return f.accessToken(clientId, { resource: adminAudience(f.issuer) });
}

function post(f: ProtocolFixture, query: string, body: string, token?: string, type = 'application/json'): Promise<LightMyRequestResponse> {
  return f.inject({ method: 'POST', url: `/admin/apply${query}`, payload: body, headers: { 'content-type': type, ...(token ? { authorization: `Bearer ${token}` } : {}) } });
}

/** Every client the fixture registered but broker-3 (and the console's own). */
async function withoutBroker3(f: ProtocolFixture): Promise<string> {
  const clients = (await f.ctx.clients.list()).filter((c) => c.metadata.client_id !== consoleClientId && c.metadata.client_id !== 'broker-3').map((c) => c.metadata);
  return JSON.stringify({ clients });
}

describe('POST /admin/apply', () => {
  test('dry_run=true answers the plan with the document digest, with an admin:read token, and writes nothing', async (t) => {
    const f = await protocolFixture(t, { risk: 'off' });
    const body = await withoutBroker3(f);
    const response = await post(f, '?dry_run=true&prune=true', body, await adminToken(f, 'admin-viewer'));
    assert.equal(response.statusCode, 200, response.body);
    const plan = response.json() as { document_digest: string; dry_run: boolean; changes: unknown[]; refusals: unknown[] };
    assert.equal(plan.document_digest, documentDigest(body));
    assert.equal(plan.dry_run, true);
    assert.deepEqual(plan.changes, [{ kind: 'client', id: 'broker-3', outcome: 'disabled' }]);
    assert.deepEqual(plan.refusals, []);
    assert.equal((await f.ctx.clients.get('broker-3'))?.disabledAt, null);
  });

  test('applying needs admin:write: an admin:read token is refused with 403 insufficient_scope; no token is 401', async (t) => {
    const f = await protocolFixture(t, { risk: 'off' });
    assertOAuthError(await post(f, '?prune=true', await withoutBroker3(f), await adminToken(f, 'admin-viewer')), 403, 'insufficient_scope');
    assertOAuthError(await post(f, '?dry_run=true', await withoutBroker3(f)), 401, 'invalid_token');
    assert.equal((await f.ctx.clients.get('broker-3'))?.disabledAt, null);
  });

  test('prune=true disables what the document no longer declares, its tokens inactive at once; each change carries the digest', async (t) => {
    const f = await protocolFixture(t, { risk: 'off' });
    const token = await f.accessToken('broker-3', { resource: ordersApi });
    const body = await withoutBroker3(f);
    const response = await post(f, '?prune=true', body, await adminToken(f));
    assert.equal(response.statusCode, 200, response.body);
    assert.equal(response.headers['cache-control'], 'no-store');
    assert.deepEqual((response.json() as { changes: unknown[] }).changes, [{ kind: 'client', id: 'broker-3', outcome: 'disabled' }]);
    const introspected = await f.post('/introspect', { auth: f.basic('orders-gateway'), form: { token } });
    assert.equal((introspected.json() as { active: boolean }).active, false);
    const events = (await f.auditEvents('config.changed')).filter((e) => e.details?.document_digest === documentDigest(body));
    assert.deepEqual(
      events.map((e) => [e.details!.kind, e.details!.id, e.details!.outcome, e.details!.via]),
      [['client', 'broker-3', 'disabled', 'admin-api']],
    );
  });

  test('the same document as YAML is read, with the digest of its exact bytes', async (t) => {
    const f = await protocolFixture(t, { risk: 'off' });
    const yaml = 'resource_servers:\n  - identifier: https://surveillance.example.com\n    scopes: [report:view]\n';
    const response = await post(f, '?dry_run=true', yaml, await adminToken(f), 'application/yaml');
    assert.equal(response.statusCode, 200, response.body);
    const plan = response.json() as { document_digest: string; changes: unknown[] };
    assert.equal(plan.document_digest, documentDigest(yaml));
    assert.deepEqual(plan.changes, [{ kind: 'resource_server', id: 'https://surveillance.example.com', outcome: 'created' }]);
    assert.equal(await f.ctx.resourceServers.get('https://surveillance.example.com'), undefined);
  });

  test('an invalid document is 400 invalid_request naming each problem; a prune past the safety rule is 409; neither writes', async (t) => {
    const f = await protocolFixture(t, { risk: 'off' });
    const token = await adminToken(f);
    const invalid = assertOAuthError(await post(f, '', JSON.stringify({ clients: [{ client_id: 'web', redirect_uris: ['http://web.example.com/cb'] }] }), token), 400, 'invalid_request');
    assert.match(String(invalid.error_description), /clients\[0\]/);
    assertOAuthError(await post(f, '', '{not json', token), 400, 'invalid_request');
    assertOAuthError(await post(f, '?force=true', '{}', token), 400, 'invalid_request');
    const refused = assertOAuthError(await post(f, '?prune=true', JSON.stringify({ clients: [] }), token), 409, 'invalid_request');
    assert.match(String(refused.error_description), /prune refused/);
    assert.equal((await f.ctx.clients.list()).filter((c) => c.disabledAt !== null).length, 0);
  });
});

describe('POST /admin/apply and secrets', () => {
  test('a dry run of a document with a password or a secret needs admin:write: a reader would learn whether a guessed password is right', async (t) => {
    const f = await protocolFixture(t, { risk: 'off' });
    await f.apply({ users: [{ username: 'alice', name: 'Alice Trader', password: 'the real passphrase 1' }] });
    const guess = JSON.stringify({ users: [{ username: 'alice', name: 'Alice Trader', password: 'the real passphrase 1' }] });
    assertOAuthError(await post(f, '?dry_run=true', guess, await adminToken(f, 'admin-viewer')), 403, 'insufficient_scope');
    assertOAuthError(await post(f, '?dry_run=true', JSON.stringify({ alerts: { webhooks: [{ name: 'x', url: 'https://hooks.example.com', secret: 'guess' }] } }), await adminToken(f, 'admin-viewer')), 403, 'insufficient_scope');
    const withWrite = await post(f, '?dry_run=true', guess, await adminToken(f));
    assert.equal(withWrite.statusCode, 200, withWrite.body);
  });

  test('applying needs admin:write only: a token without admin:read applies', async (t) => {
    const f = await protocolFixture(t, { risk: 'off' });
    await f.apply({ clients: [{ client_id: 'gitops', kind: 'service', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], scope: 'admin:write' }] });
    const token = await f.accessToken('gitops', { resource: adminAudience(f.issuer) });
    const response = await post(f, '', JSON.stringify({ resource_servers: [{ identifier: 'https://surveillance.example.com', scopes: ['report:view'] }] }), token);
    assert.equal(response.statusCode, 200, response.body);
    assert.deepEqual((response.json() as { changes: unknown[] }).changes, [{ kind: 'resource_server', id: 'https://surveillance.example.com', outcome: 'created' }]);
    assertOAuthError(await post(f, '?dry_run=true', '{}', token), 403, 'insufficient_scope');
  });
});

describe('POST /admin/apply and policy activation', () => {
  const permitAll = '@id("all") permit (principal, action, resource);';

  test('a document activates no policy set through the admin API: the approver it names is only text, so one caller would be both people', async (t) => {
    const f = await protocolFixture(t, { risk: 'off' });
    const token = await adminToken(f);
    const document = JSON.stringify({ policies: [{ version: 'v-self', text: permitAll, change_ref: 'CHG-1', author: 'alice', approver: 'bob', active: true }] });
    // The plan says what the apply would do: refused, as the apply is.
    assertOAuthError(await post(f, '?dry_run=true', document, token), 403, 'access_denied');
    const refused = assertOAuthError(await post(f, '', document, token), 403, 'access_denied');
    assert.match(String(refused.error_description), /policies\/v-self\/activate/);
    assert.equal(await f.ctx.policies.get('v-self'), undefined);
    // Storing a version (not active) stays apply's; a second person activates it at POST /admin/policies/{version}/activate.
    const stored = await post(f, '', JSON.stringify({ policies: [{ version: 'v-self', text: permitAll, change_ref: 'CHG-1', author: 'alice' }] }), token);
    assert.equal(stored.statusCode, 200, stored.body);
    assert.equal((await f.ctx.policies.get('v-self'))?.active, false);
  });

  test('a document naming the policy set already active, active: true, still applies: it activates nothing', async (t) => {
    const f = await protocolFixture(t, { risk: 'off' });
    await f.apply({ policies: [{ version: 'v1', text: permitAll, change_ref: 'CHG-1', author: 'alice', approver: 'bob', active: true }] });
    const response = await post(f, '', JSON.stringify({ policies: [{ version: 'v1', text: permitAll, change_ref: 'CHG-1', author: 'alice', approver: 'bob', active: true }] }), await adminToken(f));
    assert.equal(response.statusCode, 200, response.body);
  });
});

describe('POST /admin/apply and YAML aliases', () => {
  test('a YAML document whose alias holds itself is 400 invalid_request naming it, never a 5xx, for the plan and the apply', async (t) => {
    const f = await protocolFixture(t, { risk: 'off' });
    for (const [query, token] of [['?dry_run=true', await adminToken(f, 'admin-viewer')], ['', await adminToken(f)]] as const) {
      for (const yaml of ['a: &a [*a, *a]\n', 'clients: &c\n  - client_id: x\n    redirect_uris: *c\n']) {
        const refused = assertOAuthError(await post(f, query, yaml, token, 'application/yaml'), 400, 'invalid_request');
        assert.match(String(refused.error_description), /alias/);
      }
    }
    // An alias of a node outside itself (a shared list) is still read.
    const shared = await post(f, '?dry_run=true', 'resource_servers:\n  - identifier: https://a.example.com\n    scopes: &s [report:view]\n  - identifier: https://b.example.com\n    scopes: *s\n', await adminToken(f), 'application/yaml');
    assert.equal(shared.statusCode, 200, shared.body);
  });
});
