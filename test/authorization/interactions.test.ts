import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { findActiveGrant } from '../../src/authorization/consent.ts';
import { decideConsent, loadInteraction, nextStep, recordAuthentication } from '../../src/authorization/interactions.ts';
import { ordersApi } from '../endpoints/fixture.ts';
import { testDialects } from '../helpers/storage.ts';
import { codeFlowFixture } from './fixture.ts';

function interactionId(location: URL | undefined): string {
  assert.ok(location?.pathname.startsWith('/interaction/'), `to the people side: ${location?.href}`);
  return location!.pathname.split('/').pop()!;
}

describe('interactions read once per request', () => {
  test('refuses a decision when someone logged in after the interaction was read in this request, and writes nothing', async (t) => {
    const f = await codeFlowFixture(t);
    const alice = await f.signIn('alice');
    const bob = await f.signIn('bob');
    const id = interactionId((await f.authorize(f.request('web-app'))).location);
    const read = (await loadInteraction(f.ctx, id))!;
    assert.equal(read.authentication, undefined);
    // Another tab signs Alice in on the same interaction after this request read it.
    assert.equal(await recordAuthentication(f.ctx, id, alice.authentication), true);
    await assert.rejects(decideConsent(f.ctx, read, bob.authentication, true), /unknown, expired or already completed/);
    assert.equal(await findActiveGrant(f.ctx, bob.userId, 'web-app'), undefined, 'the grant rolled back with the decision');
    assert.equal((await f.auditEvents('consent.granted')).length, 0);
  });

  test('uses the grant read with the interaction for the person who logged in during it', async (t) => {
    const f = await codeFlowFixture(t);
    const { person } = await f.authorizeAndApprove({});
    const id = interactionId((await f.authorize(f.request('web-app', { prompt: 'login' }))).location);
    assert.equal(await recordAuthentication(f.ctx, id, person.authentication), true);
    const read = (await loadInteraction(f.ctx, id))!;
    assert.deepEqual(await nextStep(f.ctx, read, undefined), { step: 'done' }, 'the existing grant covers the request, without a session');
  });

  test('records no login on an interaction that ended, and says so', async (t) => {
    const f = await codeFlowFixture(t);
    const alice = await f.signIn('alice');
    const id = interactionId((await f.authorize(f.request('web-app'))).location);
    f.clock.advance(601_000);
    assert.equal(await recordAuthentication(f.ctx, id, alice.authentication), false);
  });
});

for (const dialect of testDialects()) {
  describe(`an interaction's writes, one flight each, on ${dialect.name}`, () => {
    test('records a login with the person’s grant in its transaction, so the next step of the request reads nothing', async (t) => {
      const f = await codeFlowFixture(t, { dialect });
      const { person } = await f.authorizeAndApprove({});
      const id = interactionId((await f.authorize(f.request('web-app'))).location);
      const read = (await loadInteraction(f.ctx, id))!;
      const flight = f.ctx.storage.flight();
      const recorded = recordAuthentication(f.ctx, read, person.authentication, flight);
      await flight.commit();
      assert.equal(await recorded, true);
      assert.deepEqual(read.authentication, person.authentication, 'the Interaction of this request is what the interaction now is');
      // The grant was read with the login: revoking it now is not seen by this request (the next one reads again).
      await f.ctx.storage.db.updateTable('grants').set({ revoked_at: f.clock.now() }).where('user_id', '=', person.userId).execute();
      assert.deepEqual(await nextStep(f.ctx, read, undefined), { step: 'done' });
      assert.equal((await nextStep(f.ctx, id, undefined)).step, 'consent');
    });

    test('extends a grant created since the interaction was read instead of creating a second one', async (t) => {
      const f = await codeFlowFixture(t, { dialect });
      const alice = await f.signIn('alice');
      const a = interactionId((await f.authorize(f.request('web-app', { scope: 'openid order:create' }))).location);
      await recordAuthentication(f.ctx, a, alice.authentication);
      const readA = (await loadInteraction(f.ctx, a))!; // read with no grant of Alice's
      // Meanwhile another tab approves another request: Alice's grant is created.
      const b = interactionId((await f.authorize(f.request('web-app', { scope: 'openid order:cancel' }))).location);
      await recordAuthentication(f.ctx, b, alice.authentication);
      await decideConsent(f.ctx, b, alice.authentication, true);
      await decideConsent(f.ctx, readA, alice.authentication, true);
      const grants = await f.ctx.storage.db.selectFrom('grants').selectAll().where('user_id', '=', alice.userId).execute();
      assert.equal(grants.length, 1, 'one grant per person and client');
      assert.deepEqual((JSON.parse(grants[0]!.resources) as Record<string, string[]>)[ordersApi]!.sort(), ['order:cancel', 'order:create']);
      assert.equal((await f.auditEvents('consent.granted')).length, 2);
      assert.deepEqual(await nextStep(f.ctx, a, undefined), { step: 'done' }, 'the decision was recorded on the interaction read first');
    });

    test('extends a grant changed since the interaction was read with what both approvals granted', async (t) => {
      const f = await codeFlowFixture(t, { dialect });
      const { person: alice } = await f.authorizeAndApprove({ query: { scope: 'openid order:create' } });
      const a = interactionId((await f.authorize(f.request('web-app', { scope: 'openid order:cancel', prompt: 'consent' }))).location);
      await recordAuthentication(f.ctx, a, alice.authentication);
      const readA = (await loadInteraction(f.ctx, a))!; // read with the grant as it was: order:create
      const b = interactionId((await f.authorize(f.request('web-app', { scope: 'openid offline_access order:create', prompt: 'consent' }))).location);
      await recordAuthentication(f.ctx, b, alice.authentication);
      await decideConsent(f.ctx, b, alice.authentication, true);
      await decideConsent(f.ctx, readA, alice.authentication, true);
      const grant = (await findActiveGrant(f.ctx, alice.userId, 'web-app'))!;
      assert.deepEqual(grant.resources[ordersApi]!.sort(), ['order:cancel', 'order:create']);
      assert.deepEqual([...grant.oidcScopes].sort(), ['offline_access', 'openid'], 'nothing the other approval granted was overwritten');
    });

    test('writes nothing of a decision on an interaction completed meanwhile', async (t) => {
      const f = await codeFlowFixture(t, { dialect });
      const alice = await f.signIn('alice');
      const started = await f.authorize(f.request('web-app'));
      const id = interactionId(started.location);
      await recordAuthentication(f.ctx, id, alice.authentication);
      const read = (await loadInteraction(f.ctx, id))!;
      await f.ctx.storage.db.updateTable('interactions').set({ completed_at: f.clock.now() }).where('id', '=', id).execute();
      await assert.rejects(decideConsent(f.ctx, read, alice.authentication, true), /unknown, expired or already completed/);
      assert.equal(await findActiveGrant(f.ctx, alice.userId, 'web-app'), undefined);
      assert.equal((await f.auditEvents('consent.granted')).length, 0);
    });
  });
}
