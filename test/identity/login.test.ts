import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { acr } from '../../src/identity/acr.ts';
import { verifyLogin, type LoginAttempt } from '../../src/identity/login.ts';
import { signInRisk } from '../../src/identity/login-risk.ts';
import { argon2Stats, hashPassword, verifyPassword } from '../../src/identity/passwords.ts';
import { readSession, startSession } from '../../src/identity/sessions.ts';
import { endPersonAccess } from '../../src/identity/lifecycle.ts';
import { findUserByUsername } from '../../src/identity/users.ts';
import type { RiskAssessment } from '../../src/risk/assessment.ts';
import { alicePassword, bobPassword, peopleFixture, type PeopleFixture } from './fixture.ts';
import { storedPasskey } from './recovery/fixture.ts';
import { failUpdates } from '../helpers/faults.ts';
import { testDialects } from '../helpers/storage.ts';
import { redisSkip } from '../helpers/redis.ts';

const from = (username: string, password: string, sourceAddress = '198.51.100.7'): LoginAttempt => ({ username, password, sourceAddress, requestId: 'req-1', clientId: 'trading-ui' });

/** Alice, and the cookie of a live session of hers (a lockout must end it). */
async function aliceSignedIn(f: PeopleFixture) {
  const alice = (await findUserByUsername(f.ctx, 'alice'))!;
  const session = await startSession(f.ctx, { userId: alice.id, acr: acr.password, amr: ['pwd'], cookieHeader: undefined });
  return { alice, cookie: session.setCookie.split(';')[0]! };
}

/** Each dialect with the login throttle in memory, and SQLite with it in Redis (the failure counts every node shares). */
const cases = [
  ...testDialects().map((dialect) => ({ dialect, throttleStore: 'memory' as const, name: dialect.name, skip: false as string | false })),
  { dialect: testDialects()[0]!, throttleStore: 'redis' as const, name: `${testDialects()[0]!.name}, throttle in Redis`, skip: redisSkip },
];

for (const { dialect, throttleStore, name, skip } of cases) {
  describe(`password login on ${name}`, { skip }, () => {
    test('accepts the right password, case-insensitively for the username, and audits it', async (t) => {
      const f = await peopleFixture(t, { dialect, throttleStore });
      const outcome = await verifyLogin(f.ctx, from('Alice', alicePassword));
      assert.equal(outcome.ok, true);
      assert.ok(outcome.ok);
      assert.equal(outcome.user.username, 'alice');
      assert.equal(outcome.acr, acr.password);
      assert.deepEqual(outcome.amr, ['pwd']);
      const [event] = await f.events('user.login_succeeded');
      assert.equal(event!.subject, outcome.user.id);
      assert.equal(event!.client, 'trading-ui');
      assert.equal(event!.requestId, 'req-1');
      assert.deepEqual(event!.details, { factor: 'password', source_address: '198.51.100.7', amr: ['pwd'], acr: acr.password });
      assert.ok((await findUserByUsername(f.ctx, 'alice'))!.lastLoginAt);
    });

    test('answers an unknown user and a wrong password alike, and audits why without the username', async (t) => {
      const f = await peopleFixture(t, { dialect, throttleStore });
      const unknown = await verifyLogin(f.ctx, from('mallory', alicePassword));
      const wrong = await verifyLogin(f.ctx, from('alice', 'not the password'));
      assert.deepEqual(unknown, { ok: false, reason: 'invalid_credentials' });
      assert.deepEqual(wrong, unknown);
      const events = await f.events('user.login_failed');
      assert.deepEqual(events.map((e) => e.decision), [
        { allow: false, reasons: ['unknown_user'] },
        { allow: false, reasons: ['wrong_password'] },
      ]);
      assert.equal(events[0]!.subject, undefined);
      assert.equal(events[1]!.subject, (await findUserByUsername(f.ctx, 'alice'))!.id);
      assert.doesNotMatch(await f.auditText(), /mallory|not the password/);
    });

    test('spends a full password verification on an unknown username too', async (t) => {
      const f = await peopleFixture(t, { dialect, throttleStore });
      f.policy({ throttle: { perAccount: { max: 100, windowMs: 60_000 }, perAddress: { max: 100, windowMs: 60_000 } } });
      await verifyLogin(f.ctx, from('mallory', 'warm-up')); // the dummy hash is made once per process
      const computations = async (username: string) => {
        const before = argon2Stats.computations;
        await verifyLogin(f.ctx, from(username, 'a wrong guess'));
        return argon2Stats.computations - before;
      };
      // One Argon2id computation either way: an unknown username costs what a wrong password costs.
      assert.equal(await computations('alice'), 1);
      assert.equal(await computations('mallory'), 1);
    });

    test('throttles an account after 5 failures in 5 minutes, from any address, even with the right password', async (t) => {
      const f = await peopleFixture(t, { dialect, throttleStore });
      for (let i = 0; i < 5; i++) assert.equal((await verifyLogin(f.ctx, from('alice', 'wrong', `203.0.113.${i}`))).ok, false);
      const throttled = await verifyLogin(f.ctx, from('alice', alicePassword, '203.0.113.99'));
      assert.equal(throttled.ok, false);
      assert.ok(!throttled.ok && throttled.reason === 'throttled' && throttled.retryAfterSeconds === 300);
      assert.equal((await verifyLogin(f.ctx, from('bob', bobPassword, '203.0.113.99'))).ok, true, 'other accounts are not affected');
      const last = (await f.events('user.login_failed')).at(-1)!;
      assert.deepEqual(last.decision, { allow: false, reasons: ['throttled'] });
      f.clock.advance(300_000);
      assert.equal((await verifyLogin(f.ctx, from('alice', alicePassword))).ok, true, 'the window passed');
    });

    test('counts parallel guesses before verifying them: 20 at once reach the password check at most 5 times', async (t) => {
      const f = await peopleFixture(t, { dialect, throttleStore });
      const before = argon2Stats.computations;
      const outcomes = await Promise.all(Array.from({ length: 20 }, (_, i) => verifyLogin(f.ctx, from('alice', `guess-${i}`, `203.0.113.${i}`))));
      assert.equal(argon2Stats.computations - before, 5, 'one Argon2id computation per guess the throttle let through');
      assert.equal(outcomes.filter((o) => !o.ok && o.reason === 'invalid_credentials').length, 5);
      assert.equal(outcomes.filter((o) => !o.ok && o.reason === 'throttled').length, 15);
      const reasons = (await f.events('user.login_failed')).map((e) => e.decision!.reasons[0]);
      assert.equal(reasons.filter((r) => r === 'wrong_password').length, 5);
      assert.equal(reasons.filter((r) => r === 'throttled').length, 15);
    });

    test('refunds a successful login its throttle count, but not the failures before it', async (t) => {
      const f = await peopleFixture(t, { dialect, throttleStore });
      for (let i = 0; i < 4; i++) await verifyLogin(f.ctx, from('alice', 'wrong', `203.0.113.${i}`));
      for (let i = 0; i < 3; i++) assert.equal((await verifyLogin(f.ctx, from('alice', alicePassword))).ok, true, 'a success does not use up the allowance');
      await verifyLogin(f.ctx, from('alice', 'wrong again'));
      const outcome = await verifyLogin(f.ctx, from('alice', alicePassword));
      assert.ok(!outcome.ok && outcome.reason === 'throttled', 'the four earlier failures still count');
    });

    test('keeps the throttle count of a right password a risk step-up sends to the passkey (passkey_required), as it keeps a refusal\'s', async (t) => {
      const f = await peopleFixture(t, { dialect, throttleStore });
      const alice = (await findUserByUsername(f.ctx, 'alice'))!;
      await storedPasskey(f.ctx, alice.id, 'alice-laptop');
      const stepUp: RiskAssessment = { score: 65, level: 'high', outcome: 'step_up', signals: [{ signal: 'new_device', points: 25 }] };
      const risky = { ...from('alice', alicePassword), risk: { address: '198.51.100.7', assess: async () => stepUp, observe: async () => ({ landed: Promise.resolve() }), setDeviceCookie: undefined } };
      // The distinct answer tells whoever gave it that the password was right (docs/authentication.md
      // "Risk at sign-in"): it is not a free guess, so its throttle count stays.
      for (let i = 0; i < 5; i++) assert.deepEqual(await verifyLogin(f.ctx, risky), { ok: false, reason: 'passkey_required' });
      const next = await verifyLogin(f.ctx, from('alice', alicePassword));
      assert.ok(!next.ok && next.reason === 'throttled', 'five passkey_required answers used up the allowance');
      assert.equal((await f.events('user.login_failed')).filter((e) => e.decision!.reasons[0] === 'risk_step_up').length, 5);
      assert.equal((await findUserByUsername(f.ctx, 'alice'))!.status, 'active', 'not counted toward the lockout');
    });

    test('refuses the right password whose verification a lockout overtook, and starts no session', async (t) => {
      const f = await peopleFixture(t, { dialect, throttleStore });
      f.policy({ throttle: { perAccount: { max: 100, windowMs: 60_000 } }, policy: { lockoutThreshold: 3 } });
      // The right password's success is written only after the wrong guesses racing it have locked
      // the account: its status was read, and its password verified, while the account was active.
      let guessesDone!: Promise<unknown>;
      const audit = f.ctx.audit;
      f.ctx.audit = {
        record: (event) => audit.record(event),
        // The guesses' failures counted on the live count (src/identity/failed-login.ts) commit at once.
        recordWith: (work) => audit.recordWith(work),
        commit: async (flight, events) => {
          // The guesses' own failures (their events and counts) commit at once.
          if (events.some((e) => e.type === 'user.login_succeeded')) await guessesDone;
          return audit.commit(flight, events);
        },
      };
      const alice = (await findUserByUsername(f.ctx, 'alice'))!;
      const right = verifyLogin(f.ctx, from('alice', alicePassword), async (trx, login) =>
        startSession(f.ctx, { userId: login.user.id, acr: login.acr, amr: login.amr, cookieHeader: undefined }, trx),
      );
      guessesDone = Promise.all([0, 1, 2].map((i) => verifyLogin(f.ctx, from('alice', `wrong-${i}`))));
      try {
        assert.deepEqual(await right, { ok: false, reason: 'invalid_credentials' });
      } finally {
        f.ctx.audit = audit; // the fixture's cleanup closes the real one
      }
      assert.equal((await findUserByUsername(f.ctx, 'alice'))!.status, 'locked');
      assert.equal((await f.events('user.locked')).length, 1);
      assert.deepEqual(await f.events('user.login_succeeded'), []);
      assert.deepEqual((await f.events('user.login_failed')).at(-1)!.decision, { allow: false, reasons: ['locked'] });
      const sessions = await f.ctx.storage.db.selectFrom('sessions').select('id').where('user_id', '=', alice.id).execute();
      assert.deepEqual(sessions, []);
      const row = await f.ctx.storage.db.selectFrom('users').select(['failed_logins', 'last_login_at']).where('id', '=', alice.id).executeTakeFirstOrThrow();
      assert.equal(row.failed_logins, 3, 'the refused success did not reset the count');
      assert.equal(row.last_login_at, null);
    });

    test('refuses the old password whose verification a password reset overtook, and starts no session', async (t) => {
      const f = await peopleFixture(t, { dialect, throttleStore });
      const alice = (await findUserByUsername(f.ctx, 'alice'))!;
      const outcome = await verifyLogin(f.ctx, from('alice', alicePassword), async (flight, login) => {
        // An administrator resets the password after the old one verified, before the sign-in commits.
        f.clock.advance(1);
        await f.ctx.storage.db.transaction().execute(async (trx) => {
          await trx.updateTable('users').set({ password_hash: await hashPassword('a-new-password-for-alice') }).where('id', '=', alice.id).execute();
          await endPersonAccess(trx, f.clock.now(), alice.id, 'password_reset', 'admin');
        });
        return startSession(f.ctx, { userId: login.user.id, acr: login.acr, amr: login.amr, cookieHeader: undefined }, flight);
      });
      assert.deepEqual(outcome, { ok: false, reason: 'invalid_credentials' });
      assert.deepEqual(await f.events('user.login_succeeded'), []);
      assert.deepEqual((await f.events('user.login_failed')).at(-1)!.decision, { allow: false, reasons: ['account_changed'] });
      assert.deepEqual(await f.ctx.storage.db.selectFrom('sessions').select('id').where('user_id', '=', alice.id).execute(), []);
    });

    test('remembers nothing of a sign-in a lock overtook: its device and network are written with it or not at all', async (t) => {
      const f = await peopleFixture(t, { dialect, throttleStore, risk: 'on' });
      const alice = (await findUserByUsername(f.ctx, 'alice'))!;
      const real = signInRisk(f.ctx, { address: '198.51.100.7', cookieHeader: undefined });
      const calm: RiskAssessment = { score: 0, level: 'low', outcome: 'allow', signals: [] };
      const overtaken = {
        ...from('alice', alicePassword),
        risk: {
          address: real.address,
          // An administrator locks the account while the password is being verified.
          assess: async () => (await f.ctx.storage.db.updateTable('users').set({ status: 'locked' }).where('id', '=', alice.id).execute(), calm),
          observe: real.observe,
          get setDeviceCookie() {
            return real.setDeviceCookie;
          },
        },
      };
      const outcome = await verifyLogin(f.ctx, overtaken);
      assert.ok(!outcome.ok, 'refused');
      assert.deepEqual(await f.events('user.login_succeeded'), []);
      const seen = await f.ctx.storage.db.selectFrom('risk_sightings').select(['kind', 'value']).where('principal_id', '=', alice.id).execute();
      assert.deepEqual(seen, [], 'no device, no network remembered');
      assert.equal(real.setDeviceCookie, undefined, 'no device cookie for a refused sign-in');

      await f.ctx.storage.db.updateTable('users').set({ status: 'active' }).where('id', '=', alice.id).execute();
      assert.ok((await verifyLogin(f.ctx, { ...overtaken, risk: { ...overtaken.risk, assess: async () => calm } })).ok);
      const remembered = await f.ctx.storage.db.selectFrom('risk_sightings').select('kind').where('principal_id', '=', alice.id).orderBy('kind').execute();
      assert.deepEqual(remembered.map((r) => r.kind), ['device', 'network'], 'the sign-in that committed is remembered');
    });

    test('throttles unknown usernames like known ones', async (t) => {
      const f = await peopleFixture(t, { dialect, throttleStore });
      for (let i = 0; i < 5; i++) await verifyLogin(f.ctx, from('mallory', 'wrong', `203.0.113.${i}`));
      const outcome = await verifyLogin(f.ctx, from('mallory', 'wrong', '203.0.113.50'));
      assert.ok(!outcome.ok && outcome.reason === 'throttled');
    });

    test('throttles a source address after 20 failures across accounts', async (t) => {
      const f = await peopleFixture(t, { dialect, throttleStore });
      for (let i = 0; i < 20; i++) await verifyLogin(f.ctx, from(`user${i}`, 'wrong', '192.0.2.1'));
      const outcome = await verifyLogin(f.ctx, from('alice', alicePassword, '192.0.2.1'));
      assert.ok(!outcome.ok && outcome.reason === 'throttled');
      assert.equal((await verifyLogin(f.ctx, from('alice', alicePassword, '192.0.2.2'))).ok, true);
    });

    test('locks an account after the threshold of consecutive failures, audits it once, and ends its sessions', async (t) => {
      const f = await peopleFixture(t, { dialect, throttleStore });
      f.policy({ throttle: { perAccount: { max: 100, windowMs: 60_000 } }, policy: { lockoutThreshold: 3 } });
      const { alice, cookie } = await aliceSignedIn(f);
      for (let i = 0; i < 4; i++) await verifyLogin(f.ctx, from('alice', `wrong-${i}`));
      assert.equal((await findUserByUsername(f.ctx, 'alice'))!.status, 'locked');
      const locked = await f.events('user.locked');
      assert.equal(locked.length, 1);
      assert.equal(locked[0]!.subject, alice.id);
      assert.deepEqual(locked[0]!.decision, { allow: false, reasons: ['consecutive_failures'] });
      assert.equal(await readSession(f.ctx, cookie), undefined);
      // The right password no longer opens the account, and says nothing different.
      assert.deepEqual(await verifyLogin(f.ctx, from('alice', alicePassword)), { ok: false, reason: 'invalid_credentials' });
      assert.deepEqual((await f.events('user.login_failed')).at(-1)!.decision, { allow: false, reasons: ['locked'] });
      // An administrator unlocks by applying status: active.
      await f.apply({ users: [{ username: 'alice', status: 'active' }] });
      assert.equal((await verifyLogin(f.ctx, from('alice', alicePassword))).ok, true);
    });

    test('counts each of parallel wrong guesses exactly once, and locks and audits the lockout once', async (t) => {
      const f = await peopleFixture(t, { dialect, throttleStore });
      f.policy({ throttle: { perAccount: { max: 100, windowMs: 60_000 }, perAddress: { max: 100, windowMs: 60_000 } }, policy: { lockoutThreshold: 8 } });
      // Each guess read the account before the others counted: most counts are sent again, from the count read anew.
      const outcomes = await Promise.all(Array.from({ length: 12 }, (_, i) => verifyLogin(f.ctx, from('alice', `guess-${i}`))));
      assert.ok(outcomes.every((o) => !o.ok && o.reason === 'invalid_credentials'));
      const row = await f.ctx.storage.db.selectFrom('users').select(['failed_logins', 'status', 'lock_reason']).where('username', '=', 'alice').executeTakeFirstOrThrow();
      assert.deepEqual({ ...row, failed_logins: Number(row.failed_logins) }, { failed_logins: 12, status: 'locked', lock_reason: 'failed_logins' });
      assert.equal((await f.events('user.locked')).length, 1);
      assert.deepEqual((await f.events('user.locked'))[0]!.details, { consecutive_failures: 8, source_address: '198.51.100.7' });
      assert.equal((await f.events('user.login_failed')).length, 12);
    });

    test("writes a wrong password's event with its count, or neither when the count cannot be written", async (t) => {
      const f = await peopleFixture(t, { dialect, throttleStore });
      const undo = await failUpdates(f.ctx.storage, 'users', 'failed_logins');
      await assert.rejects(verifyLogin(f.ctx, from('alice', 'wrong')), /injected fault/);
      await undo();
      assert.deepEqual(await f.events('user.login_failed'), [], 'no failure audited without its count');
      assert.equal(await f.failedLogins('alice'), 0);
      // Once the database takes writes again, the next guess is audited and counted together.
      await verifyLogin(f.ctx, from('alice', 'wrong'));
      assert.equal((await f.events('user.login_failed')).length, 1);
      assert.equal(await f.failedLogins('alice'), 1);
    });

    test('writes a lockout with the failure that reached it, its event and its ended sessions, or none of them', async (t) => {
      const f = await peopleFixture(t, { dialect, throttleStore });
      f.policy({ throttle: { perAccount: { max: 100, windowMs: 60_000 } }, policy: { lockoutThreshold: 2 } });
      const { cookie } = await aliceSignedIn(f);
      await verifyLogin(f.ctx, from('alice', 'wrong-1'));
      const undo = await failUpdates(f.ctx.storage, 'sessions');
      await assert.rejects(verifyLogin(f.ctx, from('alice', 'wrong-2')), /injected fault/);
      await undo();
      assert.equal((await findUserByUsername(f.ctx, 'alice'))!.status, 'active');
      assert.deepEqual(await f.events('user.locked'), []);
      assert.equal((await f.events('user.login_failed')).length, 1, 'only the first failure');
      assert.equal(await f.failedLogins('alice'), 1, 'nor its count');
      assert.ok(await readSession(f.ctx, cookie), 'the session is still live');
      await verifyLogin(f.ctx, from('alice', 'wrong-2'));
      assert.equal((await findUserByUsername(f.ctx, 'alice'))!.status, 'locked');
      assert.equal((await f.events('user.locked')).length, 1);
      assert.equal(await readSession(f.ctx, cookie), undefined);
    });

    test('counts only consecutive failures: a success resets the count', async (t) => {
      const f = await peopleFixture(t, { dialect, throttleStore });
      f.policy({ throttle: { perAccount: { max: 100, windowMs: 60_000 } }, policy: { lockoutThreshold: 3 } });
      for (let round = 0; round < 3; round++) {
        await verifyLogin(f.ctx, from('alice', 'wrong'));
        await verifyLogin(f.ctx, from('alice', 'wrong again'));
        assert.equal((await verifyLogin(f.ctx, from('alice', alicePassword))).ok, true);
      }
      assert.equal((await findUserByUsername(f.ctx, 'alice'))!.status, 'active');
    });

    test('refuses a password longer than any accepted one as a wrong one, and counts it', async (t) => {
      const f = await peopleFixture(t, { dialect, throttleStore });
      assert.deepEqual(await verifyLogin(f.ctx, from('alice', 'x'.repeat(5000))), { ok: false, reason: 'invalid_credentials' });
      assert.deepEqual((await f.events('user.login_failed')).at(-1)!.decision, { allow: false, reasons: ['wrong_password'] });
      assert.equal(await f.failedLogins('alice'), 1);
    });

    test('refuses an account without a password as it refuses a wrong one', async (t) => {
      const f = await peopleFixture(t, { dialect, throttleStore });
      await f.apply({ users: [{ username: 'dave' }] });
      assert.deepEqual(await verifyLogin(f.ctx, from('dave', '')), { ok: false, reason: 'invalid_credentials' });
      assert.deepEqual((await f.events('user.login_failed')).at(-1)!.decision, { allow: false, reasons: ['no_password'] });
    });

    test('upgrades a hash made with older parameters at the next successful login', async (t) => {
      const f = await peopleFixture(t, { dialect, throttleStore });
      const old = await hashPassword('an imported passphrase', { memory: 4096, passes: 1, parallelism: 1 });
      await f.apply({ users: [{ username: 'carol', password_hash: old }] });
      assert.equal((await verifyLogin(f.ctx, from('carol', 'an imported passphrase'))).ok, true);
      const stored = (await f.ctx.storage.db.selectFrom('users').select('password_hash').where('username', '=', 'carol').executeTakeFirstOrThrow()).password_hash!;
      assert.match(stored, /^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
      assert.equal(await verifyPassword('an imported passphrase', stored), true);
    });
  });
}
