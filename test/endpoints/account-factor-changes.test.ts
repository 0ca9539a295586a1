import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { acr, amr, type Acr } from '../../src/identity/acr.ts';
import { startSession } from '../../src/identity/sessions.ts';
import { assuranceOf } from '../../src/federation/upstream/assurance.ts';
import { totpFactorOf } from '../../src/identity/factors/totp.ts';
import { listPasskeys } from '../../src/identity/passkeys/store.ts';
import { certificateLevel } from '../../src/identity/certificates/login.ts';
import { SoftwareAuthenticator } from '../helpers/authenticator.ts';
import { codeFlowFixture, type CodeFlowFixture, type Person } from '../authorization/fixture.ts';
import { codeAt, enrolTotp } from '../identity/factors/fixture.ts';
import { assertOAuthError, ordersApi } from './fixture.ts';
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

/** A browser whose session an upstream identity provider made, at the level its declaration trusts (src/federation/upstream/assurance.ts). */
async function upstreamBrowser(f: CodeFlowFixture, username: string, trustedUpTo: Acr): Promise<{ jar: Jar; token: string; page: string }> {
  const provider = { id: 'fund-a', issuer: 'https://idp.fund-a.example', acr: { map: { 'urn:fund-a:strong': trustedUpTo }, max: trustedUpTo } };
  const assurance = assuranceOf(provider, { acr: 'urn:fund-a:strong', amr: ['hwk', 'user', 'otp', 'mfa'] });
  const started = await startSession(f.ctx, {
    userId: await f.user(username),
    acr: assurance.acr,
    amr: assurance.amr,
    cookieHeader: undefined,
    assurance: { provider: assurance.provider, source: assurance.source },
  });
  return browserOf(f, new Jar(started.setCookie.split(';')[0]!));
}

describe('a session made through the person’s organisation (an upstream identity provider)', () => {
  test('changes none of the factors of a person who has their own, whatever level the upstream is trusted for', async (t) => {
    const f = await codeFlowFixture(t);
    await f.user('alice');
    const enrolled = await enrolTotp(f, 'alice');
    // The upstream is trusted for phishing-resistant MFA, above alice's strongest factor (her
    // authenticator): it is still not her authenticator, and it is no step-up (docs/identity-brokering.md).
    const session = await upstreamBrowser(f, 'alice', acr.phishingResistant);
    assert.match(session.page, /You signed in through your organisation/);
    assert.doesNotMatch(session.page, /data-passkey="register"|action="\/account\/recovery-codes"|action="\/account\/totp\/remove"/);
    // A passkey made with options a session of hers fetched does not get added through it either.
    const creation = await creationOptions(f, await browserOf(f, await f.signIn('alice', mfa)));
    const credential = JSON.stringify(new SoftwareAuthenticator({ origin: f.issuer }).register(creation as never));
    const options = await post(f, '/account/passkeys/options', { csrf_token: session.token }, session.jar);
    assert.equal(options.statusCode, 403);
    for (const [path, form] of [
      ['/account/passkeys', { name: 'Mine', credential }],
      ['/account/totp/remove', {}],
      ['/account/recovery-codes', {}],
    ] as const) {
      const refused = await post(f, path, { csrf_token: session.token, ...form }, session.jar);
      assert.equal(refused.statusCode, 403, path);
      assert.match(refused.body, /Nothing was changed./, path);
    }
    assert.deepEqual(await listPasskeys(f.ctx, enrolled.userId), []);
    assert.equal((await totpFactorOf(f.ctx, enrolled.userId))!.id, enrolled.factorId);
    assert.equal((await f.auditEvents('user.recovery_codes_generated')).length, 1, 'only the enrolment’s');
  });

  test('adds the first factor of a person who has none, as any sign-in of theirs may', async (t) => {
    const f = await codeFlowFixture(t);
    const session = await upstreamBrowser(f, 'alice', acr.password);
    await addPasskey(f, session);
    assert.equal((await listPasskeys(f.ctx, await f.user('alice'))).length, 1);
  });
});

describe('adding a factor on the account page', () => {
  test('raises a factor.added alert for a passkey and for an authenticator, with what was added and never a secret', async (t) => {
    const f = await codeFlowFixture(t);
    const userId = await f.user('alice');
    const own = await browserOf(f, await f.signIn('alice'));
    await addPasskey(f, own);
    const strong = await browserOf(f, await f.signIn('alice', passkey));
    assert.equal(locationPath(f, await post(f, '/account/totp', { csrf_token: strong.token }, strong.jar)), '/account/totp');
    const secret = secretOf((await get(f, '/account/totp', strong.jar)).body);
    const done = await post(f, '/account/totp/confirm', { csrf_token: strong.token, code: await codeAt(secret, f.clock.now()) }, strong.jar);
    assert.equal(done.statusCode, 200, done.body);

    const alerts = await f.ctx.storage.db.selectFrom('alerts').selectAll().where('type', '=', 'factor.added').orderBy('created_at').execute();
    const [key] = await listPasskeys(f.ctx, userId);
    const totp = (await totpFactorOf(f.ctx, userId))!;
    assert.deepEqual(
      alerts.map((a) => [a.subject, JSON.parse(a.data)]),
      [
        [userId, { factor: 'passkey', credential: key!.credentialId, passkey: key!.id, name: 'Laptop', user: userId, source_address: '127.0.0.1' }],
        [userId, { factor: 'totp', credential: totp.id, user: userId, source_address: '127.0.0.1' }],
      ],
    );
    assert.ok(!alerts.some((a) => a.data.includes(secret)));
  });
});

describe('removing a factor on the account page', () => {
  const tom = { username: 'tom', password: 'tom-correct-horse-1', roles: ['trader'] };

  test('refuses to remove the authenticator that is the only factor meeting the person’s role minimum', async (t) => {
    const f = await codeFlowFixture(t);
    // Made first, then given the role: the fixture's sign-ins reuse the person as apply leaves them.
    await f.user('tom');
    await f.apply({ authentication: { role_minimums: { trader: acr.multiFactor } }, users: [tom] });
    const enrolled = await enrolTotp(f, 'tom');
    const session = await browserOf(f, await f.signIn('tom', mfa));
    const refused = await post(f, '/account/totp/remove', { csrf_token: session.token }, session.jar);
    assert.equal(refused.statusCode, 409, refused.body);
    assert.match(refused.body, /Your role needs more than a password, and your authenticator app is the strongest way you have to sign in, so it cannot be removed. Add a passkey first/);
    assert.equal((await totpFactorOf(f.ctx, enrolled.userId))!.id, enrolled.factorId, 'still there');
    const [event] = await f.auditEvents('user.factor_removal_refused');
    assert.deepEqual(event!.details, { factor: 'totp', credential: enrolled.factorId, required_acr: acr.multiFactor, source_address: '127.0.0.1' });
    assert.deepEqual(await f.ctx.storage.db.selectFrom('alerts').select('type').where('type', '=', 'factor.removed').execute(), []);

    // With a passkey added first, the authenticator goes: the passkey meets the minimum.
    await addPasskey(f, session);
    const withKey = await browserOf(f, await f.signIn('tom', passkey));
    assert.equal(locationPath(f, await post(f, '/account/totp/remove', { csrf_token: withKey.token }, withKey.jar)), '/account');
    assert.equal(await totpFactorOf(f.ctx, enrolled.userId), undefined);
  });

  test('refuses to remove the passkey that is the only factor meeting a two-step role minimum', async (t) => {
    const f = await codeFlowFixture(t);
    // Made first, then given the role: the fixture's sign-ins reuse the person as apply leaves them.
    await f.user('tom');
    await f.apply({ authentication: { role_minimums: { trader: acr.multiFactor } }, users: [tom] });
    const userId = await f.user('tom');
    await addPasskey(f, await browserOf(f, await f.signIn('tom')));
    const [key] = await listPasskeys(f.ctx, userId);
    const session = await browserOf(f, await f.signIn('tom', passkey));
    const refused = await post(f, `/account/passkeys/${key!.id}/remove`, { csrf_token: session.token }, session.jar);
    assert.equal(refused.statusCode, 409, refused.body);
    assert.equal((await listPasskeys(f.ctx, userId)).length, 1, 'still there');
    assert.deepEqual((await f.auditEvents('passkey.removal_refused')).map((e) => e.details!.required_acr), [acr.multiFactor]);
  });
});

describe('a session whose sign-in is not fresh', () => {
  test('changes no factor once its sign-in is more than 15 minutes old, however strong, and says to sign in again', async (t) => {
    const f = await codeFlowFixture(t);
    const userId = await f.user('alice');
    await addPasskey(f, await browserOf(f, await f.signIn('alice')));
    const [key] = await listPasskeys(f.ctx, userId);
    const strong = await browserOf(f, await f.signIn('alice', passkey));
    // Still a live session (used within its idle timeout), but its passkey sign-in is 16 minutes
    // old: a cookie taken from the browser meanwhile must not add a passkey that outlives it.
    f.clock.advance(16 * 60_000);
    const page = (await get(f, '/account', strong.jar)).body;
    assert.match(page, /Your sign-in is more than 15 minutes old. To add, rename or remove passkeys, sign in with one of your passkeys first./);
    assert.doesNotMatch(page, /data-passkey="register"|action="\/account\/totp"/);
    const options = await post(f, '/account/passkeys/options', { csrf_token: strong.token }, strong.jar);
    assert.equal(options.statusCode, 403);
    for (const path of [`/account/passkeys/${key!.id}/remove`, '/account/totp']) {
      const refused = await post(f, path, { csrf_token: strong.token }, strong.jar);
      assert.equal(refused.statusCode, 403, path);
      assert.match(refused.body, /Your sign-in is more than 15 minutes old/, path);
    }
    assert.equal((await listPasskeys(f.ctx, userId)).length, 1);
    assert.equal(await totpFactorOf(f.ctx, userId), undefined);

    // A new sign-in with the passkey may.
    const fresh = await browserOf(f, await f.signIn('alice', passkey));
    assert.equal(locationPath(f, await post(f, '/account/totp', { csrf_token: fresh.token }, fresh.jar)), '/account/totp');
  });
});

/** What a browser holds after signing in to web-app on `person`'s session: a refresh token and an Order API access token. */
async function tokensOn(f: CodeFlowFixture, person: Person): Promise<{ refresh: string; access: string }> {
  const { code, pkce } = await f.authorizeAndApprove({ person, query: { scope: 'openid offline_access order:create', resource: ordersApi } });
  const redeemed = await f.redeem('web-app', code, pkce.verifier);
  assert.equal(redeemed.statusCode, 200, redeemed.body);
  const body = redeemed.json() as { access_token: string; refresh_token: string };
  return { refresh: body.refresh_token, access: body.access_token };
}

/** The live sessions of a person. */
async function liveSessions(f: CodeFlowFixture, userId: string): Promise<number> {
  return (await f.ctx.storage.db.selectFrom('sessions').select('id').where('user_id', '=', userId).where('ended_at', 'is', null).execute()).length;
}

describe('removing a factor signs the person out everywhere else', () => {
  test('removing a passkey ends the other sessions, their refresh and access tokens, and the remover’s session continues', async (t) => {
    const f = await codeFlowFixture(t);
    const userId = await f.user('alice');
    // Two passkeys: the one on the phone she lost, and her laptop's.
    await addPasskey(f, await browserOf(f, await f.signIn('alice')));
    await addPasskey(f, await browserOf(f, await f.signIn('alice', passkey)));
    const [lost] = await listPasskeys(f.ctx, userId);
    // Whoever has the phone signed in with it (another browser) and into an application.
    const thief = await f.signIn('alice', passkey);
    const held = await tokensOn(f, thief);
    const remover = await browserOf(f, await f.signIn('alice', passkey));
    const removersOldCookie = remover.jar.header();
    const others = (await liveSessions(f, userId)) - 1;

    const removed = await post(f, `/account/passkeys/${lost!.id}/remove`, { csrf_token: remover.token }, remover.jar);
    assert.equal(locationPath(f, removed), '/account');

    // The thief's browser is signed out, its refresh token answers invalid_grant, its access token is inactive.
    assert.match((await get(f, '/account', new Jar(thief.cookie))).body, /You are not signed in to Clearance in this browser./);
    assertOAuthError(await f.refresh('web-app', held.refresh, { resource: ordersApi }), 400, 'invalid_grant');
    assert.equal((await f.introspect('orders-gateway', held.access)).active, false);
    // The remover's session goes on, as fresh as it was: it may still change her factors.
    const after = await get(f, '/account', remover.jar);
    assert.equal(after.statusCode, 200);
    assert.doesNotMatch(after.body, /You are not signed in/);
    assert.match(after.body, /data-passkey="register"/, 'still allowed to add a passkey');
    assert.equal(await liveSessions(f, userId), 1, 'only the remover’s');
    assert.notEqual(remover.jar.header(), removersOldCookie, 'under a new cookie');
    assert.match((await get(f, '/account', new Jar(removersOldCookie))).body, /You are not signed in/, 'a copy of the old cookie is worthless');
    assert.equal((await listPasskeys(f.ctx, userId)).length, 1);

    const [event] = await f.auditEvents('passkey.removed');
    assert.deepEqual(event!.details, { credential: lost!.credentialId, passkey: lost!.id, sessions_ended: others, refresh_tokens_revoked: 1, codes_discarded: 0, session_continued: true });
    const [signedOut] = await f.auditEvents('user.signed_out_everywhere');
    assert.equal(signedOut!.subject, userId);
    assert.equal(signedOut!.details!.via, 'factor-removed');
  });

  test('removing the authenticator ends the other sessions too', async (t) => {
    const f = await codeFlowFixture(t);
    await f.apply({ users: [{ username: 'alice', password, name: 'Alice Trader' }] });
    const enrolled = await enrolTotp(f, 'alice');
    const other = new Jar((await f.signIn('alice', mfa)).cookie);
    const remover = await browserOf(f, await f.signIn('alice', mfa));
    assert.equal(locationPath(f, await post(f, '/account/totp/remove', { csrf_token: remover.token }, remover.jar)), '/account');
    assert.match((await get(f, '/account', other)).body, /You are not signed in to Clearance in this browser./);
    assert.doesNotMatch((await get(f, '/account', remover.jar)).body, /You are not signed in/);
    assert.equal(await liveSessions(f, enrolled.userId), 1);
    const [event] = await f.auditEvents('user.factor_removed');
    assert.equal(event!.details!.sessions_ended, 1);
    assert.equal(event!.details!.session_continued, true);
  });
});

describe('removing the last way to sign in', () => {
  test('refuses to remove the last passkey of a person who has no password, and changes nothing', async (t) => {
    const f = await codeFlowFixture(t);
    // The fixture's people have no password: a passkey is then the only way alice signs in.
    const userId = await f.user('alice');
    await addPasskey(f, await browserOf(f, await f.signIn('alice')));
    const [key] = await listPasskeys(f.ctx, userId);
    const other = new Jar((await f.signIn('alice', passkey)).cookie);
    const session = await browserOf(f, await f.signIn('alice', passkey));
    const refused = await post(f, `/account/passkeys/${key!.id}/remove`, { csrf_token: session.token }, session.jar);
    assert.equal(refused.statusCode, 409, refused.body);
    assert.match(refused.body, /This passkey is the only way you have to sign in/);
    assert.equal((await listPasskeys(f.ctx, userId)).length, 1, 'still there');
    const [event] = await f.auditEvents('passkey.removal_refused');
    assert.deepEqual(event!.decision, { allow: false, reasons: ['last_sign_in_factor'] });
    assert.deepEqual(event!.details, { credential: key!.credentialId, passkey: key!.id });
    assert.doesNotMatch((await get(f, '/account', other)).body, /You are not signed in/, 'nothing ended');
    assert.deepEqual(await f.ctx.storage.db.selectFrom('alerts').select('type').where('type', '=', 'factor.removed').execute(), []);

    // With a second passkey added first, the first one goes.
    await addPasskey(f, session);
    const again = await browserOf(f, await f.signIn('alice', passkey));
    assert.equal(locationPath(f, await post(f, `/account/passkeys/${key!.id}/remove`, { csrf_token: again.token }, again.jar)), '/account');
  });

  test('removes the last passkey of a person who signs in through their organisation, while its provider is enabled', async (t) => {
    const f = await codeFlowFixture(t);
    const userId = await f.user('alice');
    const now = f.clock.now();
    await f.ctx.storage.db.insertInto('identity_providers').values({ id: 'fund-a', kind: 'oidc', definition: '{}', secret_sealed: null, enabled: 0, created_at: now, updated_at: now }).execute();
    await f.ctx.storage.db
      .insertInto('user_links')
      .values({ issuer: 'https://idp.fund-a.example', subject: 'alice-at-fund-a', user_id: userId, provider_id: 'fund-a', linked_by: 'admin', created_at: now, last_login_at: null })
      .execute();
    await addPasskey(f, await browserOf(f, await f.signIn('alice')));
    const [key] = await listPasskeys(f.ctx, userId);
    const session = await browserOf(f, await f.signIn('alice', passkey));
    // A provider apply disabled signs nobody in: the passkey is then her only way.
    assert.equal((await post(f, `/account/passkeys/${key!.id}/remove`, { csrf_token: session.token }, session.jar)).statusCode, 409);
    await f.ctx.storage.db.updateTable('identity_providers').set({ enabled: 1 }).where('id', '=', 'fund-a').execute();
    assert.equal(locationPath(f, await post(f, `/account/passkeys/${key!.id}/remove`, { csrf_token: session.token }, session.jar)), '/account');
    assert.deepEqual(await listPasskeys(f.ctx, userId), []);
  });
});

describe('a session made with a smart card', () => {
  /** A browser whose session a smart card made (src/identity/certificates/login.ts certificateLevel: `:phrh`, amr sc, hwk, pin, mfa). */
  async function smartCardBrowser(f: CodeFlowFixture, username: string): Promise<{ jar: Jar; token: string; page: string }> {
    return browserOf(f, await f.signIn(username, certificateLevel(true)));
  }

  test('changes none of the factors of a person who has their own, though it reaches the level of their strongest', async (t) => {
    const f = await codeFlowFixture(t);
    const userId = await f.user('alice');
    await addPasskey(f, await browserOf(f, await f.signIn('alice')));
    const [key] = await listPasskeys(f.ctx, userId);
    const card = await smartCardBrowser(f, 'alice');
    assert.match(card.page, /You signed in with a smart card, which cannot be used to add, rename or remove passkeys: sign in with one of your passkeys first./);
    assert.doesNotMatch(card.page, /data-passkey="register"|action="\/account\/totp"/);
    assert.equal((await post(f, '/account/passkeys/options', { csrf_token: card.token }, card.jar)).statusCode, 403);
    for (const path of [`/account/passkeys/${key!.id}/remove`, `/account/passkeys/${key!.id}/rename`, '/account/totp']) {
      const refused = await post(f, path, { csrf_token: card.token, name: 'Mine' }, card.jar);
      assert.equal(refused.statusCode, 403, path);
      assert.match(refused.body, /You signed in with a smart card/, path);
    }
    assert.deepEqual((await listPasskeys(f.ctx, userId)).map((p) => p.name), ['Laptop']);
    assert.equal(await totpFactorOf(f.ctx, userId), undefined);
  });

  test('adds the first factor of a person who has none, as any sign-in of theirs may', async (t) => {
    const f = await codeFlowFixture(t);
    await addPasskey(f, await smartCardBrowser(f, 'alice'));
    assert.equal((await listPasskeys(f.ctx, await f.user('alice'))).length, 1);
  });

  test('shows the person’s notices and keeps them: only their own authenticator or passkey marks them seen', async (t) => {
    const f = await codeFlowFixture(t);
    const userId = await f.user('alice');
    await f.ctx.storage.db.insertInto('account_notices').values({ id: 'n-1', user_id: userId, kind: 'recovery_code_used', details: JSON.stringify({ source_address: '203.0.113.9', remaining: 9 }), created_at: f.clock.now(), seen_at: null }).execute();
    const notice = /A recovery code was used to sign in to your account on .*? from 203\.0\.113\.9/;
    assert.match((await smartCardBrowser(f, 'alice')).page, notice);
    assert.match((await smartCardBrowser(f, 'alice')).page, notice, 'still there at the next visit with the card');
    assert.match((await browserOf(f, await f.signIn('alice', passkey))).page, notice);
    assert.doesNotMatch((await browserOf(f, await f.signIn('alice', passkey))).page, notice, 'seen once her passkey’s session showed it');
  });
});
