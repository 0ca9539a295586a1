import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import type { ConsoleSession } from '../../src/console/session.ts';
import { sealNow } from '../../src/audit/lifecycle.ts';
import { open } from '../../src/keys/sealed-box.ts';
import { authenticationKey, resolveMasterKey } from '../../src/keys/master-key.ts';
import { SoftwareAuthenticator } from '../helpers/authenticator.ts';
import { codeFlowFixture, type CodeFlowFixture } from '../authorization/fixture.ts';
import { csrfOf, get, Jar, post } from './people-browser.ts';

// The console's test fixture (src/endpoints/console, docs/console.md): people with their console
// roles and passkeys, and a browser that signs in to the console from scratch. Shared by
// console.test.ts (what the console does) and console-security.test.ts (what it refuses).

export const password = 'console-correct-horse-42';
export const ordersApi = 'https://orders.console.example/api';
export const brokerLei = '5493001KJTIIGC8Y1R12';

export interface Console extends CodeFlowFixture {
  masterKey: Buffer;
  /** Each person's passkey device, for those who have one. */
  devices: Map<string, SoftwareAuthenticator>;
}

export async function consoleFixture(t: TestContext): Promise<Console> {
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
    resource_servers: [{ identifier: ordersApi, scopes: ['order:create'], access_token_ttl: 300 }],
    clients: [{ client_id: 'desk-algo', owner_lei: brokerLei, token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], scope: 'order:create' }],
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

/** A trade: desk-algo's token with txn=new, sealed into the audit log; its txn. */
export async function trade(f: Console): Promise<string> {
  const order = [{ type: 'order', instrument: { class: 'bond', symbol: 'DE0001102580' }, side: 'buy', max_notional: { amount: '5000000', currency: 'EUR' }, venue: 'XLON', account: 'ACC-7781' }];
  const token = await f.accessToken('desk-algo', { resource: ordersApi, scope: 'order:create', authorization_details: JSON.stringify(order), txn: 'new' });
  const txn = String(JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()).txn);
  await sealNow(f.ctx, f.masterKey);
  return txn;
}

export const pathOf = (f: CodeFlowFixture, location: string) => (location.startsWith(f.issuer) ? location.slice(f.issuer.length) : location);

/**
 * A browser signing in to the console from scratch: every redirect followed, the password typed on
 * the sign-in page, the passkey used where the page asks a level the password does not reach,
 * consent approved. Ends on the first answer that is not a redirect within the issuer.
 */
export async function signInToConsole(f: Console, jar: Jar, username: string, start = '/console/sign-in'): Promise<{ response: LightMyRequestResponse; path: string; sawPages: string[] }> {
  let response = await get(f, start, jar);
  let path = start;
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
    } else if ((body.includes('needs a passkey') || body.includes('Two-step sign-in is needed')) && f.devices.has(username)) {
      sawPages.push('passkey');
      const options = await post(f, `/interaction/${id}/passkey/options`, { csrf_token: csrf, username }, jar);
      assert.equal(options.statusCode, 200, options.body);
      response = await post(f, `/interaction/${id}/passkey`, { csrf_token: csrf, credential: JSON.stringify(f.devices.get(username)!.assert(options.json())) }, jar);
    } else if (body.includes('needs a passkey') || body.includes('Two-step sign-in is needed')) {
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
export async function assertSectionRefused(f: Console, username: string, section: string): Promise<void> {
  const jar = new Jar();
  assert.equal((await signInToConsole(f, jar, username)).path, '/console');
  assert.doesNotMatch((await get(f, '/console', jar)).body, new RegExp(`href="/console/${section}"`));
  const refused = await get(f, `/console/${section}`, jar);
  assert.equal(refused.statusCode, 403);
  assert.match(refused.body, /Your roles do not allow this/);
}

/** The console session in `jar`, opened as the server does (the test knows the master key). */
export function sessionIn(f: Console, jar: Jar): ConsoleSession {
  // A key of what authenticates, derived from the master key that seals (src/keys/master-key.ts authenticationKey).
  const key = authenticationKey(f.masterKey, 'clearance console cookies v1');
  const sealed = jar.cookies.get('clearance_console');
  assert.ok(sealed, 'the console cookie is set');
  return JSON.parse(open(key, sealed, 'console:clearance_console').toString('utf8')) as ConsoleSession;
}

/** What a current browser sends for a link followed from the console's own pages (Fetch Metadata). */
export const fromTheConsole = { 'sec-fetch-site': 'same-origin', 'sec-fetch-mode': 'navigate' } as const;

/** A page opened from a link on the console itself, as a current browser asks for it (Sec-Fetch-Site: same-origin). */
export async function getFromConsole(f: Pick<Console, 'inject'>, url: string, jar: Jar): Promise<LightMyRequestResponse> {
  const response = await f.inject({ method: 'GET', url, headers: { cookie: jar.header(), ...fromTheConsole } });
  jar.update(response);
  return response;
}
