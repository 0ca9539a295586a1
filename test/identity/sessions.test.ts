import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { acr } from '../../src/identity/acr.ts';
import { clearSessionCookie, cookieName, cookieScope, endSession, readSession, sessionCookieName, sessionIdFor, startSession, type StartedSession } from '../../src/identity/sessions.ts';
import { findUserByUsername } from '../../src/identity/users.ts';
import { testDialects } from '../helpers/storage.ts';
import { peopleFixture, type PeopleFixture } from './fixture.ts';

const minute = 60_000;

async function login(f: PeopleFixture, username = 'alice', cookieHeader?: string): Promise<StartedSession & { cookie: string; value: string }> {
  const user = (await findUserByUsername(f.ctx, username))!;
  const started = await startSession(f.ctx, { userId: user.id, acr: acr.password, amr: ['pwd'], cookieHeader });
  const cookie = started.setCookie.split(';')[0]!;
  return { ...started, cookie, value: cookie.slice(cookie.indexOf('=') + 1) };
}

for (const dialect of testDialects()) {
  describe(`sessions on ${dialect.name}`, () => {
    test('start with a 256-bit cookie whose SHA-256 is the stored id, and read back as the contract’s Authentication', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const alice = (await findUserByUsername(f.ctx, 'alice'))!;
      const session = await login(f);
      assert.match(session.value, /^[A-Za-z0-9_-]{43}$/);
      assert.equal(session.authentication.sessionId, sessionIdFor(session.value));
      assert.notEqual(session.authentication.sessionId, session.value);
      const stored = await f.ctx.storage.db.selectFrom('sessions').selectAll().execute();
      assert.equal(stored.length, 1);
      assert.doesNotMatch(JSON.stringify(stored), new RegExp(session.value), 'the cookie value is never stored');
      assert.deepEqual(await readSession(f.ctx, `theme=dark; ${session.cookie}`), {
        userId: alice.id,
        sessionId: sessionIdFor(session.value),
        authTime: Math.floor(f.clock.now() / 1000),
        acr: acr.password,
        amr: ['pwd'],
      });
    });

    test('read nothing from a missing, malformed or unknown cookie', async (t) => {
      const f = await peopleFixture(t, { dialect });
      for (const header of [undefined, '', `${sessionCookieName}=`, `${sessionCookieName}=short`, `${sessionCookieName}=${'A'.repeat(43)}`, `other=${(await login(f)).value}`]) {
        assert.equal(await readSession(f.ctx, header), undefined, String(header));
      }
    });

    test('set the cookie as __Host-clearance_session, HttpOnly, SameSite=Lax, Path=/, Secure and without Domain on an https issuer at the root', async (t) => {
      const f = await peopleFixture(t, { dialect, env: { CLEARANCE_ISSUER: 'https://id.broker.example' } });
      const { setCookie } = await login(f);
      assert.match(setCookie, /^__Host-clearance_session=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Lax; Secure$/);
      assert.doesNotMatch(setCookie, /Domain=/i, 'RFC 6265bis §4.1.3.2: a __Host- cookie has no Domain');
      assert.equal(clearSessionCookie(f.ctx), '__Host-clearance_session=; Path=/; HttpOnly; SameSite=Lax; Secure; Max-Age=0');
    });

    test('leave Secure and the prefix off only for a development issuer on http', async (t) => {
      const f = await peopleFixture(t, { dialect, env: { CLEARANCE_ISSUER: 'http://localhost:9000' } });
      const { setCookie } = await login(f);
      assert.match(setCookie, /^clearance_session=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Lax$/);
      assert.equal(clearSessionCookie(f.ctx), 'clearance_session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0');
    });

    test('scope the cookie to the issuer’s path when the issuer has one, as __Secure-clearance_session (__Host- requires Path=/)', async (t) => {
      const f = await peopleFixture(t, { dialect, env: { CLEARANCE_ISSUER: 'https://broker.example/idp' } });
      const { setCookie } = await login(f);
      assert.match(setCookie, /^__Secure-clearance_session=[A-Za-z0-9_-]{43}; Path=\/idp; HttpOnly; SameSite=Lax; Secure$/);
      assert.doesNotMatch(setCookie, /Domain=/i);
      assert.equal(clearSessionCookie(f.ctx), '__Secure-clearance_session=; Path=/idp; HttpOnly; SameSite=Lax; Secure; Max-Age=0');
    });

    test('read the session only under the issuer’s cookie name: a bare or other-prefixed cookie on https is not a session', async (t) => {
      const names: [string, string, string[]][] = [
        ['https://id.broker.example', '__Host-clearance_session', ['clearance_session', '__Secure-clearance_session']],
        ['https://broker.example/idp', '__Secure-clearance_session', ['clearance_session', '__Host-clearance_session']],
        ['http://localhost:9000', 'clearance_session', ['__Host-clearance_session', '__Secure-clearance_session']],
      ];
      for (const [issuer, own, others] of names) {
        const f = await peopleFixture(t, { dialect, env: { CLEARANCE_ISSUER: issuer } });
        assert.equal(cookieName(sessionCookieName, cookieScope(issuer)), own, issuer);
        const { value } = await login(f);
        for (const other of others) {
          assert.equal(await readSession(f.ctx, `${other}=${value}`), undefined, `${other} on ${issuer}`);
        }
        assert.ok(await readSession(f.ctx, `${others.map((other) => `${other}=${value}`).join('; ')}; ${own}=${value}`), `${own} on ${issuer}`);
        // A planted cookie under another name is not the browser's previous session: a login does not end it.
        const next = await login(f, 'bob', `${others[0]}=${value}`);
        assert.ok(await readSession(f.ctx, `${own}=${value}`), `not rotated by ${others[0]} on ${issuer}`);
        assert.ok(await readSession(f.ctx, next.cookie));
      }
    });

    test('end after 30 idle minutes, and stay alive while used', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const { cookie } = await login(f);
      f.clock.advance(29 * minute);
      assert.ok(await readSession(f.ctx, cookie), 'used at 29 minutes');
      f.clock.advance(29 * minute);
      assert.ok(await readSession(f.ctx, cookie), 'used again 29 minutes later');
      f.clock.advance(30 * minute + 1);
      assert.equal(await readSession(f.ctx, cookie), undefined, 'idle for more than 30 minutes');
    });

    test('end 12 hours after login however active', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const loggedInAt = f.clock.now();
      const { cookie } = await login(f);
      for (let elapsed = 20; elapsed < 12 * 60; elapsed += 20) {
        f.clock.set(loggedInAt + elapsed * minute);
        assert.ok(await readSession(f.ctx, cookie), `at ${elapsed} minutes`);
      }
      f.clock.set(loggedInAt + 12 * 60 * minute);
      assert.equal(await readSession(f.ctx, cookie), undefined, 'at 12 hours');
    });

    test('rotate at every login: the browser’s previous session ends and the new id differs', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const first = await login(f);
      const second = await login(f, 'alice', first.cookie);
      assert.notEqual(second.value, first.value);
      assert.notEqual(second.authentication.sessionId, first.authentication.sessionId);
      assert.equal(await readSession(f.ctx, first.cookie), undefined, 'the old id is dead');
      assert.ok(await readSession(f.ctx, second.cookie));
      const old = await f.ctx.storage.db.selectFrom('sessions').select(['ended_at', 'end_reason']).where('id', '=', first.authentication.sessionId).executeTakeFirstOrThrow();
      assert.equal(old.end_reason, 'rotated');
    });

    test('a session id planted before login does not become the logged-in session (fixation)', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const attackers = await login(f, 'bob');
      const victims = await login(f, 'alice', attackers.cookie);
      assert.equal(await readSession(f.ctx, attackers.cookie), undefined);
      assert.equal((await readSession(f.ctx, victims.cookie))!.userId, (await findUserByUsername(f.ctx, 'alice'))!.id);
    });

    test('answer none when two valid sessions arrive in one Cookie header', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const a = await login(f, 'alice');
      const b = await login(f, 'bob');
      assert.equal(await readSession(f.ctx, `${b.cookie}; ${a.cookie}`), undefined);
      assert.ok(await readSession(f.ctx, `${b.cookie}; ${sessionCookieName}=${'A'.repeat(43)}`), 'a dead one beside a live one is fine');
    });

    test('end at logout, audited as user.logged_out, and only once', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const { cookie, authentication } = await login(f);
      await endSession(f.ctx, authentication.sessionId);
      await endSession(f.ctx, authentication.sessionId);
      await endSession(f.ctx, 'no-such-session');
      assert.equal(await readSession(f.ctx, cookie), undefined);
      const events = await f.events('user.logged_out');
      assert.equal(events.length, 1);
      assert.equal(events[0]!.subject, authentication.userId);
    });

    test('stop working when the user is locked', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const { cookie } = await login(f);
      await f.ctx.storage.db.updateTable('users').set({ status: 'locked' }).where('username', '=', 'alice').execute();
      assert.equal(await readSession(f.ctx, cookie), undefined);
    });
  });
}
