import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { adminAudience } from '../../src/admin/authorize.ts';
import { assertOAuthError, protocolFixture } from './fixture.ts';

// GET /admin/alerts (src/endpoints/alerts): each query parameter at most once, as a string.

describe('the alerts admin API', () => {
  test('refuses a repeated type or limit, an empty or overlong type and a malformed limit with 400 invalid_request, never a 5xx', async (t) => {
    const f = await protocolFixture(t);
    const token = await f.accessToken('admin-viewer', { resource: adminAudience(f.issuer) });
    const get = (query: string) => f.inject({ method: 'GET', url: `/admin/alerts?${query}`, headers: { authorization: `Bearer ${token}` } });
    for (const query of ['type=a&type=b', 'limit=1&limit=2', 'type=', `type=${'x'.repeat(65)}`, 'limit=1e2', 'limit=%201', 'limit=0', 'limit=501', 'type[x]=1']) {
      const res = await get(query);
      if (query === 'type[x]=1') {
        // Fastify's query parser reads `type[x]` as its own key: it filters nothing.
        assert.equal(res.statusCode, 200, res.body);
        continue;
      }
      assertOAuthError(res, 400, 'invalid_request', query);
      assert.equal(res.headers['cache-control'], 'no-store', query);
    }
    const ok = await get('type=recovery.approved&limit=500');
    assert.equal(ok.statusCode, 200, ok.body);
    assert.deepEqual(ok.json(), { alerts: [] });
  });
});
