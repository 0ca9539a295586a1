import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { listPasskeys } from '../../src/identity/passkeys/store.ts';
import { totpPeriodSeconds } from '../../src/identity/factors/totp.ts';
import { SoftwareAuthenticator } from '../helpers/authenticator.ts';
import { codeFlowFixture, type CodeFlowFixture } from '../authorization/fixture.ts';
import { codeAt } from '../identity/factors/fixture.ts';
import { csrfOf, get, Jar, locationPath, post, startAuthorization } from './people-browser.ts';

// docs/authentication.md "Audit": every factor's success and failure, every enrolment and
// removal, is an audit event naming the factor type and its credential — and never a secret.
// One person does it all through the pages, and the whole trail is read back.

const password = 'alice-correct-horse-42';

/** A sign-in on the pages of a new authorization request: the password, then what `then` does. */
async function signIn(f: CodeFlowFixture, jar: Jar, typed: string): Promise<{ id: string; response: LightMyRequestResponse }> {
  const { id } = await startAuthorization(f, jar);
  const page = await get(f, `/interaction/${id}`, jar);
  return { id, response: await post(f, `/interaction/${id}/login`, { csrf_token: csrfOf(page.body), username: 'alice', password: typed }, jar) };
}

async function secondFactor(f: CodeFlowFixture, jar: Jar, id: string, fields: Record<string, string>): Promise<LightMyRequestResponse> {
  const page = await get(f, `/interaction/${id}/second-factor`, jar);
  assert.equal(page.statusCode, 200, page.body);
  return post(f, `/interaction/${id}/second-factor`, { csrf_token: csrfOf(page.body), ...fields }, jar);
}

/** Every string anywhere in a value. */
function strings(value: unknown): string[] {
  if (typeof value === 'string') return [value];
  if (Array.isArray(value)) return value.flatMap(strings);
  if (value && typeof value === 'object') return Object.values(value).flatMap(strings);
  return [];
}

test('every factor success, failure, enrolment and removal is audited with its factor type and credential, never a secret', async (t) => {
  const f = await codeFlowFixture(t, { risk: 'off' }); // sign-ins that are not about risk (docs/risk.md), whatever the hour
  await f.apply({ users: [{ username: 'alice', password, name: 'Alice Trader' }] });
  const authenticator = new SoftwareAuthenticator({ origin: f.issuer });
  const codes: string[] = [];
  const nextCode = async (secret: string) => {
    f.clock.advance(totpPeriodSeconds * 1000);
    const code = await codeAt(secret, f.clock.now());
    codes.push(code);
    return code;
  };

  // 1. The password: wrong, then right (a session at pwd).
  const jar = new Jar();
  assert.equal((await signIn(f, jar, 'not-the-password')).response.statusCode, 401);
  assert.equal((await signIn(f, jar, password)).response.statusCode, 303);

  // 2. An authenticator app on /account: a wrong first code, then the right one.
  let account = await get(f, '/account', jar);
  assert.equal(locationPath(f, await post(f, '/account/totp', { csrf_token: csrfOf(account.body) }, jar)), '/account/totp');
  const setup = await get(f, '/account/totp', jar);
  const secret = /<p class="secret" id="totp-secret">([A-Z2-7 ]+)<\/p>/.exec(setup.body)![1]!.replaceAll(' ', '');
  assert.equal((await post(f, '/account/totp/confirm', { csrf_token: csrfOf(setup.body), code: '000000' }, jar)).statusCode, 400);
  const confirmed = await post(f, '/account/totp/confirm', { csrf_token: csrfOf(setup.body), code: await nextCode(secret) }, jar);
  const recoveryCodes = [...confirmed.body.matchAll(/<li>([a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4})<\/li>/g)].map((m) => m[1]!);
  assert.equal(recoveryCodes.length, 10);
  const factorId = (await f.ctx.storage.db.selectFrom('totp_factors').select('id').executeTakeFirstOrThrow()).id;

  // 3. Password and code: a wrong code, then the right one (a session at mfa).
  const mfa = new Jar();
  let { id, response } = await signIn(f, mfa, password);
  assert.equal(locationPath(f, response), `/interaction/${id}/second-factor`);
  assert.equal((await secondFactor(f, mfa, id, { code: '000000' })).statusCode, 401);
  assert.equal((await secondFactor(f, mfa, id, { code: await nextCode(secret) })).statusCode, 303);

  // 4. A passkey, added from that session; a registration for another origin refused.
  account = await get(f, '/account', mfa);
  const register = async (device: SoftwareAuthenticator, bend = {}) => {
    const options = await post(f, '/account/passkeys/options', { csrf_token: csrfOf(account.body) }, mfa);
    return post(f, '/account/passkeys', { csrf_token: csrfOf(account.body), name: 'Laptop', credential: JSON.stringify(device.register(options.json(), bend)) }, mfa);
  };
  assert.equal((await register(new SoftwareAuthenticator({ origin: f.issuer }), { origin: 'https://evil.example' })).statusCode, 400);
  assert.equal((await register(authenticator)).statusCode, 303);
  const [passkey] = await listPasskeys(f.ctx, (await f.ctx.storage.db.selectFrom('users').select('id').executeTakeFirstOrThrow()).id);
  const publicKey = Buffer.from(passkey!.publicKey).toString('base64url');

  // 5. The passkey: an assertion for another origin refused, then a sign-in (a session at phr).
  const assertions: string[] = [];
  const withPasskey = async (jarFor: Jar, bend = {}) => {
    const { id } = await startAuthorization(f, jarFor);
    const page = await get(f, `/interaction/${id}`, jarFor);
    const options = await post(f, `/interaction/${id}/passkey/options`, { csrf_token: csrfOf(page.body) }, jarFor);
    const credential = JSON.stringify(authenticator.assert(options.json(), bend));
    assertions.push(credential);
    return post(f, `/interaction/${id}/passkey`, { csrf_token: csrfOf(page.body), credential }, jarFor);
  };
  const phr = new Jar();
  assert.equal((await withPasskey(phr, { origin: 'https://evil.example' })).statusCode, 401);
  assert.equal((await withPasskey(phr)).statusCode, 303);

  // 6. Rename it and remove it, from the passkey session.
  account = await get(f, '/account', phr);
  assert.equal((await post(f, `/account/passkeys/${passkey!.id}/rename`, { csrf_token: csrfOf(account.body), name: 'Old laptop' }, phr)).statusCode, 303);
  assert.equal((await post(f, `/account/passkeys/${passkey!.id}/remove`, { csrf_token: csrfOf(account.body) }, phr)).statusCode, 303);

  // 7. A recovery code, then the same one again.
  for (const status of [303, 401]) {
    const browser = new Jar();
    ({ id, response } = await signIn(f, browser, password));
    assert.equal((await secondFactor(f, browser, id, { recovery_code: recoveryCodes[0]! })).statusCode, status);
  }

  // 8. Remove the authenticator, from a new second-factor session (removing the passkey in 6.
  // signed alice out everywhere but in the passkey session).
  const again = new Jar();
  ({ id } = await signIn(f, again, password));
  assert.equal((await secondFactor(f, again, id, { code: await nextCode(secret) })).statusCode, 303);
  account = await get(f, '/account', again);
  assert.equal(locationPath(f, await post(f, '/account/totp/remove', { csrf_token: csrfOf(account.body) }, again)), '/account');

  const events = await f.auditEvents();
  const about = (type: string, factor: string) => events.filter((e) => e.type === type && e.details?.factor === factor);
  const one = (type: string, factor: string, check: (details: Record<string, unknown>) => boolean = () => true) => {
    const found = about(type, factor).filter((e) => check(e.details!));
    assert.ok(found.length > 0, `${type} (${factor})`);
    return found;
  };
  // The password has no credential of its own: the event names the factor.
  one('user.login_failed', 'password');
  one('user.login_succeeded', 'password');
  one('user.factor_succeeded', 'password');
  // The authenticator: its id in each of its events.
  for (const [type, check] of [
    ['user.factor_failed', (d: Record<string, unknown>) => d.stage === 'enrolment'],
    ['user.factor_enrolled', undefined],
    ['user.factor_failed', (d: Record<string, unknown>) => d.stage === undefined],
    ['user.factor_succeeded', undefined],
    ['user.factor_removed', undefined],
  ] as const) {
    for (const event of one(type, 'totp', check)) assert.equal(event.details!.credential, factorId, type);
  }
  // A recovery code has no id: its set's authenticator (`with`).
  for (const type of ['user.factor_succeeded', 'user.factor_failed', 'user.recovery_codes_generated']) {
    for (const event of one(type, 'recovery_code')) assert.equal(event.details!.with, factorId, type);
  }
  // The passkey: its credential id in each of its events.
  for (const event of [...one('user.login_succeeded', 'passkey'), ...one('user.login_failed', 'passkey')]) assert.equal(event.details!.credential, passkey!.credentialId);
  for (const type of ['passkey.registered', 'passkey.renamed', 'passkey.removed']) {
    const [event] = events.filter((e) => e.type === type);
    assert.equal(event?.details?.credential, passkey!.credentialId, type);
  }
  assert.ok(events.some((e) => e.type === 'passkey.registration_failed'), 'the refused registration');

  // No secret anywhere: the password, the authenticator's secret, a code, a recovery code, the
  // passkey's key or an assertion's signature.
  const text = await f.auditText();
  for (const value of [password, 'not-the-password', secret, secret.toLowerCase(), ...recoveryCodes, ...recoveryCodes.map((c) => c.replaceAll('-', '')), publicKey]) {
    assert.ok(!text.includes(value), `no secret in the audit log: ${value.slice(0, 6)}…`);
  }
  for (const assertion of assertions) {
    const { response: signed } = JSON.parse(assertion) as { response: { signature: string; clientDataJSON: string; authenticatorData: string } };
    assert.ok(!text.includes(signed.signature) && !text.includes(signed.clientDataJSON), 'no assertion material');
  }
  const leaves = events.flatMap((e) => strings(e.details));
  for (const code of [...codes, '000000']) assert.ok(!leaves.includes(code), `no code: ${code}`);
});
