import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { isMandateActive } from '../../src/mandates/coverage.ts';
import { createMandate, getMandate } from '../../src/mandates/store.ts';
import { offboardPerson, offboardPersonIn } from '../../src/lifecycle/leaver.ts';
import { codeFlowFixture, type CodeFlowFixture } from '../authorization/fixture.ts';
import { assertOAuthError, ordersApi } from '../endpoints/fixture.ts';
import { testDialects } from '../helpers/storage.ts';
import { mandateEntry } from '../mandates/fixture.ts';

/**
 * The leaver (issue 23 item 2, src/lifecycle/leaver.ts): one transaction ends everything a person
 * holds, marks the mandates they granted for reassignment until a deadline, revokes those granted
 * to them, flags the agents whose model they own, and records one `user.offboarded` event.
 */

const day = 86_400_000;
const iso = (ms: number) => new Date(ms).toISOString();

interface Scene {
  f: CodeFlowFixture;
  aliceId: string;
  refresh: string;
  access: string;
}

/** Alice signed in to web-app (a consent grant, a refresh token, an access token), with a TOTP factor, recovery codes, mandates and an agent. */
async function scene(t: TestContext, dialect: ReturnType<typeof testDialects>[number]): Promise<Scene> {
  const f = await codeFlowFixture(t, { dialect, risk: 'off' });
  const { ctx } = f;
  const { code, pkce, person } = await f.authorizeAndApprove({ query: { scope: 'openid offline_access order:create', resource: ordersApi } });
  const redeemed = await f.redeem('web-app', code, pkce.verifier);
  assert.equal(redeemed.statusCode, 200, redeemed.body);
  const body = redeemed.json() as { access_token: string; refresh_token: string };
  const aliceId = person.userId;
  const now = ctx.clock.now();
  await ctx.storage.db.insertInto('totp_factors').values({ id: 'totp-1', user_id: aliceId, secret: 'sealed', master_key_id: 'k', created_at: now, confirmed_at: now, last_used_step: null, last_used_at: null }).execute();
  await ctx.storage.db.insertInto('recovery_codes').values([1, 2].map((i) => ({ user_id: aliceId, digest: `d${i}`, created_at: now, used_at: null }))).execute();
  // Mandates: two she signed for the grantor, one granted to her, one neither.
  const window = { effective_from: iso(now - day), effective_to: iso(now + 365 * day) };
  const accepted = { by: 'desk-head', at: now - day };
  await createMandate(ctx, { ...mandateEntry({ id: 'signed-by-alice', ...window, granted_by: aliceId }), acceptance: accepted }, { actor: 'admin-ops' });
  await createMandate(ctx, { ...mandateEntry({ id: 'signed-by-alice-2', ...window, granted_by: aliceId }), acceptance: accepted }, { actor: 'admin-ops' });
  await createMandate(ctx, { ...mandateEntry({ id: 'to-alice', ...window, grantee: { user: aliceId } }), acceptance: accepted }, { actor: 'admin-ops' });
  await createMandate(ctx, { ...mandateEntry({ id: 'unrelated', ...window }), acceptance: accepted }, { actor: 'admin-ops' });
  // An agent whose model she validated, and one whose model someone else did.
  for (const [id, owner] of [['algo-alice', aliceId], ['algo-bob', 'someone-else']] as const) {
    await ctx.storage.db
      .insertInto('agents')
      .values({ id, client_id: id, strategy: 's', environment: 'production', owner_lei: '5493001KJTIIGC8Y1R12', desk: null, venues: '[]', instrument_classes: '[]', notional_max: null, notional_currency: null, pipelines: '[]', certificate_profile: 'p', key_storage: '[]', status: 'active', updated_at: now })
      .execute();
    await ctx.storage.db
      .insertInto('agent_models')
      .values({ id: `${id}-m1`, agent_id: id, version: '1', model_digest: 'sha256:a', image_digest: 'sha256:b', status: 'approved', validated_by: owner, validation_ref: null, approval_request: 'r', approved_by: 'risk', approved_at: now, retire_previous: 0, retired_at: null, created_at: now })
      .execute();
  }
  return { f, aliceId, refresh: body.refresh_token, access: body.access_token };
}

for (const dialect of testDialects()) {
  describe(`offboarding a leaver on ${dialect.name}`, () => {
    test('ends every session, token, consent grant and factor, revokes mandates granted to the person, and records one user.offboarded event listing them', async (t) => {
      const { f, aliceId, refresh, access } = await scene(t, dialect);
      const { ctx } = f;
      const deadline = ctx.clock.now() + 7 * day;
      const done = await offboardPerson(ctx, 'alice', { actor: 'cli:ops', via: 'cli', reason: 'left the firm', reassignmentDeadline: deadline });
      assert.ok(done);
      assert.equal(done.userId, aliceId);
      assert.equal(done.ended.sessions, 1);
      assert.equal(done.ended.refreshTokens, 1);
      assert.equal(done.ended.consentGrants.length, 1);
      assert.deepEqual(done.ended.factors, { totp: 1, recoveryCodes: 2, passkeys: 0 });
      assert.deepEqual(done.ended.mandatesRevoked, ['to-alice']);
      assert.deepEqual(done.ended.mandatesForReassignment, { mandates: [{ id: 'signed-by-alice', v: 1 }, { id: 'signed-by-alice-2', v: 1 }], deadline });
      assert.deepEqual(done.ended.agentsFlagged, ['algo-alice']);

      const row = await ctx.storage.db.selectFrom('users').selectAll().where('id', '=', aliceId).executeTakeFirstOrThrow();
      assert.equal(row.status, 'disabled');
      assert.equal(Number(row.offboarded_at), ctx.clock.now());
      assert.equal((await ctx.storage.db.selectFrom('totp_factors').select('id').where('user_id', '=', aliceId).execute()).length, 0);
      assert.equal((await ctx.storage.db.selectFrom('recovery_codes').select('digest').where('user_id', '=', aliceId).execute()).length, 0);
      assert.equal((await getMandate(ctx, 'to-alice'))!.current.status, 'revoked');
      assert.equal((await getMandate(ctx, 'unrelated'))!.current.reassignBy, null);

      // The tokens are dead: introspection inactive, the refresh refused.
      assert.deepEqual(await f.introspect('orders-gateway', access), { active: false });
      assertOAuthError(await f.refresh('web-app', refresh, { resource: ordersApi }), 400, 'invalid_grant');

      const [event] = await f.auditEvents('user.offboarded');
      assert.ok(event);
      assert.equal(event.subject, aliceId);
      assert.equal(event.actor, 'cli:ops');
      assert.equal(event.details!.via, 'cli');
      assert.equal(event.details!.reason, 'left the firm');
      assert.equal(event.details!.sessions_ended, 1);
      assert.equal(event.details!.refresh_tokens_revoked, 1);
      assert.deepEqual(event.details!.consent_grants_revoked, done.ended.consentGrants);
      assert.deepEqual(event.details!.factors_removed, { totp_factors: 1, recovery_codes: 2, passkeys: 0 });
      assert.deepEqual(event.details!.mandates_revoked, ['to-alice']);
      assert.deepEqual(event.details!.mandates_for_reassignment, [{ id: 'signed-by-alice', v: 1 }, { id: 'signed-by-alice-2', v: 1 }]);
      assert.equal(event.details!.reassign_by, iso(deadline));
      assert.deepEqual(event.details!.agents_flagged, ['algo-alice']);
      const text = JSON.stringify(event);
      assert.equal(text.includes('alice@broker.example.com'), false, 'no email in the event');
      assert.equal(/"alice"/.test(text), false, 'no username in the event');
      assert.equal((await f.auditEvents('consent.revoked')).length, 1);
      assert.equal((await f.auditEvents('mandate.revoked')).length, 1);
    });

    test('keeps the mandates the person granted in force until the deadline, then stops them, with an alert', async (t) => {
      const { f } = await scene(t, dialect);
      const { ctx, clock } = f;
      const deadline = clock.now() + 3 * day;
      await offboardPerson(ctx, 'alice', { actor: 'admin-ops', via: 'admin-api', reassignmentDeadline: deadline });
      const ref = { id: 'signed-by-alice', v: 1 };
      assert.equal(await isMandateActive(ctx, ref, new Date(clock.now())), true, 'in force before the deadline');
      const alerts = await ctx.storage.db.selectFrom('alerts').selectAll().where('type', '=', 'mandate.reassignment_required').execute();
      assert.equal(alerts.length, 1);
      assert.deepEqual(JSON.parse(alerts[0]!.data).mandates, [ref, { id: 'signed-by-alice-2', v: 1 }]);
      assert.equal(JSON.parse(alerts[0]!.data).reassign_by, iso(deadline));
      assert.equal((await getMandate(ctx, 'signed-by-alice'))!.current.reassignBy, deadline);

      clock.advance(3 * day);
      assert.equal(await isMandateActive(ctx, ref, new Date(clock.now())), false, 'stopped at the deadline');
      const after = await getMandate(ctx, 'signed-by-alice');
      assert.equal(after!.current.status, 'expired');
      const expired = (await f.auditEvents('mandate.expired')).find((e) => e.mandate?.id === 'signed-by-alice');
      assert.equal(expired!.details!.reason, 'not reassigned before the deadline');
      // Unrelated mandates stay.
      assert.equal(await isMandateActive(ctx, { id: 'unrelated', v: 1 }, new Date(clock.now())), true);
    });

    test('uses the configured reassignment period when no deadline is given', async (t) => {
      const { f } = await scene(t, dialect);
      const done = await offboardPerson(f.ctx, 'alice', { actor: 'admin-ops', via: 'admin-api' });
      assert.equal(done!.ended.mandatesForReassignment.deadline, f.clock.now() + f.ctx.config.offboardReassignmentDays * day);
      assert.equal(f.ctx.config.offboardReassignmentDays, 14);
    });

    test('flags the agents whose model the person owns, without disabling them, and shows the flag in the admin view', async (t) => {
      const { f } = await scene(t, dialect);
      await offboardPerson(f.ctx, 'alice', { actor: 'admin-ops', via: 'admin-api' });
      const rows = await f.ctx.storage.db.selectFrom('agents').select(['id', 'status', 'flag_reason']).orderBy('id').execute();
      assert.deepEqual(rows.map((r) => ({ ...r })), [
        { id: 'algo-alice', status: 'active', flag_reason: 'owner_offboarded' },
        { id: 'algo-bob', status: 'active', flag_reason: null },
      ]);
      f.ctx.agents.invalidate();
      const token = await f.accessToken('admin-ops', { resource: `${f.issuer}/admin` });
      const view = await f.inject({ method: 'GET', url: '/admin/agents', headers: { authorization: `Bearer ${token}` } });
      assert.equal(view.statusCode, 200, view.body);
      const agents = (view.json() as { agents: { id: string; flag: { reason: string } | null }[] }).agents;
      assert.equal(agents.find((a) => a.id === 'algo-alice')!.flag!.reason, 'owner_offboarded');
      assert.equal(agents.find((a) => a.id === 'algo-bob')!.flag, null);
      assert.equal((await f.ctx.storage.db.selectFrom('alerts').select('id').where('type', '=', 'agent.owner_left').execute()).length, 1);
    });

    test('a second offboarding ends nothing and records nothing; an unknown person is undefined', async (t) => {
      const { f, aliceId } = await scene(t, dialect);
      assert.ok(await offboardPerson(f.ctx, 'alice', { actor: 'admin-ops', via: 'admin-api' }));
      assert.equal(await offboardPerson(f.ctx, 'alice', { actor: 'admin-ops', via: 'admin-api' }), undefined);
      assert.equal(await offboardPerson(f.ctx, 'nobody', { actor: 'admin-ops', via: 'admin-api' }), undefined);
      assert.equal(
        await f.ctx.audit.recordWith(async (trx) => ({ value: await offboardPersonIn(f.ctx, trx, f.clock.now(), aliceId, { actor: 'x', via: 'scim' }), events: [] })),
        undefined,
      );
      assert.equal((await f.auditEvents('user.offboarded')).length, 1);
      assert.equal((await f.ctx.storage.db.selectFrom('alerts').select('id').where('type', '=', 'mandate.reassignment_required').execute()).length, 1);
    });

    test('a re-activated person is a joiner: offboarded_at is cleared and they can be offboarded again', async (t) => {
      const { f, aliceId } = await scene(t, dialect);
      await offboardPerson(f.ctx, 'alice', { actor: 'admin-ops', via: 'admin-api' });
      await f.apply({ users: [{ username: 'alice', name: 'Alice Trader', email: 'alice@broker.example.com', status: 'active' }] });
      const row = await f.ctx.storage.db.selectFrom('users').select(['status', 'offboarded_at']).where('id', '=', aliceId).executeTakeFirstOrThrow();
      assert.equal(row.status, 'active');
      assert.equal(row.offboarded_at, null);
      assert.ok(await offboardPerson(f.ctx, 'alice', { actor: 'admin-ops', via: 'admin-api' }));
    });
  });
}
