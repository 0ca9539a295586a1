import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import type { StoredAuditEvent } from '../../src/audit/events.ts';
import { acr } from '../../src/identity/acr.ts';
import { deviceCookieName } from '../../src/identity/device-cookie.ts';
import { authenticationOptions } from '../../src/identity/passkeys/options.ts';
import { registerPasskey, registrationOptions } from '../../src/identity/passkeys/registration.ts';
import { readSession } from '../../src/identity/sessions.ts';
import { findUserByUsername } from '../../src/identity/users.ts';
import { SoftwareAuthenticator } from '../helpers/authenticator.ts';
import { testDialects, type TestDialect } from '../helpers/storage.ts';
import { codeFlowFixture, pkce, type CodeFlowFixture } from '../authorization/fixture.ts';
import { codeAt, enrolTotp, type Enrolled } from '../identity/factors/fixture.ts';
import { nextUtc, tokyoDesk, useRiskSettings } from '../risk/fixture.ts';
import { csrfOf, get, Jar, locationPath, post, setCookies } from './people-browser.ts';
import { decryptEventsUnaudited } from '../../src/audit/subject-keys.ts';
import { resolveMasterKey } from '../../src/keys/master-key.ts';

// The sign-in's risk through the real pages of an authorization request (issue 16, "Done when"):
// a sign-in from a new device at 03:00 at the person's desk after failed attempts is refused or
// stepped up as the settings say, and its audit event shows why; the same person from their known
// device and network in trading hours signs in with a low score; the signals of the sign-in go with
// the grant into the code's and the refresh token's issuance. A person's first sign-in sets the
// baseline of their devices and networks (docs/risk.md "Signals"), so each risky sign-in here comes
// after a usual one.

const home = '192.0.2.10'; // the network people sign in from
const homeAgain = '192.0.2.77'; // another host of that network
const elsewhere = '203.0.113.66'; // a network nobody signed in from

const passwords = { nina: 'nina-staple-horse-93', tess: 'tess-battery-fog-58', pia: 'pia-lantern-moss-27' };

interface Fixture extends CodeFlowFixture {
  tess: Enrolled;
  pia: SoftwareAuthenticator;
  /** Wednesday 03:00 at the tokyo-fx desk (Tuesday 18:00 UTC): off hours there. */
  wednesday0300Tokyo: number;
  /** Wednesday 17:00 at the desk (08:00 UTC): in hours there and in UTC. */
  wednesdayInHours: number;
}

/**
 * People at the Tokyo desk: nina (a password only), tess (a password and an authenticator), pia
 * (a password and a passkey); the risk engine on with its default settings; a Tuesday, 17:00 in
 * Tokyo (08:00 UTC). The server takes the source address from X-Forwarded-For (a trusted proxy on
 * loopback).
 */
async function fixture(t: TestContext, dialect: TestDialect, env: Record<string, string> = {}): Promise<Fixture> {
  const f = await codeFlowFixture(t, { env: { CLEARANCE_TRUSTED_PROXIES: '127.0.0.1', ...env }, dialect });
  const tuesday = nextUtc(f.clock.now(), 2, 8);
  f.clock.set(tuesday);
  useRiskSettings(f.ctx);
  await f.apply(tokyoDesk);
  await f.apply({ users: Object.entries(passwords).map(([username, password]) => ({ username, password, desks: ['tokyo-fx'] })) });
  const tess = await enrolTotp(f, 'tess');
  const pia = new SoftwareAuthenticator({ origin: f.issuer });
  const person = (await findUserByUsername(f.ctx, 'pia'))!;
  const options = await registrationOptions(f.ctx, person, 'enrolling');
  const registered = await registerPasskey(f.ctx, { person, name: 'Laptop', credential: JSON.stringify(pia.register(options)), binding: 'enrolling', sourceAddress: home });
  assert.ok(registered.ok);
  return Object.assign(f, { tess, pia, wednesday0300Tokyo: tuesday + 10 * 3600_000, wednesdayInHours: tuesday + 24 * 3600_000 });
}

/** A browser at an address: its cookies, and the sign-in pages of one authorization request. */
class Browser {
  readonly jar = new Jar();
  readonly f: Fixture;
  address: string;
  constructor(f: Fixture, address: string) {
    this.f = f;
    this.address = address;
  }
  get = (url: string) => get(this.f, url, this.jar);
  post = (url: string, form: Record<string, string>) => post(this.f, url, form, this.jar, { 'x-forwarded-for': this.address });
  /** /authorize for web-app, up to the sign-in page: the interaction and the PKCE verifier. */
  async start(): Promise<{ id: string; verifier: string }> {
    const challenge = pkce();
    // prompt=login: a browser signed in before signs in again (the sign-in is what is assessed).
    const query = this.f.request('web-app', { code_challenge: challenge.challenge, scope: 'openid offline_access order:create', prompt: 'login' });
    const response = await this.get(`/authorize?${new URLSearchParams(query as Record<string, string>)}`);
    const id = /^\/interaction\/([^/?]+)$/.exec(locationPath(this.f, response))![1]!;
    return { id, verifier: challenge.verifier };
  }
  /** The password step of interaction `id`. */
  async password(id: string, username: string, password: string): Promise<LightMyRequestResponse> {
    const page = await this.get(`/interaction/${id}`);
    assert.equal(page.statusCode, 200, page.body);
    return this.post(`/interaction/${id}/login`, { csrf_token: csrfOf(page.body), username, password });
  }
  /** The passkey sign-in of interaction `id`, as the sign-in page's script does it. */
  async passkey(id: string, authenticator: SoftwareAuthenticator): Promise<LightMyRequestResponse> {
    const page = await this.get(`/interaction/${id}`);
    const options = await authenticationOptions(this.f.ctx, { binding: id });
    return this.post(`/interaction/${id}/passkey`, { csrf_token: csrfOf(page.body), credential: JSON.stringify(authenticator.assert(options)) });
  }
  /** The second-factor page of interaction `id`, answered with the authenticator's current code. */
  async code(id: string, enrolled: Enrolled): Promise<LightMyRequestResponse> {
    const page = await this.get(`/interaction/${id}/second-factor`);
    assert.equal(page.statusCode, 200, page.body);
    return this.post(`/interaction/${id}/second-factor`, { csrf_token: csrfOf(page.body), code: await codeAt(enrolled.secret, this.f.clock.now()) });
  }
  /** A whole password sign-in; its response. */
  async signIn(username: keyof typeof passwords): Promise<LightMyRequestResponse> {
    const { id } = await this.start();
    return this.password(id, username, passwords[username]);
  }
}

/** The error message the sign-in page shows. */
function pageError(response: LightMyRequestResponse): string | undefined {
  return /<div id="form-error" class="error" role="alert">([^<]*)</.exec(response.body)?.[1];
}

async function events(f: Fixture, type: string): Promise<StoredAuditEvent[]> {
  const rows = await f.ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', type).orderBy('seq').execute();
  // Personal fields are stored encrypted (docs/privacy.md): read through the decrypting reader.
  return decryptEventsUnaudited(f.ctx.storage.db, resolveMasterKey(f.ctx.config).key, rows.map((row) => JSON.parse(row.event) as StoredAuditEvent));
}

async function lastEvent(f: Fixture, type: string): Promise<StoredAuditEvent> {
  const all = await events(f, type);
  assert.ok(all.length > 0, `a ${type} event`);
  return all.at(-1)!;
}

type RiskDetail = { score: number; level: string; outcome: string; signals: { signal: string; points: number; detail?: string }[] };
const riskOf = (event: StoredAuditEvent) => event.details!.risk as RiskDetail;
const names = (risk: RiskDetail) => risk.signals.map((s) => s.signal);

async function riskAlerts(f: Fixture) {
  const rows = await f.ctx.storage.db.selectFrom('alerts').selectAll().where('type', '=', 'risk.denied').orderBy('created_at').execute();
  return rows.map((row) => ({ subject: row.subject, data: JSON.parse(row.data) as Record<string, unknown> }));
}

const signedInCookies = (response: LightMyRequestResponse) => setCookies(response).map((c) => c.slice(0, c.indexOf('=')));

/** Three wrong passwords for `username` from a fresh browser at `address`: what an attacker guessing it leaves. */
async function failedAttempts(f: Fixture, username: string, address: string): Promise<LightMyRequestResponse> {
  const browser = new Browser(f, address);
  const { id } = await browser.start();
  let response: LightMyRequestResponse | undefined;
  for (let i = 0; i < 3; i++) response = await browser.password(id, username, `wrong-guess-${i}-xyzzy`);
  assert.equal(response!.statusCode, 401);
  return response!;
}

/** Pia, who has a passkey and no authenticator app, signing in at 3 a.m. Tokyo from another browser after failed attempts elsewhere. */
async function piaAt3amAfterFailures(t: TestContext, dialect: TestDialect) {
  const f = await fixture(t, dialect);
  assert.equal((await new Browser(f, home).signIn('pia')).statusCode, 303, 'in hours, the password alone');
  f.clock.set(f.wednesday0300Tokyo);
  await failedAttempts(f, 'pia', elsewhere);
  const browser = new Browser(f, homeAgain);
  const { id } = await browser.start();
  return { f, browser, id };
}

for (const dialect of testDialects()) {
  describe(`the sign-in's risk on ${dialect.name}`, () => {
    test('a sign-in from a new device at 03:00 at the desk, from a new network, after failed attempts is refused with the wrong password’s message; the audit event and an alert say why', async (t) => {
      const f = await fixture(t, dialect);
      // Nina's usual sign-in: her browser, her network, in trading hours. Her first: it sets the
      // baseline of her devices and networks, and scores nothing.
      const usual = new Browser(f, home);
      const first = await usual.signIn('nina');
      assert.equal(first.statusCode, 303, first.body);
      assert.deepEqual(riskOf(await lastEvent(f, 'user.login_succeeded')), { score: 0, level: 'low', outcome: 'allow', signals: [] });
      assert.ok(signedInCookies(first).includes(deviceCookieName), 'her browser gets its device cookie');

      f.clock.set(f.wednesday0300Tokyo);
      const wrong = await failedAttempts(f, 'nina', elsewhere);
      const attacker = new Browser(f, elsewhere);
      const { id } = await attacker.start();
      const refused = await attacker.password(id, 'nina', passwords.nina);
      assert.equal(refused.statusCode, 401);
      assert.equal(pageError(refused), pageError(wrong), 'the same message as a wrong password: which signal fired is not told');
      assert.match(pageError(refused) ?? '', /username or password is not correct/);
      assert.deepEqual(signedInCookies(refused).filter((c) => c === 'clearance_session' || c === deviceCookieName), [], 'no session, no device cookie');
      assert.equal(await readSession(f.ctx, attacker.jar.header()), undefined);

      const failed = await lastEvent(f, 'user.login_failed');
      assert.deepEqual(failed.decision, { allow: false, reasons: ['risk_denied'] });
      assert.equal(failed.details!.source_address, elsewhere);
      const risk = riskOf(failed);
      assert.equal(risk.score, 80);
      assert.equal(risk.level, 'high');
      assert.equal(risk.outcome, 'deny');
      assert.deepEqual(names(risk), ['new_device', 'new_network', 'recent_failures', 'off_hours']);
      assert.equal(hitOf(risk, 'new_device'), 'no valid device cookie', 'another browser than hers');
      assert.equal(hitOf(risk, 'new_network'), 'network 203.0.113.0/24 never seen');
      assert.equal(risk.signals.find((s) => s.signal === 'off_hours')!.detail, '03:00 on ISO weekday 3 at desk tokyo-fx');
      assert.equal(risk.signals.find((s) => s.signal === 'recent_failures')!.detail, '3 failed sign-ins, the latest 0 s ago');

      const denied = await lastEvent(f, 'risk.denied');
      assert.equal(denied.subject, failed.subject);
      assert.deepEqual(denied.decision!.reasons, ['risk_denied', 'new_device', 'new_network', 'recent_failures', 'off_hours']);
      assert.deepEqual(await riskAlerts(f), [
        {
          subject: failed.subject!,
          data: { moment: 'login', reason: 'risk_denied', method: 'password', score: 80, level: 'high', outcome: 'deny', signals: ['new_device', 'new_network', 'recent_failures', 'off_hours'], source_address: elsewhere, client: 'web-app' },
        },
      ]);

      // The same person from their known device and network, in trading hours: a low score, signed in.
      f.clock.set(f.wednesdayInHours);
      usual.address = homeAgain;
      const again = await usual.signIn('nina');
      assert.equal(again.statusCode, 303, again.body);
      assert.ok(!signedInCookies(again).includes(deviceCookieName), 'the browser keeps its device cookie');
      // The attacker's failures are hours old: nothing fires.
      assert.deepEqual(riskOf(await lastEvent(f, 'user.login_succeeded')), { score: 0, level: 'low', outcome: 'allow', signals: [] });
    });

    test('steps up when the settings say so: from the usual network, the same sign-in asks a person with an authenticator for its code, and records the step-up', async (t) => {
      const f = await fixture(t, dialect);
      const usual = new Browser(f, home);
      const { id: first } = await usual.start();
      assert.equal(locationPath(f, await usual.password(first, 'tess', passwords.tess)), `/interaction/${first}/second-factor`);
      assert.equal((await usual.code(first, f.tess)).statusCode, 303);

      f.clock.set(f.wednesday0300Tokyo);
      await failedAttempts(f, 'tess', elsewhere);
      const other = new Browser(f, homeAgain);
      const { id } = await other.start();
      const password = await other.password(id, 'tess', passwords.tess);
      assert.equal(locationPath(f, password), `/interaction/${id}/second-factor`, 'the password alone signs nobody in');
      assert.ok(!signedInCookies(password).includes('clearance_session'));
      const stepped = riskOf(await lastEvent(f, 'user.factor_succeeded'));
      assert.equal(stepped.outcome, 'step_up');
      assert.deepEqual(names(stepped), ['new_device', 'recent_failures', 'off_hours'], 'a known network');

      const signedIn = await other.code(id, f.tess);
      assert.equal(signedIn.statusCode, 303, signedIn.body);
      assert.ok(signedInCookies(signedIn).includes(deviceCookieName), 'the new browser gets its device cookie');
      const succeeded = await lastEvent(f, 'user.login_succeeded');
      assert.deepEqual(riskOf(succeeded), stepped, 'the assessment of the password step, completed by the code');
      assert.equal(succeeded.details!.acr, acr.multiFactor);
      assert.equal((await readSession(f.ctx, other.jar.header()))?.acr, acr.multiFactor);
      assert.deepEqual(await riskAlerts(f), []);
    });

    test('refuses a step-up to a person with no second factor, with the wrong password’s message, and alerts', async (t) => {
      const f = await fixture(t, dialect);
      assert.equal((await new Browser(f, home).signIn('nina')).statusCode, 303);
      f.clock.set(f.wednesday0300Tokyo);
      const wrong = await failedAttempts(f, 'nina', elsewhere);
      const refused = await new Browser(f, homeAgain).signIn('nina');
      assert.equal(refused.statusCode, 401);
      assert.equal(pageError(refused), pageError(wrong));
      const failed = await lastEvent(f, 'user.login_failed');
      assert.deepEqual(failed.decision, { allow: false, reasons: ['risk_step_up_unavailable'] });
      assert.equal(riskOf(failed).outcome, 'step_up');
      assert.equal(riskOf(failed).score, 65);
      const [alert] = await riskAlerts(f);
      assert.equal(alert!.data.reason, 'risk_step_up_unavailable');
      assert.deepEqual(alert!.data.signals, ['new_device', 'recent_failures', 'off_hours']);
    });

    test('asks a person with a passkey but no authenticator to use the passkey, which meets the step-up', async (t) => {
      const { f, browser, id } = await piaAt3amAfterFailures(t, dialect);
      const password = await browser.password(id, 'pia', passwords.pia);
      assert.equal(password.statusCode, 401);
      assert.equal(pageError(password), 'This sign-in needs more than your password. Sign in with your passkey.');
      assert.ok(!signedInCookies(password).includes('clearance_session'));
      assert.deepEqual((await lastEvent(f, 'user.login_failed')).decision, { allow: false, reasons: ['risk_step_up'] });

      const passkey = await browser.passkey(id, f.pia);
      assert.equal(passkey.statusCode, 303, passkey.body);
      const succeeded = await lastEvent(f, 'user.login_succeeded');
      assert.equal(succeeded.details!.method, 'passkey');
      assert.equal(succeeded.details!.acr, acr.phishingResistant);
      assert.equal(riskOf(succeeded).outcome, 'step_up', 'met by the passkey');
      assert.ok(signedInCookies(passkey).includes(deviceCookieName));
      assert.deepEqual(await riskAlerts(f), []);
    });

    test('counts each password the step-up sends to the passkey against the sign-in throttle, as a wrong one', async (t) => {
      const { f, browser, id } = await piaAt3amAfterFailures(t, dialect);
      // Three wrong guesses and two right passwords asked for the passkey: the account's five.
      for (let i = 0; i < 2; i++) assert.equal(pageError(await browser.password(id, 'pia', passwords.pia)), 'This sign-in needs more than your password. Sign in with your passkey.');
      assert.equal((await browser.password(id, 'pia', passwords.pia)).statusCode, 429);
      assert.equal((await browser.passkey(id, f.pia)).statusCode, 303, 'the passkey still signs her in');
    });

    test('refuses a passkey sign-in the risk denies with the passkey’s usual failure message, and alerts', async (t) => {
      const f = await fixture(t, dialect);
      // Pia's usual sign-in sets her baseline; the passkey then comes from another browser and network, at 03:00 after failures.
      assert.equal((await new Browser(f, home).signIn('pia')).statusCode, 303, 'in hours, the password alone');
      f.clock.set(f.wednesday0300Tokyo);
      await failedAttempts(f, 'pia', elsewhere);
      const browser = new Browser(f, elsewhere);
      const { id } = await browser.start();
      const refused = await browser.passkey(id, f.pia);
      assert.equal(refused.statusCode, 401);
      assert.equal(pageError(refused), 'Your passkey could not be used to sign in. Try again, or choose another way below.');
      const failed = await lastEvent(f, 'user.login_failed');
      assert.deepEqual(failed.decision, { allow: false, reasons: ['risk_denied'] });
      assert.equal(failed.details!.method, 'passkey');
      assert.deepEqual([riskOf(failed).score, riskOf(failed).outcome], [80, 'deny']);
      assert.deepEqual(names(riskOf(failed)), ['new_device', 'new_network', 'recent_failures', 'off_hours']);
      assert.equal((await riskAlerts(f))[0]!.data.method, 'passkey');
    });

    test('gives a signed-in browser a 400-day device cookie that makes it a known device; a tampered one counts as a new device', async (t) => {
      const f = await fixture(t, dialect);
      const browser = new Browser(f, home);
      const first = await browser.signIn('nina');
      const line = setCookies(first).find((c) => c.startsWith(`${deviceCookieName}=`));
      assert.match(line ?? '', /^clearance_device=[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Lax; Max-Age=34560000$/, 'no Secure on an http development issuer');
      const value = browser.jar.cookies.get(deviceCookieName)!;

      assert.equal((await browser.signIn('nina')).statusCode, 303);
      assert.equal(hitOf(riskOf(await lastEvent(f, 'user.login_succeeded')), 'new_device'), undefined, 'a known device');

      // The id changed by one character: its MAC no longer verifies.
      const tampered = `${value[0] === 'A' ? 'B' : 'A'}${value.slice(1)}`;
      browser.jar.cookies.set(deviceCookieName, tampered);
      const again = await browser.signIn('nina');
      assert.equal(again.statusCode, 303);
      assert.equal(hitOf(riskOf(await lastEvent(f, 'user.login_succeeded')), 'new_device'), 'no valid device cookie');
      const renewed = browser.jar.cookies.get(deviceCookieName)!;
      assert.notEqual(renewed, tampered, 'a new device cookie replaces it');
      assert.notEqual(renewed.split('.')[0], value.split('.')[0], 'with a new id');
      // A cookie made up from scratch is no better.
      browser.jar.cookies.set(deviceCookieName, `${'A'.repeat(22)}.${'B'.repeat(43)}`);
      await browser.signIn('nina');
      assert.equal(hitOf(riskOf(await lastEvent(f, 'user.login_succeeded')), 'new_device'), 'no valid device cookie');
    });

    test('on an https issuer names the device cookie __Host-clearance_device; a valid one planted under the bare name makes no known device', async (t) => {
      const f = await fixture(t, dialect, { CLEARANCE_ISSUER: 'https://id.broker.example' });
      const browser = new Browser(f, home);
      const first = await browser.signIn('nina');
      assert.equal(first.statusCode, 303, first.body);
      const line = setCookies(first).find((c) => c.includes('clearance_device='));
      assert.match(line ?? '', /^__Host-clearance_device=[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Lax; Secure; Max-Age=34560000$/);
      const value = browser.jar.cookies.get('__Host-clearance_device')!;
      assert.equal((await browser.signIn('nina')).statusCode, 303);
      assert.equal(hitOf(riskOf(await lastEvent(f, 'user.login_succeeded')), 'new_device'), undefined, 'a known device under its prefixed name');

      // Someone who holds that browser's cookie plants it, unprefixed, in another browser (cookie
      // tossing from a sibling subdomain or an http page): it names no device there.
      const planted = new Browser(f, home);
      planted.jar.cookies.set(deviceCookieName, value);
      assert.equal((await planted.signIn('nina')).statusCode, 303);
      assert.equal(hitOf(riskOf(await lastEvent(f, 'user.login_succeeded')), 'new_device'), 'no valid device cookie');
    });

    test("carries the sign-in's signals with the session into the code and the refresh tokens, for each issuance", async (t) => {
      const f = await fixture(t, dialect);
      // Nina's usual sign-in sets her baseline; then, in hours, another browser on another network.
      assert.equal((await new Browser(f, home).signIn('nina')).statusCode, 303);
      const browser = new Browser(f, elsewhere);
      const { id, verifier } = await browser.start();
      const signedIn = await browser.password(id, 'nina', passwords.nina);
      const expected = [
        { signal: 'new_device', points: 25, detail: 'no valid device cookie' },
        { signal: 'new_network', points: 15, detail: 'network 203.0.113.0/24 never seen' },
      ];
      const session = await readSession(f.ctx, browser.jar.header());
      assert.deepEqual(session?.loginRisk, expected);
      const stored = await f.ctx.storage.db.selectFrom('sessions').select('risk').where('id', '=', session!.sessionId).executeTakeFirstOrThrow();
      assert.equal(JSON.parse(stored.risk!).score, 40);

      // Consent, resume, the code at the client.
      assert.equal(locationPath(f, signedIn), `/interaction/${id}`);
      const consent = await browser.get(`/interaction/${id}`);
      const resume = locationPath(f, await browser.post(`/interaction/${id}/consent`, { csrf_token: csrfOf(consent.body), decision: 'approve' }));
      const code = new URL(String((await browser.get(resume)).headers.location)).searchParams.get('code')!;
      const codeRow = await f.ctx.storage.db.selectFrom('authorization_codes').select('payload').executeTakeFirstOrThrow();
      assert.deepEqual(JSON.parse(codeRow.payload).loginRisk, expected);

      const redeemed = await f.redeem('web-app', code, verifier);
      assert.equal(redeemed.statusCode, 200, redeemed.body);
      const refreshed = await f.refresh('web-app', (redeemed.json() as { refresh_token: string }).refresh_token);
      assert.equal(refreshed.statusCode, 200, refreshed.body);
      const families = await f.ctx.storage.db.selectFrom('refresh_tokens').select('payload').execute();
      assert.equal(families.length, 2, 'the first refresh token and its rotated child');
      for (const row of families) assert.deepEqual(JSON.parse(row.payload).loginRisk, expected);
      // Both issuances — the code's and the refresh's — were assessed with the sign-in's signals (Issuance.loginRisk).
      const business = (await events(f, 'token.issued')).filter((e) => e.audience === 'https://orders.example.com/api');
      assert.equal(business.length, 2, 'the code grant and the refresh grant');
      for (const event of business) {
        for (const signal of expected) assert.deepEqual(riskOf(event).signals.find((s) => s.signal === signal.signal), signal, signal.signal);
      }
    });
  });
}

/** The reason of one signal in an audit event's assessment, if it fired. */
function hitOf(risk: RiskDetail, name: string): string | undefined {
  return risk.signals.find((s) => s.signal === name)?.detail;
}
