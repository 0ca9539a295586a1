import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { totpFactorOf } from '../../src/identity/factors/totp.ts';
import { pageCsp } from '../../src/ui/respond.ts';
import { codeFlowFixture, type CodeFlowFixture, type Person } from '../authorization/fixture.ts';
import { codeAt, enrolTotp } from '../identity/factors/fixture.ts';
import { csrfOf, get, Jar, locationPath, post } from './people-browser.ts';

// A person manages their two-step sign-in on /account: enrols an authenticator from a QR code,
// confirms it, keeps the recovery codes shown once, removes it or makes new codes.

const mfa = { acr: 'urn:clearance:acr:mfa', amr: ['pwd', 'otp', 'mfa'] };

function assertAccountPage(response: { statusCode: number; headers: Record<string, unknown>; body: string }, status: number, csp: string, label: string): void {
  assert.equal(response.statusCode, status, `${label}: ${response.body.slice(0, 300)}`);
  assert.equal(response.headers['content-security-policy'], csp, label);
  assert.doesNotMatch(String(response.headers['content-security-policy']), /script-src|unsafe-inline|data:/);
  assert.equal(response.headers['cache-control'], 'no-store', label);
  assert.doesNotMatch(response.body, /<script|\sstyle=|\son[a-z]+=/i, `${label}: no script, no inline style or handler`);
}

/** A browser signed in as `person`, with the account page's CSRF token. */
async function signedIn(f: CodeFlowFixture, person: Person): Promise<{ jar: Jar; token: string }> {
  const jar = new Jar(person.cookie);
  const page = await get(f, '/account', jar);
  assert.equal(page.statusCode, 200);
  return { jar, token: csrfOf(page.body) };
}

describe('two-step sign-in on the account page', () => {
  test('enrols an authenticator: a QR code and the secret in text, confirmed by a first code, then the recovery codes shown once', async (t) => {
    const f = await codeFlowFixture(t);
    const alice = await f.signIn('alice');
    const { jar, token } = await signedIn(f, alice);
    const account = await get(f, '/account', jar);
    assert.match(account.body, /<h2 id="factors-heading">Two-step sign-in<\/h2>/);
    assert.match(account.body, /Only your password protects your account./);
    assert.match(account.body, /<form method="post" action="\/account\/totp">/);

    assert.equal(locationPath(f, await post(f, '/account/totp', { csrf_token: token }, jar)), '/account/totp');
    const setup = await get(f, '/account/totp', jar);
    assertAccountPage(setup, 200, pageCsp.ownForm, 'the setup page');
    assert.match(setup.body, /<svg class="qr" role="img" aria-label="QR code to add Clearance to your authenticator app" xmlns="http:\/\/www.w3.org\/2000\/svg" viewBox="0 0 \d+ \d+"/);
    const secret = /<p class="secret" id="totp-secret">([A-Z2-7 ]+)<\/p>/.exec(setup.body)![1]!.replaceAll(' ', '');
    assert.equal(secret.length, 32);
    assert.match(setup.body, /<input type="text" id="code" name="code" inputmode="numeric" autocomplete="one-time-code"/);
    assert.equal((await totpFactorOf(f.ctx, alice.userId))!.confirmedAt, null, 'not usable before it is confirmed');

    const wrong = await post(f, '/account/totp/confirm', { csrf_token: token, code: '000000' }, jar);
    assertAccountPage(wrong, 400, pageCsp.ownForm, 'a wrong first code');
    assert.match(wrong.body, /That code is not right./);
    assert.match(wrong.body, new RegExp(secret.slice(0, 4)), 'the same secret again');

    const done = await post(f, '/account/totp/confirm', { csrf_token: token, code: await codeAt(secret, f.clock.now()) }, jar);
    assertAccountPage(done, 200, pageCsp.static, 'the recovery codes');
    assert.match(done.body, /<h1>Your authenticator is set up<\/h1>/);
    assert.match(done.body, /this is the only time they are shown/);
    const codes = [...done.body.matchAll(/<li>([a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4})<\/li>/g)].map((m) => m[1]!);
    assert.equal(codes.length, 10);

    const after = await get(f, '/account', jar);
    assert.match(after.body, /<h3>Authenticator app<\/h3>/);
    assert.match(after.body, /10 of 10 unused/);
    assert.ok(!after.body.includes(secret.slice(0, 8)) && !codes.some((c) => after.body.includes(c)), 'neither the secret nor a code is shown again');
    // This password-only session is now weaker than the person's strongest factor: it changes nothing more.
    assert.match(after.body, /To set up or remove an authenticator app, sign in with your password and your authenticator app’s code first./);
    assert.equal((await get(f, '/account/totp', jar)).statusCode, 403);
    assert.equal((await post(f, '/account/totp', { csrf_token: token }, jar)).statusCode, 403);
    // From a session made with it: the setup page is gone, and a second enrolment while one is active changes nothing.
    const strong = await signedIn(f, await f.signIn('alice', mfa));
    assert.equal(locationPath(f, await get(f, '/account/totp', strong.jar)), '/account', 'the setup page is gone');
    assert.equal(locationPath(f, await post(f, '/account/totp', { csrf_token: strong.token }, strong.jar)), '/account');
    const [enrolled] = await f.auditEvents('user.factor_enrolled');
    assert.equal(enrolled!.details!.factor, 'totp');
    const text = await f.auditText();
    assert.ok(!text.includes(secret) && !codes.some((c) => text.includes(c)));
  });

  test('keeps removing the authenticator and making new codes to sessions made with a second factor', async (t) => {
    const f = await codeFlowFixture(t);
    const userId = await f.user('alice');
    const { secret } = await enrolTotp(f, 'alice');
    // A session from before the enrolment (or a stolen one) holds the password's level only.
    const weak = await signedIn(f, await f.signIn('alice'));
    const page = await get(f, '/account', weak.jar);
    assert.match(page.body, /To set up or remove an authenticator app, sign in with your password and your authenticator app’s code first./);
    assert.doesNotMatch(page.body, /action="\/account\/(totp\/remove|recovery-codes)"/);
    for (const path of ['/account/totp/remove', '/account/recovery-codes']) {
      const refused = await post(f, path, { csrf_token: weak.token }, weak.jar);
      assert.equal(refused.statusCode, 403, path);
      assert.match(refused.body, /<h1>Sign in again to change your two-step sign-in<\/h1>/);
      assert.match(refused.body, /sign in with your password and your authenticator app’s code first. \(Sign out, then sign in again through an application.\) Nothing was changed./);
    }
    assert.ok(await totpFactorOf(f.ctx, userId), 'still there');

    const strong = await signedIn(f, await f.signIn('alice', mfa));
    const again = await post(f, '/account/recovery-codes', { csrf_token: strong.token }, strong.jar);
    assertAccountPage(again, 200, pageCsp.static, 'new recovery codes');
    assert.match(again.body, /Your old recovery codes no longer work./);
    assert.equal([...again.body.matchAll(/<li>[a-z2-7-]{19}<\/li>/g)].length, 10);

    assert.equal(locationPath(f, await post(f, '/account/totp/remove', { csrf_token: strong.token }, strong.jar)), '/account');
    assert.equal(await totpFactorOf(f.ctx, userId), undefined);
    const [removed] = await f.auditEvents('user.factor_removed');
    assert.equal(removed!.details!.recovery_codes_removed, 10);
    assert.ok(!(await f.auditText()).includes(secret));
  });

  test('refuses the factor forms without a session, without the CSRF token, or from another site', async (t) => {
    const f = await codeFlowFixture(t);
    await f.user('alice');
    await enrolTotp(f, 'alice');
    const { jar, token } = await signedIn(f, await f.signIn('alice', mfa));
    for (const path of ['/account/totp', '/account/totp/confirm', '/account/totp/remove', '/account/recovery-codes']) {
      assert.equal((await post(f, path, { csrf_token: token })).statusCode, 403, `${path} without a session`);
      assert.equal((await post(f, path, {}, jar)).statusCode, 403, `${path} without a token`);
      assert.equal((await post(f, path, { csrf_token: token }, jar, { origin: 'https://evil.example' })).statusCode, 403, `${path} from another site`);
    }
    assert.ok(await totpFactorOf(f.ctx, await f.user('alice')), 'nothing changed');
    assert.equal(locationPath(f, await get(f, '/account/totp')), '/account', 'the setup page needs a session');
  });

  test('gives a person holding a privileged role no recovery codes, and says how they recover', async (t) => {
    const f = await codeFlowFixture(t);
    const carol = await f.signIn('carol');
    await f.apply({ users: [{ username: 'carol', name: 'Carol Approver', roles: ['approver', 'trader'] }] });
    const { jar, token } = await signedIn(f, carol);
    await post(f, '/account/totp', { csrf_token: token }, jar);
    const secret = /<p class="secret" id="totp-secret">([A-Z2-7 ]+)<\/p>/.exec((await get(f, '/account/totp', jar)).body)![1]!.replaceAll(' ', '');
    const done = await post(f, '/account/totp/confirm', { csrf_token: token, code: await codeAt(secret, f.clock.now()) }, jar);
    assert.equal(done.statusCode, 200);
    assert.doesNotMatch(done.body, /<li>[a-z2-7-]{19}<\/li>/);
    assert.match(done.body, /Recovery codes cannot be used with your role \(approver\)/);
    assert.match(done.body, /independent approval/);
    assert.deepEqual(await f.ctx.storage.db.selectFrom('recovery_codes').select('digest').where('user_id', '=', carol.userId).execute(), []);

    const strong = await signedIn(f, await f.signIn('carol', mfa));
    assert.match((await get(f, '/account', strong.jar)).body, /Recovery codes cannot be used with your role \(approver\)/);
    assert.equal((await post(f, '/account/recovery-codes', { csrf_token: strong.token }, strong.jar)).statusCode, 403);
  });
});
