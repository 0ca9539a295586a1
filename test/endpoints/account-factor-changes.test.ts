import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { acr, amr } from '../../src/identity/acr.ts';
import { totpFactorOf } from '../../src/identity/factors/totp.ts';
import { listPasskeys } from '../../src/identity/passkeys/store.ts';
import { SoftwareAuthenticator } from '../helpers/authenticator.ts';
import { codeFlowFixture, type CodeFlowFixture, type Person } from '../authorization/fixture.ts';
import { codeAt, enrolTotp } from '../identity/factors/fixture.ts';
import { csrfOf, get, Jar, locationPath, post, startAuthorization, submitPassword, submitSecondFactor } from './people-browser.ts';

// Who may change a person's factors on /account (src/identity/factor-changes.ts): a session made
// with their strongest factor, and from a recovery-code session the authenticator only. Each
// test is what an attacker holding the password (and perhaps one recovery code) would try.

const mfa = { acr: acr.multiFactor, amr: ['pwd', 'otp', 'mfa'] };
const passkey = { acr: acr.phishingResistant, amr: ['hwk', 'user', 'mfa'] };
const recovery = { acr: acr.multiFactor, amr: ['pwd', 'mfa', amr.recoveryCode] };
const password = 'alice-correct-horse-42';

/** A browser signed in as `person`, with the account page's CSRF token. */
async function browserOf(f: CodeFlowFixture, person: Person | Jar): Promise<{ jar: Jar; token: string; page: string }> {
  const jar = person instanceof Jar ? person : new Jar(person.cookie);
  const page = await get(f, '/account', jar);
  assert.equal(page.statusCode, 200);
  return { jar, token: csrfOf(page.body), page: page.body };
}

/** The secret the setup page shows. */
function secretOf(body: string): string {
  return /<p class="secret" id="totp-secret">([A-Z2-7 ]+)<\/p>/.exec(body)![1]!.replaceAll(' ', '');
}

/** Passkey creation options fetched by a session allowed to add one. */
async function creationOptions(f: CodeFlowFixture, browser: { jar: Jar; token: string }): Promise<unknown> {
  const options = await post(f, '/account/passkeys/options', { csrf_token: browser.token }, browser.jar);
  assert.equal(options.statusCode, 200, options.body);
  return options.json();
}

/** A passkey added on /account by `browser`. */
async function addPasskey(f: CodeFlowFixture, browser: { jar: Jar; token: string }): Promise<void> {
  const credential = JSON.stringify(new SoftwareAuthenticator({ origin: f.issuer }).register((await creationOptions(f, browser)) as never));
  assert.equal(locationPath(f, await post(f, '/account/passkeys', { csrf_token: browser.token, name: 'Laptop', credential }, browser.jar)), '/account');
}

describe('enrolling an authenticator on the account page', () => {
  test('a password-only session of a person with a passkey can neither begin, read nor confirm one', async (t) => {
    const f = await codeFlowFixture(t);
    const alice = await f.signIn('alice');
    // Alice starts setting up an authenticator, then adds a passkey, from her password session.
    const own = await browserOf(f, alice);
    assert.equal(locationPath(f, await post(f, '/account/totp', { csrf_token: own.token }, own.jar)), '/account/totp');
    const secret = secretOf((await get(f, '/account/totp', own.jar)).body);
    await addPasskey(f, own);

    // Whoever has her password signs in with it alone.
    const attacker = await browserOf(f, await f.signIn('alice'));
    assert.match(attacker.page, /To set up or remove an authenticator app, sign in with one of your passkeys first./);
    assert.doesNotMatch(attacker.page, /action="\/account\/totp(\/confirm)?"/, 'no set-up form');
    const begin = await post(f, '/account/totp', { csrf_token: attacker.token }, attacker.jar);
    assert.equal(begin.statusCode, 403);
    assert.match(begin.body, /<h1>Sign in again to change your two-step sign-in<\/h1>/);
    const setup = await get(f, '/account/totp', attacker.jar);
    assert.equal(setup.statusCode, 403);
    assert.doesNotMatch(setup.body, /totp-secret/);
    const confirm = await post(f, '/account/totp/confirm', { csrf_token: attacker.token, code: await codeAt(secret, f.clock.now()) }, attacker.jar);
    assert.equal(confirm.statusCode, 403);
    assert.equal((await totpFactorOf(f.ctx, alice.userId))!.confirmedAt, null, 'still unconfirmed: no authenticator signs in');
    assert.deepEqual(await f.auditEvents('user.factor_enrolled'), []);

    // With her passkey she sets one up.
    const strong = await browserOf(f, await f.signIn('alice', passkey));
    assert.equal(locationPath(f, await post(f, '/account/totp', { csrf_token: strong.token }, strong.jar)), '/account/totp');
    const mine = secretOf((await get(f, '/account/totp', strong.jar)).body);
    const done = await post(f, '/account/totp/confirm', { csrf_token: strong.token, code: await codeAt(mine, f.clock.now()) }, strong.jar);
    assert.equal(done.statusCode, 200, done.body);
    assert.match(done.body, /<h1>Your authenticator is set up<\/h1>/);
  });

  test('only the session that began an enrolment sees its secret or confirms it', async (t) => {
    const f = await codeFlowFixture(t);
    const alice = await f.signIn('alice');
    const own = await browserOf(f, alice);
    assert.equal(locationPath(f, await post(f, '/account/totp', { csrf_token: own.token }, own.jar)), '/account/totp');
    const secret = secretOf((await get(f, '/account/totp', own.jar)).body);
    assert.match((await get(f, '/account', own.jar)).body, /You started setting one up without confirming it: <a href="\/account\/totp">continue<\/a>/);

    // Another session of hers (the same level: she has no other factor) reads nothing of it.
    const other = await browserOf(f, await f.signIn('alice'));
    assert.match(other.page, /Setting one up was started in another session and not confirmed/);
    assert.doesNotMatch(other.page, /href="\/account\/totp"/);
    const setup = await get(f, '/account/totp', other.jar);
    assert.equal(locationPath(f, setup), '/account');
    assert.ok(!setup.body.includes(secret));
    assert.equal(locationPath(f, await post(f, '/account/totp/confirm', { csrf_token: other.token, code: await codeAt(secret, f.clock.now()) }, other.jar)), '/account');
    assert.equal((await totpFactorOf(f.ctx, alice.userId))!.confirmedAt, null, 'not confirmed by another session');

    const done = await post(f, '/account/totp/confirm', { csrf_token: own.token, code: await codeAt(secret, f.clock.now()) }, own.jar);
    assert.equal(done.statusCode, 200, done.body);
    assert.notEqual((await totpFactorOf(f.ctx, alice.userId))!.confirmedAt, null);
  });
});

describe('a session made with a recovery code', () => {
  test('changes no factor — not even the authenticator — and asks for a recovery a second person approves instead', async (t) => {
    const f = await codeFlowFixture(t);
    await f.apply({ users: [{ username: 'alice', password, name: 'Alice Trader' }] });
    const enrolled = await enrolTotp(f, 'alice');
    // The real sign-in: password, then a recovery code instead of the app's code.
    const jar = new Jar();
    const { id } = await startAuthorization(f, jar);
    await submitPassword(f, jar, id, 'alice', password);
    await submitSecondFactor(f, jar, id, { recovery_code: enrolled.recoveryCodes[0]! });
    const session = await browserOf(f, jar);
    assert.match(session.page, /You signed in with a recovery code, which cannot be used to add, rename or remove passkeys: sign in with your authenticator app or a passkey first./);
    assert.match(session.page, /You signed in with a recovery code, which cannot be used to make new recovery codes/);
    assert.match(session.page, /You signed in with a recovery code, which cannot be used to set up or remove an authenticator app/);
    assert.doesNotMatch(session.page, /data-passkey="register"|action="\/account\/recovery-codes"|action="\/account\/totp\/remove"/);
    assert.match(session.page, /action="\/account\/recovery"/, 'a recovery can be asked for');

    const options = await post(f, '/account/passkeys/options', { csrf_token: session.token }, session.jar);
    assert.equal(options.statusCode, 403);
    assert.equal((options.json() as { error: string }).error, 'access_denied');
    // Options fetched by a session made with the authenticator do not help it either.
    const creation = await creationOptions(f, await browserOf(f, await f.signIn('alice', mfa)));
    const credential = JSON.stringify(new SoftwareAuthenticator({ origin: f.issuer }).register(creation as never));
    const added = await post(f, '/account/passkeys', { csrf_token: session.token, name: 'Mine', credential }, session.jar);
    assert.equal(added.statusCode, 403);
    assert.match(added.body, /<h1>Sign in again to change your passkeys<\/h1>/);
    const codes = await post(f, '/account/recovery-codes', { csrf_token: session.token }, session.jar);
    assert.equal(codes.statusCode, 403);
    assert.match(codes.body, /which cannot be used to make new recovery codes/);
    assert.deepEqual(await listPasskeys(f.ctx, enrolled.userId), []);
    assert.equal((await f.auditEvents('user.recovery_codes_generated')).length, 1, 'only the enrolment’s');

    // Issue 15: a password and a recovery code no longer replace the authenticator.
    for (const path of ['/account/totp/remove', '/account/totp', '/account/totp/confirm']) {
      const refused = await post(f, path, { csrf_token: session.token, code: '123456' }, session.jar);
      assert.equal(refused.statusCode, 403, path);
      assert.match(refused.body, /ask for a recovery below: a second person must approve it/, path);
    }
    assert.equal((await get(f, '/account/totp', session.jar)).statusCode, 403);
    assert.equal((await totpFactorOf(f.ctx, enrolled.userId))!.id, enrolled.factorId, 'the authenticator is still the person’s');
    // What it may do: ask for a recovery, which does nothing until a second person approves it.
    const asked = await post(f, '/account/recovery', { csrf_token: session.token, lost: 'authenticator' }, session.jar);
    assert.equal(asked.statusCode, 200, asked.body);
    assert.match(asked.body, /Recovery requested/);
    assert.equal((await totpFactorOf(f.ctx, enrolled.userId))!.id, enrolled.factorId);
  });

  test('of a person who has a passkey changes none of their factors', async (t) => {
    const f = await codeFlowFixture(t);
    const alice = await f.signIn('alice');
    const enrolled = await enrolTotp(f, 'alice');
    await addPasskey(f, await browserOf(f, await f.signIn('alice', mfa)));
    const [key] = await listPasskeys(f.ctx, alice.userId);
    const session = await browserOf(f, await f.signIn('alice', recovery));
    assert.match(session.page, /To set up or remove an authenticator app, sign in with one of your passkeys first./);
    assert.doesNotMatch(session.page, /action="\/account\/(totp|totp\/remove|recovery-codes|passkeys[^"]*)"/);
    for (const path of ['/account/totp/remove', '/account/totp', '/account/recovery-codes', `/account/passkeys/${key!.id}/remove`, `/account/passkeys/${key!.id}/rename`]) {
      const refused = await post(f, path, { csrf_token: session.token, name: 'Mine' }, session.jar);
      assert.equal(refused.statusCode, 403, path);
      assert.match(refused.body, /sign in with one of your passkeys first. \(Sign out, then sign in again through an application.\) Nothing was changed./, path);
    }
    assert.equal((await totpFactorOf(f.ctx, alice.userId))!.id, enrolled.factorId);
    assert.deepEqual((await listPasskeys(f.ctx, alice.userId)).map((p) => p.name), ['Laptop']);
  });
});
