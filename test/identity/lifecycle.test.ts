import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Context } from '../../src/context.ts';
import { sql } from 'kysely';
import { deleteUser, isPersonTokenLive, liveUnder, personStandingIn, signOutEverywhere } from '../../src/identity/lifecycle.ts';
import { startSession } from '../../src/identity/sessions.ts';
import { findUserByUsername } from '../../src/identity/users.ts';
import { credentialsHeld, holdCredentialsIn } from '../../src/lifecycle/credential-hold.ts';
import { issueRefreshToken } from '../../src/tokens/refresh-tokens.ts';
import { testDialects } from '../helpers/storage.ts';
import { people, peopleFixture, type PeopleFixture } from './fixture.ts';

/**
 * The person rule and the lifecycle steps on the database (src/identity/lifecycle.ts), on both
 * dialects: what each step ends, in one transaction with its event. The HTTP behaviour is in
 * test/admin/person-lifecycle.test.ts.
 */

/** Alice with a consent grant, two refresh tokens (one rotated), an unredeemed code and a session. */
async function holdings(f: PeopleFixture, suffix = '1'): Promise<{ userId: string; grantId: string }> {
  const { ctx } = f;
  const userId = (await findUserByUsername(ctx, 'alice'))!.id;
  const now = ctx.clock.now();
  const grantId = `grant-${suffix}`;
  await ctx.storage.db
    .insertInto('grants')
    .values({ id: grantId, user_id: userId, client_id: `web-app-${suffix}`, resources: '{}', oidc_scopes: '[]', authorization_details: '[]', created_at: now, updated_at: now, revoked_at: null, revoked_by: null, revoke_reason: null })
    .execute();
  const payload = { scopes: [], oidcScopes: [], authorizationDetails: [], authTime: now, acr: 'urn:clearance:acr:pwd', amr: ['pwd'] };
  const first = await issueRefreshToken(ctx, { grantId, clientId: `web-app-${suffix}`, userId, payload });
  await ctx.storage.db.updateTable('refresh_tokens').set({ state: 'rotated', used_at: now }).where('id', '=', first.id).execute();
  await issueRefreshToken(ctx, { grantId, clientId: `web-app-${suffix}`, userId, payload });
  await ctx.storage.db
    .insertInto('authorization_codes')
    .values({ code_hash: `code-${suffix}`, id: `code-id-${suffix}`, client_id: `web-app-${suffix}`, grant_id: grantId, user_id: userId, redirect_uri: 'https://app.example.com/cb', code_challenge: 'x', payload: '{}', created_at: now, expires_at: now + 60_000, redeemed_at: null })
    .execute();
  await startSession(ctx, { userId, acr: 'urn:clearance:acr:pwd', amr: ['pwd'], cookieHeader: undefined });
  return { userId, grantId };
}

async function states(ctx: Context, userId: string): Promise<string[]> {
  return (await ctx.storage.db.selectFrom('refresh_tokens').select('state').where('user_id', '=', userId).execute()).map((r) => r.state).sort();
}

const alice = people[0]!;

for (const dialect of testDialects()) {
  describe(`a person's lifecycle on ${dialect.name}`, () => {
    test('an administrator\'s lock revokes every refresh token, discards codes, ends sessions and tokens, with one event', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const { userId } = await holdings(f);
      const issuedAt = f.ctx.clock.now();
      assert.equal(await isPersonTokenLive(f.ctx.storage.db, userId, issuedAt), true);
      f.clock.advance(10);
      await f.apply({ users: [{ ...alice, status: 'locked' }] });
      assert.deepEqual(await states(f.ctx, userId), ['revoked', 'revoked']);
      assert.equal(await f.ctx.storage.db.selectFrom('authorization_codes').select('id').where('user_id', '=', userId).executeTakeFirst(), undefined);
      const sessions = await f.ctx.storage.db.selectFrom('sessions').select('end_reason').where('user_id', '=', userId).execute();
      assert.deepEqual(sessions.map((s) => s.end_reason), ['locked']);
      assert.equal(await isPersonTokenLive(f.ctx.storage.db, userId, issuedAt), false);
      assert.equal(await isPersonTokenLive(f.ctx.storage.db, userId, f.ctx.clock.now() + 5000), false, 'locked: no token is live, whenever issued');
      const [event] = await f.events('user.locked');
      assert.deepEqual(event!.details, { via: 'cli', refresh_tokens_revoked: 1, sessions_ended: 1, codes_discarded: 1 });
      assert.equal(event!.actor, 'test');

      // Unlocked: tokens issued before the lock stay dead; later ones are live.
      f.clock.advance(10);
      await f.apply({ users: [{ ...alice, status: 'active' }] });
      assert.equal(await isPersonTokenLive(f.ctx.storage.db, userId, issuedAt), false);
      assert.equal(await isPersonTokenLive(f.ctx.storage.db, userId, f.ctx.clock.now()), true);
      assert.equal((await f.events('user.locked')).length, 1, 'unlocking ends nothing');
    });

    test('a cut-off never moves back: a sign-out everywhere under a clock stepped back keeps dead tokens dead', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const { userId } = await holdings(f);
      const first = f.ctx.clock.now();
      assert.equal(await signOutEverywhere(f.ctx, 'alice', { actor: 'admin-ops' }), true);
      const issuedBefore = first - 30_000;
      assert.equal(await isPersonTokenLive(f.ctx.storage.db, userId, issuedBefore), false);
      // An NTP step or a resumed VM: a minute back, and the person is signed out everywhere again.
      f.clock.set(first - 60_000);
      assert.equal(await signOutEverywhere(f.ctx, 'alice', { actor: 'admin-ops' }), true);
      assert.equal(await isPersonTokenLive(f.ctx.storage.db, userId, issuedBefore), false, 'not brought back to life');
      assert.equal(await isPersonTokenLive(f.ctx.storage.db, userId, first), false);
      const row = await f.ctx.storage.db.selectFrom('users').select('tokens_valid_after').where('id', '=', userId).executeTakeFirstOrThrow();
      assert.equal(Number(row.tokens_valid_after), first + 1, 'moved a millisecond on, so the change shows');
    });

    test('sign out everywhere sets the cut-off: tokens issued at or before it are dead, later ones live', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const { userId } = await holdings(f);
      const cutoff = f.ctx.clock.now();
      assert.equal(await signOutEverywhere(f.ctx, 'alice', { actor: 'admin-ops' }), true);
      assert.equal(await signOutEverywhere(f.ctx, 'Alice', { actor: 'admin-ops' }), false, 'addressed by the stored username');
      assert.deepEqual(await states(f.ctx, userId), ['revoked', 'revoked']);
      assert.equal(await isPersonTokenLive(f.ctx.storage.db, userId, cutoff), false);
      assert.equal(await isPersonTokenLive(f.ctx.storage.db, userId, cutoff + 1), true);
      assert.equal((await findUserByUsername(f.ctx, 'alice'))!.status, 'active');
      const [event] = await f.events('user.signed_out_everywhere');
      assert.deepEqual(event!.details, { via: 'admin-api', refresh_tokens_revoked: 1, sessions_ended: 1, codes_discarded: 1 });
    });

    test("reads a person's standing in a flight, by what names them, and applies the same rule to it", async (t) => {
      const f = await peopleFixture(t, { dialect });
      const { userId } = await holdings(f);
      const cutoff = f.ctx.clock.now();
      await signOutEverywhere(f.ctx, 'alice', { actor: 'admin-ops' });
      const standingOf = async (personId: string) => {
        const flight = f.ctx.storage.flight();
        const standing = personStandingIn(flight, f.ctx.storage.db, sql<string>`${personId}`);
        await flight.send();
        return standing;
      };
      const alice = await standingOf(userId);
      assert.equal(alice?.status, 'active');
      assert.equal(liveUnder(alice, cutoff), false, 'issued at the cut-off: dead, as isPersonTokenLive says');
      assert.equal(liveUnder(alice, cutoff + 1), true);
      assert.equal(await standingOf('usr_nobody'), undefined);
      assert.equal(liveUnder(undefined, cutoff + 1), false, 'no such person: no live token');
    });

    test('deleting a person revokes their grants and leaves no live token; other people keep theirs', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const { userId, grantId } = await holdings(f);
      const bob = (await findUserByUsername(f.ctx, 'bob'))!.id;
      assert.equal(await deleteUser(f.ctx, 'alice', { actor: 'admin-ops' }), true);
      assert.equal(await findUserByUsername(f.ctx, 'alice'), undefined);
      assert.equal(await isPersonTokenLive(f.ctx.storage.db, userId, f.ctx.clock.now() + 5000), false);
      assert.equal(await isPersonTokenLive(f.ctx.storage.db, bob, f.ctx.clock.now()), true);
      const grant = await f.ctx.storage.db.selectFrom('grants').select(['revoked_at', 'revoke_reason']).where('id', '=', grantId).executeTakeFirstOrThrow();
      assert.equal(grant.revoke_reason, 'person deleted');
      const [event] = await f.events('user.deleted');
      assert.deepEqual(event!.details, { via: 'admin-api', refresh_tokens_revoked: 1, sessions_ended: 1, codes_discarded: 1, grants_revoked: 1, passkeys_removed: 0 });
      assert.equal((await f.events('consent.revoked')).length, 1);
      assert.equal(await deleteUser(f.ctx, 'alice', { actor: 'admin-ops' }), false);
    });

    test('deleting a held leaver removes their credential hold with them: nothing of the person stays behind', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const { userId } = await holdings(f);
      const bob = (await findUserByUsername(f.ctx, 'bob'))!.id;
      await f.ctx.storage.db.transaction().execute(async (trx) => {
        await holdCredentialsIn(trx, userId, f.ctx.clock.now());
        await holdCredentialsIn(trx, bob, f.ctx.clock.now());
      });
      assert.equal(await credentialsHeld(f.ctx.storage.db, userId), true);
      assert.equal(await deleteUser(f.ctx, 'alice', { actor: 'admin-ops' }), true);
      assert.equal(await credentialsHeld(f.ctx.storage.db, userId), false, 'the hold went with the person');
      assert.equal(await credentialsHeld(f.ctx.storage.db, bob), true, 'another person’s hold stays');
    });

    test('the automatic lockout leaves the tokens live; a disable ends them; a password change while active ends them', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const { userId } = await holdings(f);
      const issuedAt = f.ctx.clock.now();
      await f.ctx.storage.db.updateTable('users').set({ status: 'locked', lock_reason: 'failed_logins', locked_at: issuedAt }).where('id', '=', userId).execute();
      assert.equal(await isPersonTokenLive(f.ctx.storage.db, userId, issuedAt), true);
      // Re-applying without a status keeps the automatic lockout as it is.
      assert.deepEqual((await f.apply({ users: [alice] })).changes, [{ kind: 'user', id: 'alice', outcome: 'unchanged' }]);
      assert.equal(await isPersonTokenLive(f.ctx.storage.db, userId, issuedAt), true);

      f.clock.advance(10);
      await f.apply({ users: [{ ...alice, status: 'disabled' }] });
      assert.equal(await isPersonTokenLive(f.ctx.storage.db, userId, f.ctx.clock.now() + 5000), false);
      assert.equal((await f.events('user.disabled')).length, 1);

      f.clock.advance(10);
      await f.apply({ users: [{ ...alice, status: 'active' }] });
      await holdings(f, '2');
      f.clock.advance(10);
      await f.apply({ users: [{ ...alice, status: 'active', password: 'a-brand-new-passphrase' }] });
      const [reset] = await f.events('user.password_reset');
      assert.deepEqual(reset!.details, { via: 'cli', refresh_tokens_revoked: 1, sessions_ended: 1, codes_discarded: 1 });
    });
  });
}
