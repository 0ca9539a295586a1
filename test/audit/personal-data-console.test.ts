import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import type { StoredAuditEvent } from '../../src/audit/events.ts';
import { sealNow } from '../../src/audit/lifecycle.ts';
import { resolveMasterKey } from '../../src/keys/master-key.ts';
import { SoftwareAuthenticator } from '../helpers/authenticator.ts';
import { codeFlowFixture, type CodeFlowFixture } from '../authorization/fixture.ts';
import { csrfOf, get, Jar, post } from '../endpoints/people-browser.ts';
import { consoleEventPage } from '../../src/ui/console.ts';
import type { ConsoleSession } from '../../src/console/session.ts';

// The console's audit explorer and personal fields (docs/privacy.md "Who reads personal fields"):
// withheld by default, revealed on request to compliance through the audited API; not to an admin.

const password = 'console-correct-horse-42';
const brokerLei = '5493001KJTIIGC8Y1R12';

type Console = CodeFlowFixture & { devices: Map<string, SoftwareAuthenticator> };

async function fixture(t: TestContext): Promise<Console> {
  const f = await codeFlowFixture(t, { risk: 'off' });
  const devices = new Map<string, SoftwareAuthenticator>();
  for (const username of ['cora', 'ada']) {
    const authenticator = new SoftwareAuthenticator({ origin: f.issuer });
    const jar = new Jar((await f.signIn(username)).cookie);
    const account = await get(f, '/account', jar);
    const options = await post(f, '/account/passkeys/options', { csrf_token: csrfOf(account.body) }, jar);
    const added = await post(f, '/account/passkeys', { csrf_token: csrfOf(account.body), name: 'Laptop', credential: JSON.stringify(authenticator.register(options.json())) }, jar);
    assert.equal(added.statusCode, 303, added.body);
    devices.set(username, authenticator);
  }
  await f.apply({
    regions: [{ id: 'uk' }],
    legal_entities: [{ lei: brokerLei, name: 'Console Broker Ltd', jurisdiction: 'GB', home_region: 'uk', roles: ['broker'], desks: [{ id: 'broker-compliance', name: 'Compliance' }] }],
    users: [
      { username: 'cora', password, name: 'Cora Compliance', roles: ['compliance'], desks: ['broker-compliance'] },
      { username: 'ada', password, name: 'Ada Admin', roles: ['admin'] },
    ],
  });
  f.clock.advance(1000);
  return Object.assign(f, { devices });
}

const pathOf = (f: CodeFlowFixture, location: string) => (location.startsWith(f.issuer) ? location.slice(f.issuer.length) : location);

/** Signs in to the console as a browser does: password, then the passkey the roles ask for, then consent. */
async function signInToConsole(f: Console, jar: Jar, username: string): Promise<string> {
  let response: LightMyRequestResponse = await get(f, '/console/sign-in', jar);
  let path = '/console/sign-in';
  for (let steps = 0; steps < 30; steps++) {
    if (response.statusCode === 303) {
      path = pathOf(f, String(response.headers.location));
      response = await get(f, path, jar);
      continue;
    }
    if (response.statusCode !== 200 || !path.startsWith('/interaction/')) break;
    const id = /^\/interaction\/([^/?]+)/.exec(path)![1]!;
    const csrf = csrfOf(response.body);
    if (response.body.includes(`action="/interaction/${id}/consent"`)) response = await post(f, `/interaction/${id}/consent`, { csrf_token: csrf, decision: 'approve' }, jar);
    else if (response.body.includes('needs a passkey')) {
      const options = await post(f, `/interaction/${id}/passkey/options`, { csrf_token: csrf, username }, jar);
      response = await post(f, `/interaction/${id}/passkey`, { csrf_token: csrf, credential: JSON.stringify(f.devices.get(username)!.assert(options.json())) }, jar);
    } else response = await post(f, `/interaction/${id}/login`, { csrf_token: csrf, username, password }, jar);
  }
  return path;
}

describe("the console's event page and personal fields", () => {
  test('shows a sign-in’s address withheld, reveals it to compliance on request (recorded), and never to an admin', async (t) => {
    const f = await fixture(t);
    const cora = new Jar();
    assert.equal(await signInToConsole(f, cora, 'cora'), '/console');
    const ada = new Jar();
    assert.equal(await signInToConsole(f, ada, 'ada'), '/console');
    await sealNow(f.ctx, resolveMasterKey(f.ctx.config).key);
    const coraId = (await f.ctx.storage.db.selectFrom('users').select('id').where('username', '=', 'cora').executeTakeFirstOrThrow()).id;
    const rows = await f.ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', 'user.login_succeeded').where('subject', '=', coraId).orderBy('seq').execute();
    const login = JSON.parse(rows.at(-1)!.event) as StoredAuditEvent;
    assert.ok(!rows.at(-1)!.event.includes('127.0.0.1'), 'stored encrypted');

    const withheld = await get(f, `/console/audit/events/${login.id}`, cora);
    assert.equal(withheld.statusCode, 200, withheld.body);
    assert.match(withheld.body, /<p id="personal">Withheld: source_address\./);
    assert.match(withheld.body, /\?reveal=personal">Reveal personal data<\/a>/);
    assert.ok(!withheld.body.includes('127.0.0.1'));

    const revealed = await get(f, `/console/audit/events/${login.id}?reveal=personal`, cora);
    assert.equal(revealed.statusCode, 200, revealed.body);
    assert.match(revealed.body, /<dt>source_address<\/dt><dd><code>127\.0\.0\.1<\/code><\/dd>/);
    const read = await f.ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', 'audit.read').orderBy('seq', 'desc').executeTakeFirstOrThrow();
    assert.equal((JSON.parse(read.event) as StoredAuditEvent).details!.personal_data_revealed, true, 'the revealing read is on the record');

    const adminPage = await get(f, `/console/audit/events/${login.id}`, ada);
    assert.equal(adminPage.statusCode, 200, adminPage.body);
    assert.match(adminPage.body, /Withheld: source_address\./);
    assert.ok(!adminPage.body.includes('Reveal personal data'), 'no link for a role that does not read personal data');
    const refused = await get(f, `/console/audit/events/${login.id}?reveal=personal`, ada);
    assert.equal(refused.statusCode, 403);
    assert.ok(!refused.body.includes('127.0.0.1'));
  });

  test("says why another firm's event stays withheld when its personal fields were asked for, and offers no reveal link then", () => {
    const session: ConsoleSession = { accessToken: 't', expiresAt: 0, userId: 'u-aud', username: 'aud', roles: ['auditor'], scopes: ['audit:read'], acr: 'x', csrf: 'c' };
    const event: StoredAuditEvent = { v: 1, id: 'e-1', type: 'user.login_succeeded', time: 0, node: 'n', subject: 'someone-of-firm-b', details: { personal: { kid: 'psk_x', iv: '', ct: '', fields: ['source_address'] } } };
    const page = (personal: Parameters<typeof consoleEventPage>[2]['personal']) => consoleEventPage('', session, { event, canonical: '{}', check: undefined, ...(personal ? { personal } : {}) }).toString();
    const outside = page({ status: 'withheld', fields: ['source_address'], reason: 'outside_scope' });
    assert.match(outside, /<p id="personal">Withheld: source_address\. Not an event of your legal entities/);
    assert.ok(!outside.includes('Reveal personal data'));
    assert.match(page({ status: 'withheld', fields: ['source_address'] }), /Reveal personal data<\/a>/, 'not asked yet: the link');
  });
});
