import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { acr, amr } from '../../../src/identity/acr.ts';
import { takeNotices } from '../../../src/identity/factors/notices.ts';
import { clearPendingCookie, maxPendingFailures, readPendingSignIn, startPendingSignIn, type PendingSignIn } from '../../../src/identity/factors/pending.ts';
import { verifySecondFactor, type SecondFactorProof } from '../../../src/identity/factors/second-step.ts';
import { deleteUser, signOutEverywhere } from '../../../src/identity/lifecycle.ts';
import { verifyLogin } from '../../../src/identity/login.ts';
import { readSession, startSession } from '../../../src/identity/sessions.ts';
import { findUserByUsername } from '../../../src/identity/users.ts';
import { failUpdates, holdUpdates } from '../../helpers/faults.ts';
import { testDialects } from '../../helpers/storage.ts';
import { alicePassword, people, peopleFixture, type PeopleFixture } from '../fixture.ts';
import { codeAt, enrolTotp } from './fixture.ts';

const address = '198.51.100.7';
const interaction = (f: PeopleFixture) => ({ id: 'ia_1', expiresAt: Math.floor(f.clock.now() / 1000) + 600 });

/** The password step as the sign-in page does it: a pending sign-in, and its cookie (name=value). */
async function passwordStep(f: PeopleFixture, password = alicePassword): Promise<string> {
  return (await passwordStepSetCookie(f, password)).split(';')[0]!;
}

/** The password step's whole Set-Cookie value. */
async function passwordStepSetCookie(f: PeopleFixture, password = alicePassword, cookieHeader?: string): Promise<string> {
  const outcome = await verifyLogin(f.ctx, { username: 'alice', password, sourceAddress: address }, undefined, undefined, (flight, login) =>
    startPendingSignIn(f.ctx, flight, { userId: login.user.id, interaction: interaction(f), cookieHeader }),
  );
  assert.equal(outcome.ok, false);
  assert.ok(!outcome.ok && outcome.reason === 'second_factor_required', JSON.stringify(outcome));
  return outcome.value.setCookie;
}

async function pendingOf(f: PeopleFixture, cookie: string): Promise<PendingSignIn> {
  const pending = await readPendingSignIn(f.ctx, cookie, 'ia_1');
  assert.ok(pending, 'an open pending sign-in');
  return pending;
}

/** The second step, with a session started on success as the sign-in page does. */
async function secondStep(f: PeopleFixture, cookie: string, proof: SecondFactorProof) {
  return verifySecondFactor(f.ctx, { pending: await pendingOf(f, cookie), proof, sourceAddress: address, requestId: 'req-2', clientId: 'trading-ui' }, (flight, login) =>
    startSession(f.ctx, { userId: login.user.id, acr: login.acr, amr: login.amr, cookieHeader: undefined }, flight),
  );
}

for (const dialect of testDialects()) {
  describe(`the second step of a sign-in on ${dialect.name}`, () => {
    test('follows a right password of a person with an authenticator: no session until the code passes', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const { userId, factorId, secret } = await enrolTotp(f, 'alice');
      const cookie = await passwordStep(f);
      assert.match(cookie, /^clearance_pending=[A-Za-z0-9_-]{43}$/);
      assert.deepEqual(await f.ctx.storage.db.selectFrom('sessions').select('id').execute(), [], 'no session after the password');
      assert.deepEqual(await f.events('user.login_succeeded'), []);
      const [password] = await f.events('user.factor_succeeded');
      assert.deepEqual(password!.details, { factor: 'password', next: ['totp'], source_address: address });

      const outcome = await secondStep(f, cookie, { kind: 'totp', code: await codeAt(secret, f.clock.now()) });
      assert.ok(outcome.ok);
      assert.equal(outcome.acr, acr.multiFactor);
      assert.deepEqual(outcome.amr, ['pwd', 'otp', 'mfa']);
      const session = await readSession(f.ctx, outcome.value.setCookie.split(';')[0]);
      assert.equal(session?.userId, userId);
      assert.equal(session?.acr, 'urn:clearance:acr:mfa');
      const factors = await f.events('user.factor_succeeded');
      assert.deepEqual(factors.at(-1)!.details, { factor: 'totp', credential: factorId, source_address: address });
      const [login] = await f.events('user.login_succeeded');
      assert.deepEqual(login!.decision, { allow: true, reasons: ['password', 'totp'] });
      assert.equal(login!.client, 'trading-ui');
      assert.equal(await readPendingSignIn(f.ctx, cookie, 'ia_1'), undefined, 'the pending sign-in is used up');
    });

    test('opens no pending sign-in for the old password whose verification a password reset overtook', async (t) => {
      const f = await peopleFixture(t, { dialect });
      await enrolTotp(f, 'alice');
      const alice = (await findUserByUsername(f.ctx, 'alice'))!;
      const outcome = await verifyLogin(f.ctx, { username: 'alice', password: alicePassword, sourceAddress: address }, undefined, undefined, async (flight, login) => {
        f.clock.advance(1);
        await f.apply({ users: [{ ...people[0]!, password: 'a-new-password-for-alice' }, people[1]!] });
        return startPendingSignIn(f.ctx, flight, { userId: login.user.id, interaction: interaction(f), cookieHeader: undefined });
      });
      assert.deepEqual(outcome, { ok: false, reason: 'invalid_credentials' });
      assert.deepEqual(await f.ctx.storage.db.selectFrom('pending_sign_ins').select('id').where('user_id', '=', alice.id).where('ended_at', 'is', null).execute(), []);
      assert.deepEqual((await f.events('user.login_failed')).at(-1)!.decision, { allow: false, reasons: ['account_changed'] });
    });

    test('refuses a right code whose sign-in a sign-out everywhere overtook, and starts no session', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const { secret } = await enrolTotp(f, 'alice');
      const cookie = await passwordStep(f);
      const outcome = await verifySecondFactor(
        f.ctx,
        { pending: await pendingOf(f, cookie), proof: { kind: 'totp', code: await codeAt(secret, f.clock.now()) }, sourceAddress: address, requestId: 'req-2', clientId: 'trading-ui' },
        async (flight, login) => {
          f.clock.advance(1);
          await signOutEverywhere(f.ctx, 'alice', { actor: 'admin' });
          return startSession(f.ctx, { userId: login.user.id, acr: login.acr, amr: login.amr, cookieHeader: undefined }, flight);
        },
      );
      assert.ok(!outcome.ok);
      assert.deepEqual(await f.events('user.login_succeeded'), []);
      assert.deepEqual(await f.ctx.storage.db.selectFrom('sessions').select('id').where('ended_at', 'is', null).execute(), []);
    });

    test('signs a person without an authenticator in with the password alone, at pwd', async (t) => {
      const f = await peopleFixture(t, { dialect });
      await enrolTotp(f, 'bob');
      const outcome = await verifyLogin(f.ctx, { username: 'alice', password: alicePassword, sourceAddress: address });
      assert.ok(outcome.ok);
      assert.equal(outcome.acr, acr.password);
      assert.deepEqual(outcome.amr, ['pwd']);
    });

    test('never signs in by the password alone when the caller opens no second step', async (t) => {
      const f = await peopleFixture(t, { dialect });
      await enrolTotp(f, 'alice');
      let called = false;
      const outcome = await verifyLogin(f.ctx, { username: 'alice', password: alicePassword, sourceAddress: address }, () => {
        called = true;
      });
      assert.equal(outcome.ok, false);
      assert.equal(called, false);
      assert.deepEqual(await f.ctx.storage.db.selectFrom('sessions').select('id').execute(), []);
    });

    test('refuses a code already used, even in another pending sign-in', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const { secret } = await enrolTotp(f, 'alice');
      const code = await codeAt(secret, f.clock.now());
      assert.ok((await secondStep(f, await passwordStep(f), { kind: 'totp', code })).ok);
      const replay = await secondStep(f, await passwordStep(f), { kind: 'totp', code });
      assert.deepEqual(replay, { ok: false, reason: 'invalid_code', retry: true });
      assert.deepEqual((await f.events('user.factor_failed')).at(-1)!.decision, { allow: false, reasons: ['replayed'] });
    });

    test('lets only one of two concurrent uses of the same code through', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const { secret } = await enrolTotp(f, 'alice');
      const code = await codeAt(secret, f.clock.now());
      const [a, b] = [await passwordStep(f), await passwordStep(f)];
      const [pa, pb] = [await pendingOf(f, a), await pendingOf(f, b)];
      const outcomes = await Promise.all([pa, pb].map((pending) => verifySecondFactor(f.ctx, { pending, proof: { kind: 'totp', code }, sourceAddress: address })));
      assert.deepEqual(outcomes.map((o) => o.ok).sort(), [false, true]);
      assert.equal((await f.events('user.login_succeeded')).length, 1);
    });

    test('counts a wrong code as a failed login: throttled, and locked at the threshold', async (t) => {
      const f = await peopleFixture(t, { dialect });
      f.policy({ throttle: { perAccount: { max: 100, windowMs: 60_000 }, perAddress: { max: 100, windowMs: 60_000 } }, policy: { lockoutThreshold: 3 } });
      await enrolTotp(f, 'alice');
      const cookie = await passwordStep(f);
      assert.deepEqual(await secondStep(f, cookie, { kind: 'totp', code: '000000' }), { ok: false, reason: 'invalid_code', retry: true });
      assert.equal(await f.failedLogins('alice'), 1);
      // A right password again does not reset the count: only a completed sign-in does.
      const again = await passwordStep(f);
      assert.equal(await f.failedLogins('alice'), 1);
      assert.deepEqual(await secondStep(f, again, { kind: 'totp', code: '111111' }), { ok: false, reason: 'invalid_code', retry: true });
      // The code that locks ends the pending sign-in with the rest: no retry.
      assert.deepEqual(await secondStep(f, again, { kind: 'totp', code: '222222' }), { ok: false, reason: 'invalid_code', retry: false });
      assert.equal((await findUserByUsername(f.ctx, 'alice'))!.status, 'locked');
      assert.equal((await f.events('user.locked')).length, 1);
      // Locked: the lock ended the pending sign-in, and the password step does not open another.
      assert.equal(await readPendingSignIn(f.ctx, again, 'ia_1'), undefined);
      assert.deepEqual(await f.events('user.login_succeeded'), []);
      assert.deepEqual(await verifyLogin(f.ctx, { username: 'alice', password: alicePassword, sourceAddress: address }), { ok: false, reason: 'invalid_credentials' });
    });

    test("writes a wrong code's event, its count and the pending sign-in's count together, or none of them", async (t) => {
      const f = await peopleFixture(t, { dialect });
      f.policy({ throttle: { perAccount: { max: 100, windowMs: 60_000 }, perAddress: { max: 100, windowMs: 60_000 } } });
      await enrolTotp(f, 'alice');
      const cookie = await passwordStep(f);
      const undo = await failUpdates(f.ctx.storage, 'pending_sign_ins', 'failures');
      await assert.rejects(secondStep(f, cookie, { kind: 'totp', code: '000000' }), /injected fault/);
      await undo();
      assert.deepEqual(await f.events('user.factor_failed'), [], 'no failure audited without its counts');
      assert.equal(await f.failedLogins('alice'), 0);
      assert.equal((await pendingOf(f, cookie)).failures, 0);
      // Once the database takes writes again, the next wrong code counts in both places, with its event.
      assert.deepEqual(await secondStep(f, cookie, { kind: 'totp', code: '000000' }), { ok: false, reason: 'invalid_code', retry: true });
      assert.equal((await f.events('user.factor_failed')).length, 1);
      assert.equal(await f.failedLogins('alice'), 1);
      assert.equal((await pendingOf(f, cookie)).failures, 1);
    });

    test('takes a wrong and a right code of one sign-in in turn on PostgreSQL: neither is a deadlock', { skip: dialect.name !== 'postgres' && 'row locks are PostgreSQL\'s' }, async (t) => {
      const f = await peopleFixture(t, { dialect });
      f.policy({ throttle: { perAccount: { max: 100, windowMs: 60_000 }, perAddress: { max: 100, windowMs: 60_000 } } });
      const { secret } = await enrolTotp(f, 'alice');
      const cookie = await passwordStep(f);
      // The wrong code's transaction stops once it holds the account's row (its count, written
      // first); the right code's then waits for a row the wrong one holds. Were the right code to
      // take the pending sign-in's row before the account's, the wrong one would next wait for it:
      // a cycle, which PostgreSQL breaks by failing the right code, waiting longest.
      const hold = await holdUpdates(f.ctx.storage, 'users', 'new.failed_logins > old.failed_logins');
      let wrong, right;
      try {
        wrong = secondStep(f, cookie, { kind: 'totp', code: '000000' });
        const waiting = await hold.held();
        right = secondStep(f, cookie, { kind: 'totp', code: await codeAt(secret, f.clock.now()) });
        await hold.blocking(waiting);
      } finally {
        await hold.undo();
      }
      assert.deepEqual(await wrong, { ok: false, reason: 'invalid_code', retry: true });
      const signedIn = await right;
      assert.ok(signedIn.ok, JSON.stringify(signedIn));
      assert.equal((await f.events('user.factor_failed')).length, 1);
      assert.equal((await f.events('user.login_succeeded')).length, 1);
      // The sign-in completed after the failure: its reset is the count that stays.
      assert.equal(await f.failedLogins('alice'), 0);
    });

    test('throttles second factors with the password attempts of the account', async (t) => {
      const f = await peopleFixture(t, { dialect });
      f.policy({ throttle: { perAccount: { max: 3, windowMs: 60_000 } } });
      const { secret } = await enrolTotp(f, 'alice');
      const cookie = await passwordStep(f);
      await secondStep(f, cookie, { kind: 'totp', code: '000000' });
      await secondStep(f, cookie, { kind: 'totp', code: '000001' });
      await secondStep(f, cookie, { kind: 'totp', code: '000002' });
      const throttled = await secondStep(f, cookie, { kind: 'totp', code: await codeAt(secret, f.clock.now()) });
      assert.equal(throttled.ok, false);
      assert.ok(!throttled.ok && throttled.reason === 'throttled' && throttled.retryAfterSeconds > 0);
    });

    test('ends the pending sign-in after too many wrong codes: the password is asked again', async (t) => {
      const f = await peopleFixture(t, { dialect });
      f.policy({ throttle: { perAccount: { max: 100, windowMs: 60_000 }, perAddress: { max: 100, windowMs: 60_000 } } });
      await enrolTotp(f, 'alice');
      const cookie = await passwordStep(f);
      for (let i = 1; i < maxPendingFailures; i++) assert.deepEqual(await secondStep(f, cookie, { kind: 'totp', code: '000000' }), { ok: false, reason: 'invalid_code', retry: true });
      assert.deepEqual(await secondStep(f, cookie, { kind: 'totp', code: '000000' }), { ok: false, reason: 'invalid_code', retry: false });
      assert.equal(await readPendingSignIn(f.ctx, cookie, 'ia_1'), undefined);
    });

    test('keeps the pending sign-in to its interaction and its five minutes', async (t) => {
      const f = await peopleFixture(t, { dialect });
      await enrolTotp(f, 'alice');
      const cookie = await passwordStep(f);
      assert.equal(await readPendingSignIn(f.ctx, cookie, 'ia_other'), undefined, 'another interaction');
      assert.equal(await readPendingSignIn(f.ctx, 'clearance_pending=' + 'A'.repeat(43), 'ia_1'), undefined, 'another browser');
      f.clock.advance(5 * 60_000);
      assert.equal(await readPendingSignIn(f.ctx, cookie, 'ia_1'), undefined, 'expired');
    });

    test('names the pending cookie by the issuer: __Host- on https at the root, __Secure- with the issuer’s Path, bare on http', async (t) => {
      const cases: [string, RegExp, string][] = [
        ['https://id.broker.example', /^__Host-clearance_pending=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Strict; Secure; Max-Age=300$/, '__Host-clearance_pending=; Path=/; HttpOnly; SameSite=Strict; Secure; Max-Age=0'],
        ['https://id.broker.example/idp', /^__Secure-clearance_pending=[A-Za-z0-9_-]{43}; Path=\/idp; HttpOnly; SameSite=Strict; Secure; Max-Age=300$/, '__Secure-clearance_pending=; Path=/idp; HttpOnly; SameSite=Strict; Secure; Max-Age=0'],
        ['http://localhost:9000', /^clearance_pending=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Strict; Max-Age=300$/, 'clearance_pending=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0'],
      ];
      for (const [issuer, set, clear] of cases) {
        const f = await peopleFixture(t, { dialect, env: { CLEARANCE_ISSUER: issuer } });
        await enrolTotp(f, 'alice');
        const setCookie = await passwordStepSetCookie(f);
        assert.match(setCookie, set, issuer);
        assert.doesNotMatch(setCookie, /Domain=/i, issuer);
        assert.equal(clearPendingCookie(f.ctx), clear, issuer);
        assert.ok(await readPendingSignIn(f.ctx, setCookie.split(';')[0], 'ia_1'), `read back on ${issuer}`);
      }
    });

    test('reads the pending cookie only under the issuer’s name: a bare one planted on https is no pending sign-in', async (t) => {
      const f = await peopleFixture(t, { dialect, env: { CLEARANCE_ISSUER: 'https://id.broker.example' } });
      await enrolTotp(f, 'alice');
      const cookie = await passwordStep(f);
      assert.match(cookie, /^__Host-clearance_pending=/);
      const value = cookie.slice(cookie.indexOf('=') + 1);
      assert.equal(await readPendingSignIn(f.ctx, `clearance_pending=${value}`, 'ia_1'), undefined, 'bare');
      assert.equal(await readPendingSignIn(f.ctx, `__Secure-clearance_pending=${value}`, 'ia_1'), undefined, '__Secure- at the root');
      // Nor is a bare one the browser's previous pending sign-in, which a new password step ends.
      await passwordStepSetCookie(f, alicePassword, `clearance_pending=${value}`);
      assert.ok(await readPendingSignIn(f.ctx, cookie, 'ia_1'), 'not ended by a cookie of another name');
    });

    test('is ended when an administrator signs the person out everywhere, and goes with a deleted person', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const { userId } = await enrolTotp(f, 'alice');
      const cookie = await passwordStep(f);
      await signOutEverywhere(f.ctx, 'alice', { actor: 'admin-1' });
      assert.equal(await readPendingSignIn(f.ctx, cookie, 'ia_1'), undefined);
      await deleteUser(f.ctx, 'alice', { actor: 'admin-1' });
      for (const table of ['totp_factors', 'recovery_codes', 'pending_sign_ins', 'account_notices'] as const) {
        assert.deepEqual(await f.ctx.storage.db.selectFrom(table).select('user_id').where('user_id', '=', userId).execute(), [], table);
      }
    });

    test('accepts a recovery code once, at mfa without otp, and leaves the person a notice', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const { userId, factorId, recoveryCodes } = await enrolTotp(f, 'alice');
      const code = recoveryCodes[3]!;
      const outcome = await secondStep(f, await passwordStep(f), { kind: 'recovery_code', code: code.toUpperCase() });
      assert.ok(outcome.ok);
      assert.equal(outcome.acr, 'urn:clearance:acr:mfa');
      assert.deepEqual(outcome.amr, ['pwd', 'mfa', amr.recoveryCode]);
      assert.ok(!outcome.amr.includes('otp'));
      const [used] = (await f.events('user.factor_succeeded')).filter((e) => e.details!.factor === 'recovery_code');
      assert.deepEqual(used!.details, { factor: 'recovery_code', with: factorId, replaces: 'totp', remaining: 9, person_alerted: 'account_notice', source_address: address });

      const again = await secondStep(f, await passwordStep(f), { kind: 'recovery_code', code });
      assert.deepEqual(again, { ok: false, reason: 'invalid_code', retry: true });
      assert.deepEqual((await f.events('user.factor_failed')).at(-1)!.decision, { allow: false, reasons: ['reused'] });
      assert.ok(!(await f.auditText()).includes(code));
      // Issue 15: each use alerts a human (the outbox, written with the use; the reuse wrote none).
      const alerts = await f.ctx.storage.db.selectFrom('alerts').selectAll().where('type', '=', 'recovery.code_used').execute();
      assert.equal(alerts.length, 1);
      assert.equal(alerts[0]!.subject, userId);
      assert.deepEqual(JSON.parse(alerts[0]!.data), { with: factorId, remaining: 9, source_address: address });
      assert.ok(!alerts[0]!.data.includes(code));

      // Shown and kept for a session made with the recovery code (or a password alone)…
      const recoverySession = { userId, acr: outcome.acr, amr: outcome.amr };
      const [notice, ...more] = await takeNotices(f.ctx, recoverySession);
      assert.equal(more.length, 0);
      assert.equal(notice!.kind, 'recovery_code_used');
      assert.deepEqual(notice!.details, { source_address: address, remaining: 9 });
      assert.deepEqual(await takeNotices(f.ctx, { userId, acr: 'urn:clearance:acr:pwd', amr: ['pwd'] }), [notice]);
      // …and seen once a session made with the authenticator shows it.
      assert.deepEqual(await takeNotices(f.ctx, { userId, acr: 'urn:clearance:acr:mfa', amr: ['pwd', 'otp', 'mfa'] }), [notice]);
      assert.deepEqual(await takeNotices(f.ctx, { userId, acr: 'urn:clearance:acr:mfa', amr: ['pwd', 'otp', 'mfa'] }), [], 'shown once');
    });

    test('refuses every recovery code of a person holding a privileged role, without counting it as a guess', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const { userId, recoveryCodes } = await enrolTotp(f, 'alice');
      // Alice became an approver after she got her codes.
      await f.ctx.storage.db.updateTable('users').set({ roles: JSON.stringify(['approver']) }).where('id', '=', userId).execute();
      const outcome = await secondStep(f, await passwordStep(f), { kind: 'recovery_code', code: recoveryCodes[0]! });
      assert.deepEqual(outcome, { ok: false, reason: 'recovery_not_allowed' });
      assert.deepEqual((await f.events('user.factor_failed')).at(-1)!.decision, { allow: false, reasons: ['privileged_role'] });
      assert.equal(await f.failedLogins('alice'), 0);
      const unused = await f.ctx.storage.db.selectFrom('recovery_codes').select('digest').where('user_id', '=', userId).where('used_at', 'is', null).execute();
      assert.equal(unused.length, 10, 'the code was not used up');
    });
  });
}
