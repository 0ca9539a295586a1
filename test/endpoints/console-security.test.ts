import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import type { StoredAuditEvent } from '../../src/audit/events.ts';
import type { ConsoleSession } from '../../src/console/session.ts';
import { sealNow } from '../../src/audit/lifecycle.ts';
import { open } from '../../src/keys/sealed-box.ts';
import { authenticationKey, resolveMasterKey } from '../../src/keys/master-key.ts';
import { SoftwareAuthenticator } from '../helpers/authenticator.ts';
import { codeFlowFixture, type CodeFlowFixture } from '../authorization/fixture.ts';
import { csrfOf, get, Jar, post } from './people-browser.ts';

// The console's security rules (src/endpoints/console, docs/console.md) from the outside: what a
// signed-in browser, a stolen cookie, another site and a person whose roles changed can and cannot
// do. The fixture is the console tests' own (test/endpoints/console.test.ts).

const password = 'console-correct-horse-42';
const brokerLei = '5493001KJTIIGC8Y1R12';

interface Console extends CodeFlowFixture {
  masterKey: Buffer;
  /** Each person's passkey device, for those who have one. */
  devices: Map<string, SoftwareAuthenticator>;
}

async function fixture(t: TestContext): Promise<Console> {
  const f = await codeFlowFixture(t, { risk: 'off' });
  const devices = new Map<string, SoftwareAuthenticator>();
  // A first passkey is added from a password session (the account page), as people do; the
  // fixture's sign-in makes the person, and the document then gives them their roles and password.
  for (const username of ['cora', 'ada', 'april']) {
    const authenticator = new SoftwareAuthenticator({ origin: f.issuer });
    const jar = new Jar((await f.signIn(username)).cookie);
    const account = await get(f, '/account', jar);
    const options = await post(f, '/account/passkeys/options', { csrf_token: csrfOf(account.body) }, jar);
    const added = await post(f, '/account/passkeys', { csrf_token: csrfOf(account.body), name: 'Laptop', credential: JSON.stringify(authenticator.register(options.json())) }, jar);
    assert.equal(added.statusCode, 303, added.body);
    devices.set(username, authenticator);
  }
  await f.apply({
    // Cora is the broker's compliance officer: she reads its events (src/audit/scope.ts), desk-algo's among them.
    regions: [{ id: 'uk' }],
    legal_entities: [{ lei: brokerLei, name: 'Console Broker Ltd', jurisdiction: 'GB', home_region: 'uk', roles: ['broker'], desks: [{ id: 'broker-compliance', name: 'Compliance' }] }],
    users: [
      { username: 'cora', password, name: 'Cora Compliance', roles: ['compliance'], desks: ['broker-compliance'] },
      { username: 'ada', password, name: 'Ada Admin', roles: ['admin'] },
      { username: 'april', password, name: 'April Approver', roles: ['approver'] },
      { username: 'tim', password, name: 'Tim Trader', roles: ['trader'] },
      { username: 'paul', password, name: 'Paul Password', roles: ['compliance'] },
    ],
  });
  // Setting a password ends the tokens issued until then (a reset): the console's come after.
  f.clock.advance(1000);
  return Object.assign(f, { masterKey: resolveMasterKey(f.ctx.config).key, devices });
}

const pathOf = (f: CodeFlowFixture, location: string) => (location.startsWith(f.issuer) ? location.slice(f.issuer.length) : location);

/**
 * A browser signing in to the console from scratch: every redirect followed, the password typed on
 * the sign-in page, the passkey used where the page asks a level the password does not reach,
 * consent approved. Ends on the first answer that is not a redirect within the issuer.
 */
async function signInToConsole(f: Console, jar: Jar, username: string): Promise<{ response: LightMyRequestResponse; path: string; sawPages: string[] }> {
  let response = await get(f, '/console/sign-in', jar);
  let path = '/console/sign-in';
  const sawPages: string[] = [];
  for (let steps = 0; steps < 30; steps++) {
    if (response.statusCode === 303) {
      path = pathOf(f, String(response.headers.location));
      response = await get(f, path, jar);
      continue;
    }
    if (response.statusCode !== 200 || !path.startsWith('/interaction/')) break;
    const id = /^\/interaction\/([^/?]+)/.exec(path)![1]!;
    const body = response.body;
    const csrf = csrfOf(body);
    if (body.includes(`action="/interaction/${id}/consent"`)) {
      sawPages.push('consent');
      response = await post(f, `/interaction/${id}/consent`, { csrf_token: csrf, decision: 'approve' }, jar);
    } else if (body.includes('needs a passkey') && f.devices.has(username)) {
      sawPages.push('passkey');
      const options = await post(f, `/interaction/${id}/passkey/options`, { csrf_token: csrf, username }, jar);
      assert.equal(options.statusCode, 200, options.body);
      response = await post(f, `/interaction/${id}/passkey`, { csrf_token: csrf, credential: JSON.stringify(f.devices.get(username)!.assert(options.json())) }, jar);
    } else if (body.includes('needs a passkey')) {
      // No passkey: the person goes back to the console without one.
      sawPages.push('decline');
      response = await post(f, `/interaction/${id}/decline`, { csrf_token: csrf }, jar);
    } else {
      sawPages.push('password');
      response = await post(f, `/interaction/${id}/login`, { csrf_token: csrf, username, password }, jar);
    }
  }
  return { response, path, sawPages };
}

/** A person whose roles do not reach a section: no link to it on the console's home, and 403 with the reason on the section's page. */
async function assertSectionRefused(f: Console, username: string, section: string): Promise<void> {
  const jar = new Jar();
  assert.equal((await signInToConsole(f, jar, username)).path, '/console');
  assert.doesNotMatch((await get(f, '/console', jar)).body, new RegExp(`href="/console/${section}"`));
  const refused = await get(f, `/console/${section}`, jar);
  assert.equal(refused.statusCode, 403);
  assert.match(refused.body, /Your roles do not allow this/);
}

/** The console session in `jar`, opened as the server does (the test knows the master key). */
function sessionIn(f: Console, jar: Jar): ConsoleSession {
  // A key of what authenticates, derived from the master key that seals (src/keys/master-key.ts authenticationKey).
  const key = authenticationKey(f.masterKey, 'clearance console cookies v1');
  const sealed = jar.cookies.get('clearance_console');
  assert.ok(sealed, 'the console cookie is set');
  return JSON.parse(open(key, sealed, 'console:clearance_console').toString('utf8')) as ConsoleSession;
}

/** The newest audit event of `type`, parsed. */
async function lastEvent(f: Console, type: string): Promise<StoredAuditEvent | undefined> {
  const row = await f.ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', type).orderBy('seq', 'desc').executeTakeFirst();
  return row ? (JSON.parse(row.event) as StoredAuditEvent) : undefined;
}

describe("the console's security rules", () => {
  test('a console cookie copied before sign-out reads nothing afterwards: sign-out revokes the console’s token', async (t) => {
    const f = await fixture(t);
    const jar = new Jar();
    assert.equal((await signInToConsole(f, jar, 'ada')).path, '/console');
    const copied = new Jar(jar.header());
    const token = sessionIn(f, jar).accessToken;
    const out = await post(f, '/console/sign-out', { csrf_token: csrfOf((await get(f, '/console', jar)).body) }, jar);
    assert.equal(out.statusCode, 200, out.body);

    const after = await get(f, '/console/directory', copied);
    assert.ok(!after.body.includes('desk-algo') && !after.body.includes('Console Broker Ltd'), 'the copied cookie shows no directory');
    assert.match(after.body, /Your console sign-in has ended/);
    const api = await f.inject({ method: 'GET', url: '/admin/clients', headers: { authorization: `Bearer ${token}` } });
    assert.equal(api.statusCode, 401, 'the admin API refuses the token too');
    assert.equal((await lastEvent(f, 'token.revoked'))?.client, 'clearance-console');
  });

  test('a person whose console role is taken away is signed out of the console at their next page, not when the token expires', async (t) => {
    const f = await fixture(t);
    const jar = new Jar();
    assert.equal((await signInToConsole(f, jar, 'ada')).path, '/console');
    assert.match((await get(f, '/console/directory', jar)).body, /Console Broker Ltd/);

    await f.apply({ users: [{ username: 'ada', password, name: 'Ada Admin', roles: [] }] });
    const after = await get(f, '/console/directory', jar);
    assert.equal(after.statusCode, 303, 'sent to sign in again, where her roles are read anew');
    assert.match(String(after.headers.location), /\/console\/sign-in\?return=%2Fconsole%2Fdirectory$/);
    assert.equal(jar.cookies.has('clearance_console'), false, 'the console cookie is cleared');
    const again = await signInToConsole(f, jar, 'ada');
    assert.equal(again.response.statusCode, 403);
    assert.match(again.response.body, /No console role/);
  });

  test('a person whose roles change is signed in again with the new roles’ scopes', async (t) => {
    const f = await fixture(t);
    const jar = new Jar();
    assert.equal((await signInToConsole(f, jar, 'ada')).path, '/console');
    await f.apply({ users: [{ username: 'ada', password, name: 'Ada Admin', roles: ['auditor'] }] });
    const refused = await post(f, '/console/sign-out', { csrf_token: 'whatever' }, jar);
    assert.equal(refused.statusCode, 403, 'a form still needs its token');
    const after = await get(f, '/console/directory', jar);
    assert.equal(after.statusCode, 303);
    assert.equal((await signInToConsole(f, jar, 'ada')).path, '/console');
    assert.deepEqual(sessionIn(f, jar).scopes, ['audit:read']);
  });

  test('another site cannot make a compliance officer reveal personal data or export a bundle in her name: a cross-site link reveals and exports nothing', async (t) => {
    const f = await fixture(t);
    const jar = new Jar();
    assert.equal((await signInToConsole(f, jar, 'cora')).path, '/console');
    await sealNow(f.ctx, f.masterKey);
    const cora = sessionIn(f, jar).userId;
    const login = (await f.ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', 'user.login_succeeded').where('subject', '=', cora).orderBy('seq', 'desc').executeTakeFirstOrThrow()).event;
    const id = (JSON.parse(login) as StoredAuditEvent).id;
    const reads = async () => (await f.ctx.storage.db.selectFrom('audit_events').select('event').where('type', 'in', ['audit.read', 'audit.exported']).execute()).map((r) => JSON.parse(r.event) as StoredAuditEvent);
    const before = (await reads()).length;

    // A link on another site, followed by her browser (Fetch Metadata: Sec-Fetch-Site cross-site).
    const crossSite = { 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'navigate' };
    const page = await f.inject({ method: 'GET', url: `/console/audit/events/${id}?reveal=personal`, headers: { cookie: jar.header(), ...crossSite } });
    assert.equal(page.statusCode, 200, page.body);
    assert.ok(!page.body.includes('127.0.0.1'), 'nothing revealed');
    assert.match(page.body, /Withheld: source_address\..*Reveal personal data/s, 'the page offers the link to follow from the console');
    const bundle = await f.inject({ method: 'GET', url: `/console/bundle?subject=${cora}`, headers: { cookie: jar.header(), ...crossSite } });
    assert.equal(bundle.statusCode, 403, bundle.body);
    const recorded = (await reads()).slice(before);
    assert.ok(!recorded.some((e) => e.details?.personal_data_revealed === true), 'no revealing read on her record');
    assert.ok(!recorded.some((e) => e.type === 'audit.exported'), 'no export on her record');

    // The same links followed from the console itself.
    const sameOrigin = { 'sec-fetch-site': 'same-origin', 'sec-fetch-mode': 'navigate' };
    const revealed = await f.inject({ method: 'GET', url: `/console/audit/events/${id}?reveal=personal`, headers: { cookie: jar.header(), ...sameOrigin } });
    assert.match(revealed.body, /<dt>source_address<\/dt><dd><code>127\.0\.0\.1<\/code><\/dd>/);
    const exported = await f.inject({ method: 'GET', url: `/console/bundle?subject=${cora}`, headers: { cookie: jar.header(), ...sameOrigin } });
    assert.equal(exported.statusCode, 200, exported.body);
  });
});
