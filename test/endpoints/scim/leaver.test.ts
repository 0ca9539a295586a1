import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { scimAudience } from '../../../src/resource-servers/builtins.ts';
import { codeFlowFixture } from '../../authorization/fixture.ts';
import { ordersApi, secretClient } from '../fixture.ts';
import { testDialects } from '../../helpers/storage.ts';

const patchOp = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';

for (const dialect of testDialects()) {
  describe(`SCIM leaver and desks on ${dialect.name}`, () => {
    test('a PATCH active:false from an HR system ends every session, token and consent of the person, and one user.offboarded event lists them', async (t) => {
      const f = await codeFlowFixture(t, { dialect, risk: 'off', env: { CLEARANCE_SCIM_GLOBAL_CLIENTS: 'hr-system' } });
      await f.apply({ clients: [secretClient('hr-system', 'scim:read scim:write')] });
      const hr = await f.accessToken('hr-system', { resource: scimAudience(f.issuer) });
      const { code, pkce } = await f.authorizeAndApprove({ query: { scope: 'openid offline_access order:create', resource: ordersApi } });
      const redeemed = (await f.redeem('web-app', code, pkce.verifier)).json() as { access_token: string; refresh_token: string };
      const userId = JSON.parse(Buffer.from(redeemed.access_token.split('.')[1]!, 'base64url').toString()).sub as string;
      assert.equal((await f.introspect('orders-gateway', redeemed.access_token)).active, true);

      const patched = await f.inject({
        method: 'PATCH',
        url: `/scim/v2/Users/${userId}`,
        headers: { authorization: `Bearer ${hr}`, 'content-type': 'application/scim+json' },
        // As Microsoft Entra sends it: op capitalised, the boolean as a string.
        payload: JSON.stringify({ schemas: [patchOp], Operations: [{ op: 'Replace', path: 'active', value: 'False' }] }),
      });
      assert.equal(patched.statusCode, 200, patched.body);
      assert.equal(patched.json().active, false);

      assert.equal((await f.introspect('orders-gateway', redeemed.access_token)).active, false);
      assert.notEqual((await f.refresh('web-app', redeemed.refresh_token)).statusCode, 200);
      const live = await f.ctx.storage.db.selectFrom('sessions').select('id').where('user_id', '=', userId).where('ended_at', 'is', null).execute();
      assert.equal(live.length, 0);
      const offboarded = await f.auditEvents('user.offboarded' as never);
      assert.equal(offboarded.length, 1);
      assert.equal(offboarded[0]!.subject, userId);
      assert.equal(offboarded[0]!.details?.via, 'scim');
      const text = JSON.stringify(offboarded[0]!.details);
      assert.match(text, /session/);
      assert.match(text, /consent/i);
    });

    test('a Group is a desk: PATCH adds and removes members (RFC 7644 §3.5.2), which moves people on and off the desk, each move recorded', async (t) => {
      const f = await codeFlowFixture(t, { dialect, risk: 'off', env: { CLEARANCE_SCIM_GLOBAL_CLIENTS: 'hr-system' } });
      await f.apply({
        clients: [secretClient('hr-system', 'scim:read scim:write')],
        regions: [{ id: 'uk' }],
        legal_entities: [{ lei: '5493001KJTIIGC8Y1R12', name: 'Broker Ltd', jurisdiction: 'GB', home_region: 'uk', roles: ['broker'], desks: [{ id: 'fx-spot', name: 'FX Spot' }] }],
      });
      const hr = await f.accessToken('hr-system', { resource: scimAudience(f.issuer) });
      const alice = await f.user('alice');
      const call = (method: string, url: string, body?: unknown) =>
        f.inject({ method: method as 'GET', url: `/scim/v2${url}`, headers: { authorization: `Bearer ${hr}`, ...(body ? { 'content-type': 'application/scim+json' } : {}) }, ...(body ? { payload: JSON.stringify(body) } : {}) });
      const group = await call('GET', '/Groups/fx-spot');
      assert.equal(group.statusCode, 200, group.body);
      assert.deepEqual([group.json().displayName, group.json().members], ['FX Spot', []]);
      const added = await call('PATCH', '/Groups/fx-spot', { schemas: [patchOp], Operations: [{ op: 'add', path: 'members', value: [{ value: alice }] }] });
      assert.equal(added.statusCode, 200, added.body);
      assert.deepEqual(added.json().members.map((m: { value: string }) => m.value), [alice]);
      assert.deepEqual((await call('GET', `/Users/${alice}`)).json().groups.map((g: { value: string }) => g.value), ['fx-spot']);
      assert.equal((await call('GET', `/Groups?filter=${encodeURIComponent('displayName eq "fx spot"')}`)).json().totalResults, 1);
      const removed = await call('PATCH', '/Groups/fx-spot', { schemas: [patchOp], Operations: [{ op: 'remove', path: `members[value eq "${alice}"]` }] });
      assert.equal(removed.statusCode, 200, removed.body);
      assert.deepEqual(removed.json().members, []);
      // Joining and leaving the desk are moves: each decided again and recorded (src/lifecycle/mover.ts).
      const moves = await f.auditEvents('user.moved');
      assert.deepEqual(
        moves.map((e) => [e.subject, e.details!.via, e.details!.desks_before, e.details!.desks_after]),
        [
          [alice, 'scim', [], ['fx-spot']],
          [alice, 'scim', ['fx-spot'], []],
        ],
      );
      assert.equal((await call('PATCH', '/Groups/fx-spot', { schemas: [patchOp], Operations: [{ op: 'add', path: 'members', value: [{ value: 'nobody' }] }] })).statusCode, 400);
      assert.equal((await call('POST', '/Groups', { schemas: ['urn:ietf:params:scim:schemas:core:2.0:Group'], displayName: 'x' })).statusCode, 405);
    });
  });
}
