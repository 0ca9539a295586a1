import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { StoredAuditEvent } from '../../src/audit/events.ts';
import { sealNow } from '../../src/audit/lifecycle.ts';
import { Jar } from '../endpoints/people-browser.ts';
import { consoleFixture as fixture, getFromConsole, signInToConsole } from '../endpoints/console-fixture.ts';
import { consoleEventPage } from '../../src/ui/console.ts';
import type { ConsoleSession } from '../../src/console/session.ts';

// The console's audit explorer and personal fields (docs/privacy.md "Who reads personal fields"):
// withheld by default, revealed on request to compliance through the audited API; not to an admin.
// The fixture is the console tests' own (test/endpoints/console-fixture.ts).

describe("the console's event page and personal fields", () => {
  test('shows a sign-in’s address withheld, reveals it to compliance on request (recorded), and never to an admin', async (t) => {
    const f = await fixture(t);
    const cora = new Jar();
    assert.equal((await signInToConsole(f, cora, 'cora')).path, '/console');
    const ada = new Jar();
    assert.equal((await signInToConsole(f, ada, 'ada')).path, '/console');
    await sealNow(f.ctx, f.masterKey);
    const coraId = (await f.ctx.storage.db.selectFrom('users').select('id').where('username', '=', 'cora').executeTakeFirstOrThrow()).id;
    const rows = await f.ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', 'user.login_succeeded').where('subject', '=', coraId).orderBy('seq').execute();
    const login = JSON.parse(rows.at(-1)!.event) as StoredAuditEvent;
    assert.ok(!rows.at(-1)!.event.includes('127.0.0.1'), 'stored encrypted');

    const withheld = await getFromConsole(f, `/console/audit/events/${login.id}`, cora);
    assert.equal(withheld.statusCode, 200, withheld.body);
    assert.match(withheld.body, /<p id="personal">Withheld: source_address\./);
    assert.match(withheld.body, /\?reveal=personal">Reveal personal data<\/a>/);
    assert.ok(!withheld.body.includes('127.0.0.1'));

    const revealed = await getFromConsole(f, `/console/audit/events/${login.id}?reveal=personal`, cora);
    assert.equal(revealed.statusCode, 200, revealed.body);
    assert.match(revealed.body, /<dt>source_address<\/dt><dd><code>127\.0\.0\.1<\/code><\/dd>/);
    const read = await f.ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', 'audit.read').orderBy('seq', 'desc').executeTakeFirstOrThrow();
    assert.equal((JSON.parse(read.event) as StoredAuditEvent).details!.personal_data_revealed, true, 'the revealing read is on the record');

    const adminPage = await getFromConsole(f, `/console/audit/events/${login.id}`, ada);
    assert.equal(adminPage.statusCode, 200, adminPage.body);
    assert.match(adminPage.body, /Withheld: source_address\./);
    assert.ok(!adminPage.body.includes('Reveal personal data'), 'no link for a role that does not read personal data');
    const refused = await getFromConsole(f, `/console/audit/events/${login.id}?reveal=personal`, ada);
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
