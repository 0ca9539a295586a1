import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { getGrant } from '../../src/authorization/consent.ts';
import { createMandate, getMandate } from '../../src/mandates/store.ts';
import { codeFlowFixture, type CodeFlowFixture } from '../authorization/fixture.ts';
import { assertOAuthError, ordersApi } from '../endpoints/fixture.ts';
import { testDialects } from '../helpers/storage.ts';
import { mandateEntry } from '../mandates/fixture.ts';

/**
 * The mover (issue 23 item 2, src/lifecycle/mover.ts): a change of desks through apply or the
 * admin API re-decides the person's live consent grants and the mandates granted to them under the
 * active policy set, revokes what the new position does not allow, and records one `user.moved`.
 */

const day = 86_400_000;
const iso = (ms: number) => new Date(ms).toISOString();
const alice = { username: 'alice', name: 'Alice Trader', email: 'alice@broker.example.com' };

const policy = [
  '@id("fx-orders") permit (principal in Desk::"fx-spot", action == Action::"order:create", resource);',
  '@id("fx-cancels") permit (principal in Desk::"fx-spot", action == Action::"order:cancel", resource);',
  '@id("positions") permit (principal, action == Action::"position:view", resource);',
  '@id("openid") permit (principal, action, resource) when { context has acr };',
].join('\n');

async function scene(t: TestContext, dialect: ReturnType<typeof testDialects>[number]) {
  const f = await codeFlowFixture(t, { dialect, risk: 'off' });
  await f.apply({
    regions: [{ id: 'eu' }],
    legal_entities: [
      { lei: '5493001KJTIIGC8Y1R12', name: 'Example Broker Ltd', jurisdiction: 'GB', home_region: 'eu', roles: ['broker'], desks: [{ id: 'fx-spot', name: 'FX spot' }, { id: 'rates', name: 'Rates' }] },
    ],
    policies: [{ version: 'desks-1', text: policy, change_ref: 'C1', author: 'a', approver: 'b', active: true }],
  });
  const person = await f.signIn('alice');
  await f.apply({ users: [{ ...alice, desks: ['fx-spot'] }] });
  const { code, pkce } = await f.authorizeAndApprove({ person, query: { scope: 'openid offline_access order:create', resource: ordersApi } });
  const redeemed = await f.redeem('web-app', code, pkce.verifier);
  assert.equal(redeemed.statusCode, 200, redeemed.body);
  const { refresh_token: refresh, access_token: access } = redeemed.json() as { refresh_token: string; access_token: string };
  const grantId = (JSON.parse(Buffer.from(access.split('.')[1]!, 'base64url').toString()) as { grant_id: string }).grant_id;
  const now = f.clock.now();
  const window = { effective_from: iso(now - day), effective_to: iso(now + 365 * day) };
  const acceptance = { by: 'desk-head', at: now - day };
  await createMandate(f.ctx, { ...mandateEntry({ id: 'orders-for-alice', ...window, grantee: { user: person.userId } }), acceptance }, { actor: 'admin-ops' });
  await createMandate(f.ctx, { ...mandateEntry({ id: 'positions-for-alice', ...window, grantee: { user: person.userId }, scopes: ['position:view'] }), acceptance }, { actor: 'admin-ops' });
  return { f, userId: person.userId, refresh, grantId };
}

async function adminPatch(f: CodeFlowFixture, body: unknown) {
  const token = await f.accessToken('admin-ops', { resource: `${f.issuer}/admin` });
  return f.inject({ method: 'PATCH', url: '/admin/users/alice', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/merge-patch+json' }, payload: JSON.stringify(body) });
}

for (const dialect of testDialects()) {
  describe(`a mover on ${dialect.name}`, () => {
    test('a desk change through apply revokes the grants and mandates the new desk is not allowed, keeps the rest, and records one user.moved', async (t) => {
      const { f, userId, refresh, grantId } = await scene(t, dialect);
      await f.apply({ users: [{ ...alice, desks: ['rates'] }] });

      assert.notEqual((await getGrant(f.ctx, grantId))!.revokedAt, null, 'the grant of order:create is revoked');
      assertOAuthError(await f.refresh('web-app', refresh, { resource: ordersApi }), 400, 'invalid_grant');
      assert.equal((await getMandate(f.ctx, 'orders-for-alice'))!.current.status, 'revoked');
      assert.equal((await getMandate(f.ctx, 'positions-for-alice'))!.current.status, 'active', 'position:view is still allowed');

      const moved = (await f.auditEvents('user.moved')).filter((e) => (e.details!.desks_after as string[]).includes('rates'));
      assert.equal(moved.length, 1);
      const [event] = moved;
      assert.equal(event!.subject, userId);
      assert.deepEqual(event!.details!.desks_before, ['fx-spot']);
      assert.deepEqual(event!.details!.desks_after, ['rates']);
      assert.deepEqual(event!.details!.legal_entities_after, ['5493001KJTIIGC8Y1R12']);
      assert.equal(event!.details!.policy_version, 'desks-1');
      assert.deepEqual((event!.details!.grants_revoked as { grant_id: string }[]).map((g) => g.grant_id), [grantId]);
      assert.match((event!.details!.grants_revoked as { why: string }[])[0]!.why, /no policy permits order:create/);
      assert.deepEqual((event!.details!.mandates_revoked as { mandate_id: string }[]).map((m) => m.mandate_id), ['orders-for-alice']);
      assert.equal(JSON.stringify(event).includes('alice@'), false);
      const revoked = (await f.auditEvents('consent.revoked')).find((e) => e.details!.grant_id === grantId);
      assert.equal(revoked!.details!.reason, 'person moved');
    });

    test('a desk change through the admin API is a move too; a write that keeps the desks is not', async (t) => {
      const { f, grantId } = await scene(t, dialect);
      const before = (await f.auditEvents('user.moved')).length;
      const renamed = await adminPatch(f, { name: 'Alice Q. Trader' });
      assert.equal(renamed.statusCode, 200, renamed.body);
      assert.equal((await f.auditEvents('user.moved')).length, before, 'no move without a desk change');
      assert.equal((await getGrant(f.ctx, grantId))!.revokedAt, null);

      const patched = await adminPatch(f, { desks: ['rates'] });
      assert.equal(patched.statusCode, 200, patched.body);
      assert.equal((await f.auditEvents('user.moved')).length, before + 1);
      assert.notEqual((await getGrant(f.ctx, grantId))!.revokedAt, null);
    });

    test('a move within what the policy allows revokes nothing', async (t) => {
      const { f, grantId } = await scene(t, dialect);
      await f.apply({ users: [{ ...alice, desks: ['fx-spot', 'rates'] }] });
      assert.equal((await getGrant(f.ctx, grantId))!.revokedAt, null);
      assert.equal((await getMandate(f.ctx, 'orders-for-alice'))!.current.status, 'active');
      const last = (await f.auditEvents('user.moved')).at(-1)!;
      assert.deepEqual(last.details!.grants_revoked, []);
      assert.deepEqual(last.details!.mandates_revoked, []);
    });
  });
}
