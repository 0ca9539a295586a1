import assert from 'node:assert/strict';
import { test } from 'node:test';
import { revokeGrant } from '../../src/authorization/consent.ts';
import { codeFlowFixture, webRedirect } from '../authorization/fixture.ts';

test('an admin-API token issued to a person stops working the moment their consent grant is revoked', async (t) => {
  const f = await codeFlowFixture(t);
  await f.apply({
    clients: [
      {
        client_id: 'ops-console',
        kind: 'app',
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: ['authorization_code'],
        redirect_uris: [webRedirect],
        scope: 'admin:read',
      },
    ],
  });
  const admin = `${f.issuer}/admin`;
  const { code, pkce } = await f.authorizeAndApprove({ client: 'ops-console', query: { scope: 'admin:read', resource: admin } });
  const redeemed = await f.redeem('ops-console', code, pkce.verifier);
  assert.equal(redeemed.statusCode, 200, redeemed.body);
  const token = redeemed.json().access_token as string;
  const call = () => f.app.inject({ method: 'GET', url: '/admin/clients', headers: { authorization: `Bearer ${token}` } });
  assert.equal((await call()).statusCode, 200);

  const grantId = (await f.ctx.storage.db.selectFrom('grants').select('id').where('client_id', '=', 'ops-console').executeTakeFirstOrThrow()).id;
  assert.equal(await revokeGrant(f.ctx, grantId, { actor: 'test', reason: 'access review' }), true);
  const refused = await call();
  assert.equal(refused.statusCode, 401);
  assert.equal(refused.json().error, 'invalid_token');
  assert.match(String(refused.headers['www-authenticate']), /invalid_token/);
});
