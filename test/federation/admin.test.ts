import assert from 'node:assert/strict';
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
