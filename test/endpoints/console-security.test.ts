import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { StoredAuditEvent } from '../../src/audit/events.ts';
import { sealNow } from '../../src/audit/lifecycle.ts';
import { csrfOf, get, Jar, post } from './people-browser.ts';
import { consoleFixture as fixture, fromTheConsole, password, sessionIn, signInToConsole, type Console } from './console-fixture.ts';

// The console's security rules (src/endpoints/console, docs/console.md) from the outside: what a
// signed-in browser, a stolen cookie, another site and a person whose roles changed can and cannot
// do. The fixture is the console tests' own (./console-fixture.ts).

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
    // Taking admin away ended what she held, her Clearance session too (src/identity/lifecycle.ts
    // roles_removed): she signs in again below, with her password and then her passkey.
    const refused = await post(f, '/console/sign-out', { csrf_token: 'whatever' }, jar);
    assert.equal(refused.statusCode, 403, 'a form still needs its token');
    const after = await get(f, '/console/directory', jar);
    assert.equal(after.statusCode, 303);
    const again = await signInToConsole(f, jar, 'ada');
    assert.equal(again.path, '/console');
    assert.ok(again.sawPages.includes('password') && again.sawPages.includes('passkey'), `signed in anew: ${again.sawPages.join(', ')}`);
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

  // A browser that sends no Fetch Metadata cannot be told from another site's link: the GET does
  // nothing on the person's record, and a form of the console's own (its CSRF token) does it.
  test('a browser that sends no Sec-Fetch-Site is asked to confirm before personal data is revealed: the link alone reveals nothing', async (t) => {
    const f = await fixture(t);
    const jar = new Jar();
    assert.equal((await signInToConsole(f, jar, 'cora')).path, '/console');
    await sealNow(f.ctx, f.masterKey);
    const id = await lastLoginOf(f, sessionIn(f, jar).userId);
    const revealing = async () => (await f.auditEvents('audit.read')).filter((e) => e.details?.personal_data_revealed === true).length;

    const asked = await get(f, `/console/audit/events/${id}?reveal=personal`, jar);
    assert.equal(asked.statusCode, 200, asked.body);
    assert.ok(!asked.body.includes('127.0.0.1'), 'nothing revealed by the link alone');
    assert.equal(await revealing(), 0, 'no revealing read on her record');
    assert.match(asked.body, new RegExp(`<form method="post" action="/console/audit/events/${id}/reveal">`), 'a form of the console confirms it');

    assert.equal((await post(f, `/console/audit/events/${id}/reveal`, { csrf_token: 'forged' }, jar)).statusCode, 403, 'the form needs the console’s token');
    assert.equal(await revealing(), 0);
    const confirmed = await post(f, `/console/audit/events/${id}/reveal`, { csrf_token: csrfOf(asked.body) }, jar);
    assert.equal(confirmed.statusCode, 200, confirmed.body);
    assert.match(confirmed.body, /<dt>source_address<\/dt><dd><code>127\.0\.0\.1<\/code><\/dd>/);
    assert.equal(await revealing(), 1, 'the confirmed read is on the record');
  });

  test('a browser that sends no Sec-Fetch-Site is asked to confirm before a bundle is exported in the person’s name', async (t) => {
    const f = await fixture(t);
    const jar = new Jar();
    assert.equal((await signInToConsole(f, jar, 'cora')).path, '/console');
    await sealNow(f.ctx, f.masterKey);
    const cora = sessionIn(f, jar).userId;

    const asked = await get(f, `/console/bundle?subject=${cora}`, jar);
    assert.equal(asked.statusCode, 200, asked.body);
    assert.match(String(asked.headers['content-type']), /^text\/html/, 'a page, not the bundle');
    assert.equal((await f.auditEvents('audit.exported')).length, 0, 'no export on her record');
    assert.match(asked.body, /<form method="post" action="\/console\/bundle">/);
    assert.match(asked.body, new RegExp(`<input type="hidden" name="subject" value="${cora}">`), 'the selection is kept');

    assert.equal((await post(f, '/console/bundle', { csrf_token: 'forged', subject: cora }, jar)).statusCode, 403);
    const confirmed = await post(f, '/console/bundle', { csrf_token: csrfOf(asked.body), subject: cora }, jar);
    assert.equal(confirmed.statusCode, 200, confirmed.body);
    assert.match(String(confirmed.headers['content-disposition']), /^attachment; filename="evidence-/);
    const exported = await f.auditEvents('audit.exported');
    assert.equal(exported.length, 1, 'the confirmed export is on the record');
    assert.equal(exported[0]!.actor, cora);
  });

  test('the directory lists people (a read on the record) only for a request from the console; another site’s link or a browser without Sec-Fetch-Site is offered a form', async (t) => {
    const f = await fixture(t);
    const jar = new Jar();
    assert.equal((await signInToConsole(f, jar, 'cora')).path, '/console');
    const peopleRow = /<tr><td><code>paul<\/code><\/td>/;

    for (const headers of [{}, { 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'navigate' }]) {
      const page = await f.inject({ method: 'GET', url: '/console/directory', headers: { cookie: jar.header(), ...headers } });
      assert.equal(page.statusCode, 200, page.body);
      assert.match(page.body, /Console Broker Ltd/, 'the rest of the directory is there');
      assert.doesNotMatch(page.body, peopleRow, 'no people listed');
      assert.match(page.body, /<form method="post" action="\/console\/directory">/);
    }
    assert.equal((await f.auditEvents('people.reviewed')).length, 0, 'no read of the people on her record');

    const listed = await post(f, '/console/directory', { csrf_token: csrfOf((await get(f, '/console', jar)).body) }, jar);
    assert.equal(listed.statusCode, 200, listed.body);
    assert.match(listed.body, peopleRow);
    assert.equal((await f.auditEvents('people.reviewed')).length, 1);
    assert.equal((await post(f, '/console/directory', { csrf_token: 'forged' }, jar)).statusCode, 403);

    const fromConsole = await f.inject({ method: 'GET', url: '/console/directory', headers: { cookie: jar.header(), ...fromTheConsole } });
    assert.match(fromConsole.body, peopleRow, 'the console’s own link lists them at once');
    assert.equal((await f.auditEvents('people.reviewed')).length, 2);
  });
});

/** The id of the person's latest sign-in event (its source address is a personal field). */
async function lastLoginOf(f: Console, userId: string): Promise<string> {
  const row = await f.ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', 'user.login_succeeded').where('subject', '=', userId).orderBy('seq', 'desc').executeTakeFirstOrThrow();
  return (JSON.parse(row.event) as StoredAuditEvent).id;
}
