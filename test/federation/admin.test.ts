import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, test } from 'node:test';
import { adminAudience } from '../../src/admin/authorize.ts';
import { executeApply, planApply } from '../../src/apply/index.ts';
import { assertOAuthError, ordersApi, protocolFixture } from '../endpoints/fixture.ts';
import { partnerKey } from './fixture.ts';

describe('GET /admin/partners', () => {
  test('lists the partner profiles to an admin:read token, and to nobody else', async (t) => {
    const f = await protocolFixture(t);
    const key = await partnerKey('acme-2025');
    const server = await f.ctx.resourceServers.get(ordersApi);
    const document = {
      partners: [
        {
          id: 'acme',
          issuer: 'https://as.acme-bank.example',
          jwks: { keys: [key.jwk] },
          algorithms: ['ES256'],
          allowed_audiences: [ordersApi],
          allowed_scopes: [server!.scopes[0]],
        },
      ],
    };
    const { plan, problems } = await planApply(f.ctx, document);
    assert.deepEqual(problems, []);
    await executeApply(f.ctx, plan!, { actor: 'test', via: 'cli' });

    const token = await f.accessToken('admin-viewer', { resource: adminAudience(f.issuer) });
    const listed = await f.inject({ method: 'GET', url: '/admin/partners', headers: { authorization: `Bearer ${token}` } });
    assert.equal(listed.statusCode, 200, listed.body);
    const [acme] = listed.json().partners as Record<string, unknown>[];
    assert.equal(acme?.id, 'acme');
    assert.equal(acme?.issuer, 'https://as.acme-bank.example');
    assert.equal(acme?.max_assertion_lifetime, 300);

    assertOAuthError(await f.inject({ method: 'GET', url: '/admin/partners' }), 401, 'invalid_token');
    const other = await f.accessToken('broker-1', { resource: ordersApi });
    assertOAuthError(await f.inject({ method: 'GET', url: '/admin/partners', headers: { authorization: `Bearer ${other}` } }), 401, 'invalid_token');
  });
});

describe('GET /admin/partners/{id}/check', () => {
  test('runs clearance partner check over the API, rule by rule, to an admin:write token', async (t) => {
    const f = await protocolFixture(t);
    const key = await partnerKey('acme-2025');
    const document = {
      partners: [
        {
          id: 'acme',
          // A loopback issuer nobody listens on: its metadata cannot be fetched (a note, not a failure).
          issuer: 'http://127.0.0.1:9',
          allow_private_network: true,
          jwks: { keys: [key.jwk] },
          algorithms: ['ES256', 'PS256'],
          allowed_audiences: [ordersApi],
          allowed_scopes: ['order:create'],
        },
      ],
    };
    const { plan, problems } = await planApply(f.ctx, document);
    assert.deepEqual(problems, []);
    await executeApply(f.ctx, plan!, { actor: 'test', via: 'cli' });
    const token = await f.accessToken('admin-ops', { resource: adminAudience(f.issuer) });

    const response = await f.inject({ method: 'GET', url: '/admin/partners/acme/check', headers: { authorization: `Bearer ${token}` } });
    assert.equal(response.statusCode, 200, response.body);
    const check = response.json() as { ok: boolean; lines: { status: string; rule: string; detail: string }[] };
    assert.equal(check.ok, false, 'PS256 has no key of its type');
    assert.ok(check.lines.some((l) => l.status === 'note' && l.rule === 'metadata'), JSON.stringify(check.lines));
    assert.ok(check.lines.some((l) => l.status === 'pass' && l.rule === 'algorithm ES256'));
    assert.ok(check.lines.some((l) => l.status === 'fail' && l.rule === 'algorithm PS256'));
    assertOAuthError(await f.inject({ method: 'GET', url: '/admin/partners/nobody/check', headers: { authorization: `Bearer ${token}` } }), 404, 'not_found');
    assertOAuthError(await f.inject({ method: 'GET', url: '/admin/partners/acme/check' }), 401, 'invalid_token');
  });

  test('needs admin:write: an admin:read token is refused with 403 before anything is fetched from the partner', async (t) => {
    const f = await protocolFixture(t);
    // The partner's own server, counting what Clearance asks of it.
    const asked: string[] = [];
    const server = createServer((request, response) => {
      asked.push(request.url ?? '');
      response.writeHead(404).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const key = await partnerKey('acme-2025');
    const { plan, problems } = await planApply(f.ctx, {
      partners: [{ id: 'acme', issuer, allow_private_network: true, jwks: { keys: [key.jwk] }, algorithms: ['ES256'], allowed_audiences: [ordersApi], allowed_scopes: ['order:create'] }],
    });
    assert.deepEqual(problems, []);
    await executeApply(f.ctx, plan!, { actor: 'test', via: 'cli' });

    const reader = await f.accessToken('admin-viewer', { resource: adminAudience(f.issuer) });
    const refused = await f.inject({ method: 'GET', url: '/admin/partners/acme/check', headers: { authorization: `Bearer ${reader}` } });
    assertOAuthError(refused, 403, 'insufficient_scope');
    assert.deepEqual(asked, [], 'a read token sets off no request to the partner');

    const writer = await f.accessToken('admin-ops', { resource: adminAudience(f.issuer) });
    const checked = await f.inject({ method: 'GET', url: '/admin/partners/acme/check', headers: { authorization: `Bearer ${writer}` } });
    assert.equal(checked.statusCode, 200, checked.body);
    assert.ok(asked.length > 0, 'the check itself fetches the partner\'s metadata and keys');
  });
});
