import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MemoryLoginThrottle } from '../../src/identity/login-throttle.ts';
import { csrfToken } from '../../src/ui/csrf.ts';
import { pageCsp } from '../../src/ui/respond.ts';
import { assertOnlyPasskeyScripts, passkeyPageCsp } from '../helpers/pages.ts';
import { codeFlowFixture, pkce, type CodeFlowFixture } from '../authorization/fixture.ts';
import { formBody } from './fixture.ts';
import { codeAt, enrolTotp, type Enrolled } from '../identity/factors/fixture.ts';
import { approveAndRedeem, csrfOf, get, Jar, locationPath, post, setCookies, startAuthorization, submitPassword, submitSecondFactor } from './people-browser.ts';

// A person with an authenticator signs in through the real pages of an authorization request:
// password, then the second-factor page, then consent; the tokens say how they authenticated.

const password = 'alice-correct-horse-42';

async function fixture(t: Parameters<typeof codeFlowFixture>[0], roles: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<CodeFlowFixture & { alice: Enrolled }> {
  const f = await codeFlowFixture(t, { risk: 'off', env }); // sign-ins that are not about risk (docs/risk.md), whatever the hour
  await f.apply({ users: [{ username: 'alice', password, name: 'Alice Trader', roles }, { username: 'bob', password: 'bob-battery-staple-77' }] });
  const alice = await enrolTotp(f, 'alice');
  return Object.assign(f, { alice });
}

const onSecondFactorPage = (body: string) => /<h1>Enter your code<\/h1>/.test(body);
const onSignInPage = (body: string) => /<input type="password" id="password"/.test(body);

function assertPage(response: { statusCode: number; headers: Record<string, unknown>; body: string }, status: number, label: string): void {
  assert.equal(response.statusCode, status, `${label}: ${response.body.slice(0, 300)}`);
  assert.equal(response.headers['cache-control'], 'no-store', label);
  // The sign-in page runs the passkey scripts (and only those); the second-factor page none.
  if (onSignInPage(response.body)) {
    assert.equal(response.headers['content-security-policy'], passkeyPageCsp('form', 'http://localhost:9000'), label);
    assertOnlyPasskeyScripts(response.body);
    return;
  }
  assert.equal(response.headers['content-security-policy'], pageCsp.form, label);
  assert.doesNotMatch(response.body, /<script|\sstyle=|\son[a-z]+=/i, `${label}: no script, no inline style or handler`);
}

describe('signing in with a password and an authenticator', () => {
  test('asks for the authenticator’s code after the password, with no session until it passes; the ID token and access token then carry acr mfa and amr pwd otp mfa', async (t) => {
    const f = await fixture(t);
    const jar = new Jar();
    const { id, verifier } = await startAuthorization(f, jar);
    const afterPassword = await submitPassword(f, jar, id, 'alice', password);
    assert.equal(locationPath(f, afterPassword), `/interaction/${id}/second-factor`);
    const cookies = setCookies(afterPassword);
    assert.ok(!cookies.some((c) => c.startsWith('clearance_session=')), 'no session after the password alone');
    assert.match(cookies.find((c) => c.startsWith('clearance_pending='))!, /^clearance_pending=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Strict; Max-Age=300$/);
    assert.deepEqual(await f.ctx.storage.db.selectFrom('sessions').select('id').where('user_id', '=', f.alice.userId).execute(), []);

    const page = await get(f, `/interaction/${id}/second-factor`, jar);
    assertPage(page, 200, 'the second-factor page');
    assert.ok(onSecondFactorPage(page.body));
    assert.match(page.body, /<input type="text" id="code" name="code" inputmode="numeric" autocomplete="one-time-code"/);
    assert.match(page.body, /<input type="text" id="recovery_code" name="recovery_code"/);
    assert.match(page.body, /to finish signing in as <strong>alice<\/strong> to <strong>Trading Desk<\/strong>/);

    const signedIn = await post(f, `/interaction/${id}/second-factor`, { csrf_token: csrfOf(page.body), code: await codeAt(f.alice.secret, f.clock.now()) }, jar);
    assert.ok(setCookies(signedIn).some((c) => c.startsWith('clearance_session=')), 'the session starts now');
    assert.ok(setCookies(signedIn).some((c) => /^clearance_pending=; .*Max-Age=0/.test(c)), 'the pending cookie is cleared');
    const { idToken, accessToken } = await approveAndRedeem(f, jar, id, verifier, signedIn);
    assert.equal(idToken.acr, 'urn:clearance:acr:mfa');
    assert.deepEqual(idToken.amr, ['pwd', 'otp', 'mfa']);
    assert.equal(accessToken.acr, 'urn:clearance:acr:mfa');
    assert.deepEqual(accessToken.amr, ['pwd', 'otp', 'mfa']);
    assert.equal(idToken.sub, f.alice.userId);
  });

  test('uses the pending sign-in up: presented again after the sign-in, it signs nobody in', async (t) => {
    const f = await fixture(t);
    const jar = new Jar();
    const { id } = await startAuthorization(f, jar);
    await submitPassword(f, jar, id, 'alice', password);
    const pendingCookie = jar.cookies.get('clearance_pending')!;
    const page = await get(f, `/interaction/${id}/second-factor`, jar);
    assert.equal(locationPath(f, await post(f, `/interaction/${id}/second-factor`, { csrf_token: csrfOf(page.body), code: await codeAt(f.alice.secret, f.clock.now()) }, jar)), `/interaction/${id}`);
    const copy = new Jar(jar.header());
    copy.cookies.delete('clearance_session');
    copy.set(`clearance_pending=${pendingCookie}`);
    f.clock.advance(30_000);
    const again = await post(f, `/interaction/${id}/second-factor`, { csrf_token: csrfOf(page.body), code: await codeAt(f.alice.secret, f.clock.now()) }, copy);
    assertPage(again, 401, 'a used pending sign-in');
    assert.ok(onSignInPage(again.body));
    assert.equal((await f.auditEvents('user.login_succeeded')).length, 1);
  });

  test('signs a person without an authenticator in with the password alone, at pwd', async (t) => {
    const f = await fixture(t);
    const jar = new Jar();
    const { id, verifier } = await startAuthorization(f, jar);
    const signedIn = await submitPassword(f, jar, id, 'bob', 'bob-battery-staple-77');
    assert.equal(locationPath(f, signedIn), `/interaction/${id}`);
    const { idToken } = await approveAndRedeem(f, jar, id, verifier, signedIn);
    assert.equal(idToken.acr, 'urn:clearance:acr:pwd');
    assert.deepEqual(idToken.amr, ['pwd']);
  });

  test('never shows the second step to an unknown user: the same answer as a wrong password, and no pending cookie', async (t) => {
    const f = await fixture(t);
    const jar = new Jar();
    const { id } = await startAuthorization(f, jar);
    const unknown = await submitPassword(f, jar, id, 'mallory', password);
    const wrong = await submitPassword(f, jar, id, 'alice', 'not the password');
    for (const response of [unknown, wrong]) {
      assertPage(response, 401, 'a failed password');
      assert.match(response.body, /The username or password is not correct./);
      assert.ok(!setCookies(response).some((c) => c.startsWith('clearance_pending=')));
    }
    assert.equal(locationPath(f, await get(f, `/interaction/${id}/second-factor`, jar)), `/interaction/${id}`, 'no second step without a right password');
  });

  test('refuses a code used once already, even in another browser: RFC 6238 §5.2', async (t) => {
    const f = await fixture(t);
    const code = await codeAt(f.alice.secret, f.clock.now());
    const first = new Jar();
    const a = await startAuthorization(f, first);
    await submitPassword(f, first, a.id, 'alice', password);
    assert.equal(locationPath(f, await submitSecondFactor(f, first, a.id, { code })), `/interaction/${a.id}`);

    const second = new Jar();
    const b = await startAuthorization(f, second);
    await submitPassword(f, second, b.id, 'alice', password);
    const replay = await submitSecondFactor(f, second, b.id, { code });
    assertPage(replay, 401, 'a replayed code');
    assert.ok(onSecondFactorPage(replay.body));
    assert.match(replay.body, /That code is not correct./);
    assert.ok(!setCookies(replay).some((c) => c.startsWith('clearance_session=')), 'no session');
    const [failed] = await f.auditEvents('user.factor_failed');
    assert.deepEqual(failed!.decision, { allow: false, reasons: ['replayed'] });
    assert.deepEqual(failed!.details, { factor: 'totp', credential: f.alice.factorId, source_address: '127.0.0.1' });

    // The next time step's code works.
    f.clock.advance(30_000);
    assert.equal(locationPath(f, await submitSecondFactor(f, second, b.id, { code: await codeAt(f.alice.secret, f.clock.now()) })), `/interaction/${b.id}`);
  });

  test('counts wrong codes as failed logins: the account locks at the threshold and the right code then does nothing', async (t) => {
    const f = await fixture(t);
    f.ctx.identity.policy = { ...f.ctx.identity.policy, lockoutThreshold: 3 };
    const jar = new Jar();
    const { id } = await startAuthorization(f, jar);
    await submitPassword(f, jar, id, 'alice', password);
    for (const code of ['000000', '111111']) {
      const wrong = await submitSecondFactor(f, jar, id, { code });
      assertPage(wrong, 401, 'a wrong code');
      assert.match(wrong.body, /That code is not correct./);
      assert.match(wrong.body, /id="code"[^>]* aria-invalid="true"/);
    }
    const pendingCookie = jar.cookies.get('clearance_pending')!;
    const third = await submitSecondFactor(f, jar, id, { code: '222222' });
    assertPage(third, 401, 'the wrong code that locks');
    assert.ok(onSignInPage(third.body), 'the lock ended the pending sign-in: back to the password');
    const alice = await f.ctx.storage.db.selectFrom('users').select(['status', 'lock_reason', 'failed_logins']).where('id', '=', f.alice.userId).executeTakeFirstOrThrow();
    assert.deepEqual({ ...alice }, { status: 'locked', lock_reason: 'failed_logins', failed_logins: 3 });
    assert.equal((await f.auditEvents('user.locked')).length, 1);
    assert.equal((await f.auditEvents('user.factor_failed')).length, 3);

    // The lock ended the pending sign-in (even presented again): the right code leads back to the password, which fails.
    jar.set(`clearance_pending=${pendingCookie}`);
    const token = csrfToken(jar.cookies.get('clearance_csrf')!, id, 'second_factor');
    const right = await post(f, `/interaction/${id}/second-factor`, { csrf_token: token, code: await codeAt(f.alice.secret, f.clock.now()) }, jar);
    assertPage(right, 401, 'after the lock');
    assert.ok(onSignInPage(right.body));
    assert.ok(!setCookies(right).some((c) => c.startsWith('clearance_session=')));
    assert.equal((await submitPassword(f, jar, id, 'alice', password)).statusCode, 401);
  });

  test('throttles second factors with the account’s password attempts (429 and Retry-After)', async (t) => {
    const f = await fixture(t);
    f.ctx.identity.throttle = new MemoryLoginThrottle(f.clock, { perAccount: { max: 3, windowMs: 5 * 60_000 } });
    const jar = new Jar();
    const { id } = await startAuthorization(f, jar);
    await submitPassword(f, jar, id, 'alice', password);
    for (let i = 0; i < 3; i++) await submitSecondFactor(f, jar, id, { code: '00000' + i });
    const throttled = await submitSecondFactor(f, jar, id, { code: await codeAt(f.alice.secret, f.clock.now()) });
    assertPage(throttled, 429, 'throttled');
    assert.match(String(throttled.headers['retry-after']), /^\d+$/);
  });

  test('sends the person back to the password after too many wrong codes', async (t) => {
    const f = await fixture(t);
    f.ctx.identity.throttle = new MemoryLoginThrottle(f.clock, { perAccount: { max: 50, windowMs: 60_000 } });
    const jar = new Jar();
    const { id } = await startAuthorization(f, jar);
    await submitPassword(f, jar, id, 'alice', password);
    let last;
    for (let i = 0; i < 5; i++) last = await submitSecondFactor(f, jar, id, { code: '00000' + i });
    assertPage(last!, 401, 'the fifth wrong code');
    assert.ok(onSignInPage(last!.body));
    assert.match(last!.body, /Too many wrong codes. Enter your password again./);
    assert.ok(!jar.cookies.has('clearance_pending'), 'the pending cookie is cleared');
  });

  test('keeps the pending sign-in to this browser, this interaction and five minutes', async (t) => {
    const f = await fixture(t);
    const jar = new Jar();
    const { id } = await startAuthorization(f, jar);
    await submitPassword(f, jar, id, 'alice', password);
    const code = await codeAt(f.alice.secret, f.clock.now());
    const pendingCookie = jar.cookies.get('clearance_pending')!;

    // Another browser with the interaction's cookies but not this pending cookie: the password again.
    const thief = new Jar(jar.header());
    thief.set(`clearance_pending=${'A'.repeat(43)}`);
    assert.equal(locationPath(f, await get(f, `/interaction/${id}/second-factor`, thief)), `/interaction/${id}`);

    // Another interaction of the same browser: the pending sign-in is not for it.
    const other = await startAuthorization(f, jar);
    assert.equal(locationPath(f, await get(f, `/interaction/${other.id}/second-factor`, jar)), `/interaction/${other.id}`);
    const token = csrfToken(jar.cookies.get('clearance_csrf')!, other.id, 'second_factor');
    const elsewhere = await post(f, `/interaction/${other.id}/second-factor`, { csrf_token: token, code }, jar);
    assertPage(elsewhere, 401, 'another interaction');
    assert.ok(onSignInPage(elsewhere.body));
    assert.ok(!setCookies(elsewhere).some((c) => c.startsWith('clearance_session=')));

    // Its own interaction, a moment before it expires: still open; at five minutes: expired.
    jar.set(`clearance_pending=${pendingCookie}`);
    f.clock.advance(5 * 60_000 - 1000);
    assert.equal((await get(f, `/interaction/${id}/second-factor`, jar)).statusCode, 200);
    f.clock.advance(1000);
    assert.equal(locationPath(f, await get(f, `/interaction/${id}/second-factor`, jar)), `/interaction/${id}`);
    assert.deepEqual(await f.ctx.storage.db.selectFrom('sessions').select('id').execute(), []);
  });

  test('refuses a second-factor form without this browser’s CSRF token, or from another site', async (t) => {
    const f = await fixture(t);
    const jar = new Jar();
    const { id } = await startAuthorization(f, jar);
    await submitPassword(f, jar, id, 'alice', password);
    const page = await get(f, `/interaction/${id}/second-factor`, jar);
    const code = await codeAt(f.alice.secret, f.clock.now());
    assert.equal((await post(f, `/interaction/${id}/second-factor`, { code }, jar)).statusCode, 403);
    assert.equal((await post(f, `/interaction/${id}/second-factor`, { csrf_token: csrfOf(page.body), code }, jar, { origin: 'https://evil.example' })).statusCode, 403);
    assert.equal(locationPath(f, await post(f, `/interaction/${id}/second-factor`, { csrf_token: csrfOf(page.body), code }, jar)), `/interaction/${id}`, 'the same form with its token works');
  });

  test('accepts a recovery code once, at mfa without otp, audits it and tells the person on their account page', async (t) => {
    const f = await fixture(t);
    const recovery = f.alice.recoveryCodes[0]!;
    const jar = new Jar();
    const { id, verifier } = await startAuthorization(f, jar);
    await submitPassword(f, jar, id, 'alice', password);
    const signedIn = await submitSecondFactor(f, jar, id, { recovery_code: recovery });
    const { idToken, accessToken } = await approveAndRedeem(f, jar, id, verifier, signedIn);
    assert.equal(idToken.acr, 'urn:clearance:acr:mfa');
    assert.deepEqual(idToken.amr, ['pwd', 'mfa', 'urn:clearance:amr:recovery-code']);
    assert.deepEqual(accessToken.amr, ['pwd', 'mfa', 'urn:clearance:amr:recovery-code']);
    const used = (await f.auditEvents('user.factor_succeeded')).find((e) => e.details!.factor === 'recovery_code');
    assert.equal(used!.details!.remaining, 9);
    assert.ok(!(await f.auditText()).includes(recovery));

    // The account page tells the person. Whoever used the code cannot make it go away: their
    // session shows it every time; a sign-in with the authenticator shows it once.
    const notice = /A recovery code was used to sign in to your account on <time[^>]*>[^<]+<\/time> from 127\.0\.0\.1\. 9 unused recovery codes are left./;
    const account = await get(f, '/account', jar);
    assert.equal(account.statusCode, 200);
    assert.match(account.body, notice);
    assert.match((await get(f, '/account', jar)).body, notice, 'kept by the recovery-code session');
    const withApp = new Jar();
    const third = await startAuthorization(f, withApp);
    await submitPassword(f, withApp, third.id, 'alice', password);
    await submitSecondFactor(f, withApp, third.id, { code: await codeAt(f.alice.secret, f.clock.now()) });
    assert.match((await get(f, '/account', withApp)).body, notice, 'seen by a session made with the authenticator');
    assert.doesNotMatch((await get(f, '/account', withApp)).body, /A recovery code was used/);
    assert.doesNotMatch((await get(f, '/account', jar)).body, /A recovery code was used/);

    // The same code again, in a new sign-in: refused.
    const again = new Jar();
    const second = await startAuthorization(f, again);
    await submitPassword(f, again, second.id, 'alice', password);
    const reused = await submitSecondFactor(f, again, second.id, { recovery_code: recovery });
    assertPage(reused, 401, 'a used recovery code');
    assert.match(reused.body, /id="recovery_code"[^>]* aria-invalid="true"/);
    assert.deepEqual((await f.auditEvents('user.factor_failed')).at(-1)!.decision, { allow: false, reasons: ['reused'] });
  });

  test('refuses recovery codes of a person holding a privileged role, and says how they recover', async (t) => {
    const f = await fixture(t);
    // Alice got her codes, then became an approver.
    await f.apply({ users: [{ username: 'alice', password, name: 'Alice Trader', roles: ['approver'] }] });
    const jar = new Jar();
    const { id } = await startAuthorization(f, jar);
    await submitPassword(f, jar, id, 'alice', password);
    const page = await get(f, `/interaction/${id}/second-factor`, jar);
    assert.doesNotMatch(page.body, /name="recovery_code"/, 'no recovery form');
    assert.match(page.body, /Recovery codes cannot be used with your role. Access is restored only through an\nindependent approval/);
    const refused = await post(f, `/interaction/${id}/second-factor`, { csrf_token: csrfOf(page.body), recovery_code: f.alice.recoveryCodes[0]! }, jar);
    assertPage(refused, 403, 'a privileged recovery code');
    assert.ok(!setCookies(refused).some((c) => c.startsWith('clearance_session=')));
    assert.deepEqual((await f.auditEvents('user.factor_failed')).at(-1)!.decision, { allow: false, reasons: ['privileged_role'] });
    // The authenticator still works.
    assert.equal(locationPath(f, await submitSecondFactor(f, jar, id, { code: await codeAt(f.alice.secret, f.clock.now()) })), `/interaction/${id}`);
  });
});

describe('the sign-in cookies’ names on an https issuer (RFC 6265bis §4.1.3 prefixes)', () => {
  for (const [issuer, prefix, path] of [
    ['https://id.broker.example', '__Host-', '/'],
    ['https://id.broker.example/idp', '__Secure-', '/idp'],
  ] as const) {
    test(`are ${prefix}clearance_browser, ${prefix}clearance_pending and ${prefix}clearance_session with Path=${path}, Secure and no Domain at ${issuer}`, async (t) => {
      const f = await fixture(t, [], { CLEARANCE_ISSUER: issuer });
      const base = path === '/' ? '' : path;
      const line = (response: Parameters<typeof setCookies>[0], name: string) => setCookies(response).find((c) => c.startsWith(`${prefix}${name}=`));
      const shape = (name: string, sameSite: string, maxAge = '') =>
        new RegExp(`^${prefix}${name}=[A-Za-z0-9_-]{43}; Path=${path.replace(/\//g, '\\/')}; HttpOnly; SameSite=${sameSite}; Secure${maxAge}$`);
      const jar = new Jar();
      const started = await get(f, `${base}/authorize?${formBody(f.request('web-app', { code_challenge: pkce().challenge }))}`, jar);
      assert.equal(started.statusCode, 303, started.body);
      const id = /\/interaction\/([^/?]+)$/.exec(String(started.headers.location))![1]!;
      assert.match(line(started, 'clearance_browser') ?? '', shape('clearance_browser', 'Lax'));
      assert.ok(!setCookies(started).some((c) => c.startsWith('clearance_browser=')), 'no bare cookie');

      const page = await get(f, `${base}/interaction/${id}`, jar);
      assert.equal(page.statusCode, 200, page.body);
      const afterPassword = await post(f, `${base}/interaction/${id}/login`, { csrf_token: csrfOf(page.body), username: 'alice', password }, jar);
      assert.equal(afterPassword.headers.location, `${issuer}/interaction/${id}/second-factor`, afterPassword.body);
      assert.match(line(afterPassword, 'clearance_pending') ?? '', shape('clearance_pending', 'Strict', '; Max-Age=300'));

      const second = await get(f, `${base}/interaction/${id}/second-factor`, jar);
      assert.equal(second.statusCode, 200, 'the pending sign-in is read under its prefixed name');
      const signedIn = await post(f, `${base}/interaction/${id}/second-factor`, { csrf_token: csrfOf(second.body), code: await codeAt(f.alice.secret, f.clock.now()) }, jar);
      assert.equal(signedIn.headers.location, `${issuer}/interaction/${id}`, signedIn.body);
      assert.match(line(signedIn, 'clearance_session') ?? '', shape('clearance_session', 'Lax'));
      assert.equal(line(signedIn, 'clearance_pending'), `${prefix}clearance_pending=; Path=${path}; HttpOnly; SameSite=Strict; Secure; Max-Age=0`, 'cleared under its name');
      for (const response of [started, afterPassword, signedIn]) {
        for (const c of setCookies(response)) assert.doesNotMatch(c, /Domain=/i, c);
      }
      const consent = await get(f, `${base}/interaction/${id}`, jar);
      assert.equal(consent.statusCode, 200, 'the session and browser binding are read under their prefixed names');
      assert.match(consent.body, /<h1>Allow /);
    });
  }

  test('take no pending sign-in from a clearance_pending planted under the bare name at an https issuer', async (t) => {
    const f = await fixture(t, [], { CLEARANCE_ISSUER: 'https://id.broker.example' });
    const jar = new Jar();
    const { id } = await startAuthorization(f, jar);
    await submitPassword(f, jar, id, 'alice', password);
    const value = jar.cookies.get('__Host-clearance_pending');
    assert.ok(value);
    const planted = new Jar(jar.header());
    planted.cookies.delete('__Host-clearance_pending');
    planted.set(`clearance_pending=${value}`);
    assert.equal(locationPath(f, await get(f, `/interaction/${id}/second-factor`, planted)), `/interaction/${id}`, 'back to the password: the bare cookie is no pending sign-in');
    assert.equal((await get(f, `/interaction/${id}/second-factor`, jar)).statusCode, 200, 'the prefixed one is');
  });
});
