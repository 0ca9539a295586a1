import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Context } from '../../../src/context.ts';
import { deviceCookie, newDeviceId, presentedDeviceId } from '../../../src/identity/device-cookie.ts';
import { recordFailedLogin } from '../../../src/identity/failed-login.ts';
import { findUserByUsername } from '../../../src/identity/users.ts';
import { assessRisk, observeRisk, type RiskFacts } from '../../../src/risk/engine.ts';
import { withinTradingHours } from '../../../src/risk/trading-hours.ts';
import { defaultRiskSettings } from '../../../src/risk/settings.ts';
import { peopleFixture, type PeopleFixture } from '../../identity/fixture.ts';
import { testDialects } from '../../helpers/storage.ts';
import { hit, nextUtc, tokyoDesk, useRiskSettings } from '../fixture.ts';

const dayMs = 86_400_000;

async function userId(ctx: Context, username: string): Promise<string> {
  return (await findUserByUsername(ctx, username))!.id;
}

/** A wrong password of the person `id`, counted as the sign-in page counts it. */
async function failedSignIn(ctx: Context, id: string): Promise<void> {
  const account = await ctx.storage.db.selectFrom('users').select(['id', 'failed_logins', 'status']).where('id', '=', id).executeTakeFirstOrThrow();
  const source = '192.0.2.66';
  await recordFailedLogin(ctx, account, { type: 'user.login_failed', subject: id, decision: { allow: false, reasons: ['wrong_password'] }, details: { factor: 'password', source_address: source } }, { subject: id }, source);
}

/** A sign-in of `id` from `address` with `deviceId`, as the sign-in pages describe it. */
function login(id: string, address: string | undefined, deviceId?: string): RiskFacts {
  return { moment: 'login', principal: { type: 'User', id }, ...(address ? { address } : {}), ...(deviceId ? { deviceId } : {}) };
}

describe('trading hours', () => {
  test('are the weekdays and minutes of the settings, and may run across midnight', () => {
    const hours = defaultRiskSettings.tradingHours;
    assert.equal(withinTradingHours(hours, { minutes: 7 * 60, weekday: 2 }), true);
    assert.equal(withinTradingHours(hours, { minutes: 18 * 60 - 1, weekday: 5 }), true);
    assert.equal(withinTradingHours(hours, { minutes: 18 * 60, weekday: 2 }), false);
    assert.equal(withinTradingHours(hours, { minutes: 3 * 60, weekday: 2 }), false);
    assert.equal(withinTradingHours(hours, { minutes: 10 * 60, weekday: 6 }), false);
    const overnight = { start: 22 * 60, end: 6 * 60, weekdays: [1, 2, 3, 4, 5] };
    assert.equal(withinTradingHours(overnight, { minutes: 23 * 60, weekday: 1 }), true);
    assert.equal(withinTradingHours(overnight, { minutes: 5 * 60, weekday: 2 }), true);
    assert.equal(withinTradingHours(overnight, { minutes: 12 * 60, weekday: 2 }), false);
  });
});

for (const dialect of testDialects()) {
  describe(`the login signals on ${dialect.name}`, () => {
    /** People, the engine on with its default settings, and the clock on a Tuesday at 08:00 UTC (17:00 in Tokyo): in hours everywhere. */
    async function fixture(t: Parameters<typeof peopleFixture>[0]): Promise<PeopleFixture> {
      const f = await peopleFixture(t, { dialect });
      f.clock.set(nextUtc(f.clock.now(), 2, 8));
      useRiskSettings(f.ctx);
      return f;
    }

    test("new_device stays quiet on an account's first sign-in, then fires for a browser without a valid device cookie or one never seen for this account", async (t) => {
      const f = await fixture(t);
      const alice = await userId(f.ctx, 'alice');
      const bob = await userId(f.ctx, 'bob');
      // No device seen for alice yet: her first sign-in sets the baseline, with a cookie or without.
      assert.equal(hit(await assessRisk(f.ctx, login(alice, '192.0.2.10')), 'new_device'), undefined);
      assert.equal(hit(await assessRisk(f.ctx, login(alice, '192.0.2.10', 'device-a')), 'new_device'), undefined);
      await observeRisk(f.ctx, login(alice, '192.0.2.10', 'device-a'));
      assert.equal(hit(await assessRisk(f.ctx, login(alice, '192.0.2.10', 'device-a')), 'new_device'), undefined);
      // Once she has a history: a browser without a cookie, or with one never seen for her, is new.
      assert.deepEqual(hit(await assessRisk(f.ctx, login(alice, '192.0.2.10')), 'new_device'), { signal: 'new_device', points: 25, detail: 'no valid device cookie' });
      assert.equal(hit(await assessRisk(f.ctx, login(alice, '192.0.2.10', 'device-b')), 'new_device')?.detail, 'device never seen for this account');
      // A browser presents its device id in a signed cookie (src/identity/device-cookie.ts): known
      // while it verifies; edited, it names no device, and the browser is new again.
      const browser = newDeviceId();
      await observeRisk(f.ctx, login(alice, '192.0.2.10', browser));
      const cookie = deviceCookie(f.ctx, browser).split(';')[0]!;
      const presented = (header: string) => presentedDeviceId(f.ctx.identity.deviceCookieKey, header, f.ctx.config.issuer);
      assert.equal(hit(await assessRisk(f.ctx, login(alice, '192.0.2.10', presented(cookie))), 'new_device'), undefined);
      const tampered = cookie.replace(`=${browser[0]}`, `=${browser[0] === 'A' ? 'B' : 'A'}`);
      assert.equal(presented(tampered), undefined);
      assert.equal(hit(await assessRisk(f.ctx, login(alice, '192.0.2.10', presented(tampered))), 'new_device')?.detail, 'no valid device cookie');
      // Devices are remembered per account: alice's device is bob's first, and new once bob has his own.
      assert.equal(hit(await assessRisk(f.ctx, login(bob, '192.0.2.10', 'device-a')), 'new_device'), undefined);
      await observeRisk(f.ctx, login(bob, '192.0.2.10', 'device-b'));
      assert.ok(hit(await assessRisk(f.ctx, login(bob, '192.0.2.10', 'device-a')), 'new_device'));
      // Still known a year on (the cookie lives 400 days).
      f.clock.advance(365 * dayMs);
      assert.equal(hit(await assessRisk(f.ctx, login(alice, '192.0.2.10', 'device-a')), 'new_device'), undefined);
    });

    test("new_network stays quiet on a person's first sign-in, then fires for a network not seen for them within network_memory_days", async (t) => {
      const f = await fixture(t);
      const alice = await userId(f.ctx, 'alice');
      // No network seen for alice yet: her first sign-in sets the baseline.
      assert.equal(hit(await assessRisk(f.ctx, login(alice, '192.0.2.10')), 'new_network'), undefined);
      await observeRisk(f.ctx, login(alice, '192.0.2.10'));
      // The same /24 is the same network; another is new.
      assert.equal(hit(await assessRisk(f.ctx, login(alice, '192.0.2.200')), 'new_network'), undefined);
      assert.deepEqual(hit(await assessRisk(f.ctx, login(alice, '198.51.100.7')), 'new_network'), { signal: 'new_network', points: 15, detail: 'network 198.51.100.0/24 never seen' });
      // Not seen for longer than the memory: new again.
      f.clock.advance(31 * dayMs);
      assert.equal(hit(await assessRisk(f.ctx, login(alice, '192.0.2.10')), 'new_network')?.detail, 'network 192.0.2.0/24 not seen for 30 days');
      // A sign-in without an address says nothing about networks.
      assert.equal(hit(await assessRisk(f.ctx, login(alice, undefined)), 'new_network'), undefined);
    });

    test('recent_failures fires at failure_threshold failed sign-ins, the latest within the window, and not after it or after a success', async (t) => {
      const f = await fixture(t);
      const alice = await userId(f.ctx, 'alice');
      const fail = () => failedSignIn(f.ctx, alice);
      await fail();
      await fail();
      assert.equal(hit(await assessRisk(f.ctx, login(alice, '192.0.2.10')), 'recent_failures'), undefined);
      f.clock.advance(60_000);
      await fail();
      assert.deepEqual(hit(await assessRisk(f.ctx, login(alice, '192.0.2.10')), 'recent_failures'), { signal: 'recent_failures', points: 20, detail: '3 failed sign-ins, the latest 0 s ago' });
      f.clock.advance(900_000);
      assert.ok(hit(await assessRisk(f.ctx, login(alice, '192.0.2.10')), 'recent_failures'), 'still within the 900 s window');
      f.clock.advance(1000);
      assert.equal(hit(await assessRisk(f.ctx, login(alice, '192.0.2.10')), 'recent_failures'), undefined);
      // A successful sign-in resets the count (src/identity/login.ts completeLogin).
      await fail();
      await fail();
      await fail();
      await f.ctx.storage.db.updateTable('users').set({ failed_logins: 0 }).where('id', '=', alice).execute();
      assert.equal(hit(await assessRisk(f.ctx, login(alice, '192.0.2.10')), 'recent_failures'), undefined);
    });

    test('recent_lockout fires within the window after the automatic lockout, also once an administrator unlocked the account', async (t) => {
      const f = await fixture(t);
      f.policy({ policy: { lockoutThreshold: 3 } });
      useRiskSettings(f.ctx, { failureThreshold: 10 });
      const alice = await userId(f.ctx, 'alice');
      assert.equal(hit(await assessRisk(f.ctx, login(alice, '192.0.2.10')), 'recent_lockout'), undefined);
      for (let i = 0; i < 3; i++) await failedSignIn(f.ctx, alice);
      assert.equal((await findUserByUsername(f.ctx, 'alice'))!.status, 'locked');
      f.clock.advance(120_000);
      await f.apply({ users: [{ username: 'alice', status: 'active' }] });
      const unlocked = await assessRisk(f.ctx, login(alice, '192.0.2.10'));
      assert.deepEqual(hit(unlocked, 'recent_lockout'), { signal: 'recent_lockout', points: 30, detail: 'locked out 120 s ago' });
      assert.equal(hit(unlocked, 'recent_failures'), undefined, 'the unlock cleared the count');
      f.clock.advance(900_000);
      assert.equal(hit(await assessRisk(f.ctx, login(alice, '192.0.2.10')), 'recent_lockout'), undefined);
    });

    test("off_hours reads the trading hours at the person's desk, in its time zone, and in UTC for a person without one", async (t) => {
      const f = await fixture(t);
      await f.apply(tokyoDesk);
      await f.apply({ users: [{ username: 'nina', password: 'nina-staple-horse-93', desks: ['ops', 'tokyo-fx'] }] });
      const nina = await userId(f.ctx, 'nina');
      const bob = await userId(f.ctx, 'bob');
      const tuesday = f.clock.now();
      assert.equal(hit(await assessRisk(f.ctx, login(nina, '192.0.2.10')), 'off_hours'), undefined, '17:00 in Tokyo');
      // 12:00 UTC, 21:00 in Tokyo: off hours at nina's desk, within them in UTC (bob: no desk time zone).
      f.clock.set(tuesday + 4 * 3600_000);
      assert.deepEqual(hit(await assessRisk(f.ctx, login(nina, '192.0.2.10')), 'off_hours'), { signal: 'off_hours', points: 20, detail: '21:00 on ISO weekday 2 at desk tokyo-fx' });
      assert.equal(hit(await assessRisk(f.ctx, login(bob, '192.0.2.10')), 'off_hours'), undefined);
      // Saturday.
      f.clock.set(tuesday + 4 * dayMs);
      assert.equal(hit(await assessRisk(f.ctx, login(bob, '192.0.2.10')), 'off_hours')?.detail, '08:00 on ISO weekday 6 UTC');
      // A weight of 0 switches a signal off.
      useRiskSettings(f.ctx, { weights: { ...defaultRiskSettings.weights, off_hours: 0 } });
      assert.equal(hit(await assessRisk(f.ctx, login(bob, '192.0.2.10')), 'off_hours'), undefined);
    });

    test("a person's first sign-in, from any browser and network in hours, scores nothing: it sets the baseline", async (t) => {
      const f = await fixture(t);
      const alice = await userId(f.ctx, 'alice');
      assert.deepEqual(await assessRisk(f.ctx, login(alice, '203.0.113.9')), { score: 0, level: 'low', outcome: 'allow', signals: [] });
      assert.deepEqual(await assessRisk(f.ctx, login(alice, '203.0.113.9', 'device-a')), { score: 0, level: 'low', outcome: 'allow', signals: [] });
    });

    test('a quiet sign-in from a known device and network in hours scores nothing', async (t) => {
      const f = await fixture(t);
      const alice = await userId(f.ctx, 'alice');
      await observeRisk(f.ctx, login(alice, '192.0.2.10', 'device-a'));
      assert.deepEqual(await assessRisk(f.ctx, login(alice, '192.0.2.11', 'device-a')), { score: 0, level: 'low', outcome: 'allow', signals: [] });
    });
  });
}
