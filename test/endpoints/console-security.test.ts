import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { StoredAuditEvent } from '../../src/audit/events.ts';
import { sealNow } from '../../src/audit/lifecycle.ts';
import { findUserByUsername } from '../../src/identity/users.ts';
import { openOrderRequest, useTestKind } from '../approvals/fixture.ts';
import { csrfOf, get, Jar, post } from './people-browser.ts';
import { brokerLei, consoleFixture as fixture, fromTheConsole, getFromConsole, ordersApi, password, sessionIn, signInToConsole, trade, type Console } from './console-fixture.ts';

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
    assert.match(page.body, new RegExp(`<form method="post" action="/console/audit/events/${id}/reveal">`), 'a form of the console reveals them on her click');
    const bundle = await f.inject({ method: 'GET', url: `/console/bundle?subject=${cora}`, headers: { cookie: jar.header(), ...crossSite } });
    assert.equal(bundle.statusCode, 403, bundle.body);
    assert.deepEqual((await reads()).slice(before), [], 'no read of the event, revealing or not, and no export on her record');

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

  test('the directory lists the mandates and the people (reads on the record) only for a request from the console; another site’s link or a browser without Sec-Fetch-Site is offered one form for both', async (t) => {
    const f = await fixture(t);
    await createMandate(f);
    const jar = new Jar();
    assert.equal((await signInToConsole(f, jar, 'cora')).path, '/console');
    const peopleRow = /<tr><td><code>paul<\/code><\/td>/;
    const mandateRow = /<a href="\/console\/mandates\/desk-mandate">/;

    for (const headers of [{}, crossSite]) {
      const page = await f.inject({ method: 'GET', url: '/console/directory', headers: { cookie: jar.header(), ...headers } });
      assert.equal(page.statusCode, 200, page.body);
      assert.match(page.body, /Console Broker Ltd/, 'the rest of the directory is there');
      assert.doesNotMatch(page.body, peopleRow, 'no people listed');
      assert.doesNotMatch(page.body, mandateRow, 'no mandates listed');
      assert.equal([...page.body.matchAll(/<form method="post" action="\/console\/directory"[ >]/g)].length, 1, 'one form lists both');
      assert.match(page.body, /List the mandates and the people/);
    }
    assert.equal((await f.auditEvents('people.reviewed')).length, 0, 'no read of the people on her record');

    const listed = await post(f, '/console/directory', { csrf_token: csrfOf((await get(f, '/console', jar)).body) }, jar);
    assert.equal(listed.statusCode, 200, listed.body);
    assert.match(listed.body, peopleRow);
    assert.match(listed.body, mandateRow);
    assert.deepEqual((await f.auditEvents('people.reviewed')).map((e) => e.details?.via).sort(), ['access-review', 'mandates']);
    assert.equal((await post(f, '/console/directory', { csrf_token: 'forged' }, jar)).statusCode, 403);

    const fromConsole = await f.inject({ method: 'GET', url: '/console/directory', headers: { cookie: jar.header(), ...fromTheConsole } });
    assert.match(fromConsole.body, peopleRow, 'the console’s own link lists them at once');
    assert.match(fromConsole.body, mandateRow);
    assert.equal((await f.auditEvents('people.reviewed')).length, 4);
  });

  // The admin API puts its reads of approval requests, break-glass reviews and mandates on the
  // reader's record (people.reviewed): a link on another site must not do it in her name.
  test('another site’s link or a browser without Sec-Fetch-Site puts no read of the approvals waiting on the approver’s record: the console’s form shows them', async (t) => {
    const f = await fixture(t);
    useTestKind(t, { eligible: async (_ctx, _request, approver) => (approver.username === 'april' ? undefined : 'not an approver of this kind') });
    const tim = (await findUserByUsername(f.ctx, 'tim'))!;
    const request = await openOrderRequest(f.ctx, tim.id);
    await openOrderRequest(f.ctx, tim.id);
    const jar = new Jar();
    assert.equal((await signInToConsole(f, jar, 'april')).path, '/console');
    await assertReadConfirmedFirst(f, jar, '/console/approvals', /<h2 id="a-[^"]+">Large order<\/h2>/, 'approvals');

    // After a decision the console sends her back to the list: without Fetch Metadata, the form keeps what it says.
    const decided = await post(f, `/console/approvals/${request.id}/decision`, { csrf_token: csrfOf((await get(f, '/console', jar)).body), decision: 'approve' }, jar);
    assert.equal(decided.headers.location, '/console/approvals?decided=approve');
    const asked = await get(f, '/console/approvals?decided=approve', jar);
    assert.match(asked.body, /<input type="hidden" name="decided" value="approve">/);
    const shown = await post(f, '/console/approvals', { csrf_token: csrfOf(asked.body), decided: 'approve' }, jar);
    assert.match(shown.body, /Your approval is recorded\./);
  });

  test('another site’s link or a browser without Sec-Fetch-Site puts no read of the break-glass reviews on the compliance officer’s record: the console’s form shows them', async (t) => {
    const f = await fixture(t);
    await openReview(f);
    const jar = new Jar();
    assert.equal((await signInToConsole(f, jar, 'cora')).path, '/console');
    await assertReadConfirmedFirst(f, jar, '/console/reviews', /Account <code>bg-orders<\/code>, activation <code>act-1<\/code>/, 'break-glass');
  });

  test('another site’s link or a browser without Sec-Fetch-Site puts no read of a mandate on the person’s record: the console’s form shows it', async (t) => {
    const f = await fixture(t);
    await createMandate(f);
    const jar = new Jar();
    assert.equal((await signInToConsole(f, jar, 'cora')).path, '/console');
    await assertReadConfirmedFirst(f, jar, '/console/mandates/desk-mandate', /Version 1, <strong>active<\/strong>/, 'mandates');
  });

  // The audit API records each read of events in the reader's name (audit.read: a list of
  // events, an event's proof, a policy version's replay): a link on another site must not do it.
  test('another site’s link or a browser without Sec-Fetch-Site puts no read of the audit log on the person’s record: the console’s form shows the events', async (t) => {
    const f = await fixture(t);
    const txn = await trade(f);
    const jar = new Jar();
    assert.equal((await signInToConsole(f, jar, 'cora')).path, '/console');
    await assertAuditReadConfirmedFirst(f, jar, { url: `/console/audit?txn=${txn}`, action: '/console/audit', fields: { txn }, shown: /<td>token\.issued<\/td>/, reads: 1 });
  });

  test('another site’s link or a browser without Sec-Fetch-Site puts no read of a transaction’s events and proofs on the person’s record: the console’s form shows the chain', async (t) => {
    const f = await fixture(t);
    const txn = await trade(f);
    const jar = new Jar();
    assert.equal((await signInToConsole(f, jar, 'cora')).path, '/console');
    // Its events, then the proof of the one sealed event: two reads each time the chain is shown.
    await assertAuditReadConfirmedFirst(f, jar, { url: `/console/txn?txn=${txn}`, action: '/console/txn', fields: { txn }, shown: /1\. Token issued to desk-algo/, reads: 2, section: 'Transactions' });
    const empty = await f.inject({ method: 'GET', url: '/console/txn', headers: { cookie: jar.header(), ...crossSite } });
    assert.match(empty.body, /<form method="get" action="\/console\/txn"/, 'the search itself reads nothing: shown at once');
  });

  test('another site’s link or a browser without Sec-Fetch-Site puts no read of an audit event and its proof on the person’s record: the console’s form shows it', async (t) => {
    const f = await fixture(t);
    const txn = await trade(f);
    const jar = new Jar();
    assert.equal((await signInToConsole(f, jar, 'cora')).path, '/console');
    const id = (await f.ctx.storage.db.selectFrom('audit_events').select('id').where('txn', '=', txn).executeTakeFirstOrThrow()).id;
    await assertAuditReadConfirmedFirst(f, jar, { url: `/console/audit/events/${id}`, action: `/console/audit/events/${id}`, fields: {}, shown: /<dd id="proof"><span class="verified">✓ verified<\/span>/, reads: 1 });
  });

  test('a policy set version replays the recorded decisions (a read of the audit log on the record) only for a request from the console; another site’s link or a browser without Sec-Fetch-Site is shown the rest and a form for it', async (t) => {
    const f = await fixture(t);
    const permitAll = '@id("all") permit (principal, action, resource);';
    await f.apply({
      policies: [
        { version: 'v1', text: permitAll, change_ref: 'CHG-1', author: 'alice.author', approver: 'bob.approver', active: true },
        { version: 'v2', text: `${permitAll}\n@id("no-orders") forbid (principal, action == Action::"order:create", resource);`, change_ref: 'CHG-2', author: 'alice.author' },
        { version: 'v3', text: permitAll, change_ref: 'CHG-3', author: 'alice.author' },
      ],
    });
    await trade(f);
    const jar = new Jar();
    assert.equal((await signInToConsole(f, jar, 'cora')).path, '/console');
    const reads = async () => (await f.auditEvents('audit.read')).filter((e) => e.actor === sessionIn(f, jar).userId);
    const simulation = /<p id="simulation">Replayed \d+ of the last \d+ recorded decisions: <strong>2 would flip<\/strong>/;

    for (const headers of [{}, crossSite]) {
      const page = await f.inject({ method: 'GET', url: '/console/policies/v2?against=v3', headers: { cookie: jar.header(), ...headers } });
      assert.equal(page.statusCode, 200, page.body);
      assert.match(page.body, /<h2>Compared with <code>v3<\/code><\/h2>/, 'the rest of the page is there');
      assert.match(page.body, /1 line\(s\) added, 0 removed\./);
      assert.doesNotMatch(page.body, /id="simulation"/, 'nothing replayed');
      assert.match(page.body, /<form method="post" action="\/console\/policies\/v2">/, 'a form of the console replays them');
      assert.match(page.body, /<input type="hidden" name="against" value="v3">/, 'the comparison asked for is kept');
    }
    assert.equal((await reads()).length, 0, 'no read on her record');

    assert.equal((await post(f, '/console/policies/v2', { csrf_token: 'forged', against: 'v3' }, jar)).statusCode, 403, 'the form needs the console’s token');
    assert.equal((await reads()).length, 0);
    const confirmed = await post(f, '/console/policies/v2', { csrf_token: csrfOf((await get(f, '/console', jar)).body), against: 'v3' }, jar);
    assert.equal(confirmed.statusCode, 200, confirmed.body);
    assert.match(confirmed.body, simulation);
    assert.match(confirmed.body, /<h2>Compared with <code>v3<\/code><\/h2>/);
    assert.equal((await reads()).length, 1, 'the confirmed replay is on the record, once');

    const fromConsole = await getFromConsole(f, '/console/policies/v2', jar);
    assert.match(fromConsole.body, simulation, 'the console’s own link replays at once');
    assert.equal((await reads()).length, 2);
  });

  test('a role whose token may not read the approvals is told so at once, whatever the link: the API refuses and records nothing', async (t) => {
    const f = await fixture(t);
    const jar = new Jar();
    assert.equal((await signInToConsole(f, jar, 'cora')).path, '/console');
    const refused = await f.inject({ method: 'GET', url: '/console/approvals', headers: { cookie: jar.header(), ...crossSite } });
    assert.equal(refused.statusCode, 403, refused.body);
    assert.match(refused.body, /Your roles do not allow this/);
    assert.equal((await f.auditEvents('people.reviewed')).length, 0);
  });
});

/** What a current browser sends for a link followed from another site's page (Fetch Metadata). */
const crossSite = { 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'navigate' } as const;

/**
 * A console page whose admin-API read is on the person's record (`people.reviewed`, `via`): another
 * site's link and a browser without Sec-Fetch-Site get a form of the console's and nothing is read;
 * the form posted with the console's CSRF token shows it and records the read in her name; a link
 * on the console itself (same-origin) shows it at once.
 */
async function assertReadConfirmedFirst(f: Console, jar: Jar, path: string, shown: RegExp, via: string): Promise<void> {
  const reads = async () => (await f.auditEvents('people.reviewed')).filter((e) => e.details?.via === via);
  for (const headers of [{}, crossSite]) {
    const page = await f.inject({ method: 'GET', url: path, headers: { cookie: jar.header(), ...headers } });
    assert.equal(page.statusCode, 200, page.body);
    assert.doesNotMatch(page.body, shown, `${path} shows nothing it reads`);
    assert.match(page.body, new RegExp(`<form method="post" action="${path}">`), 'a form of the console shows it');
  }
  assert.equal((await reads()).length, 0, `no read on her record for ${path}`);

  assert.equal((await post(f, path, { csrf_token: 'forged' }, jar)).statusCode, 403, 'the form needs the console’s token');
  assert.equal((await reads()).length, 0);
  const confirmed = await post(f, path, { csrf_token: csrfOf((await get(f, path, jar)).body) }, jar);
  assert.equal(confirmed.statusCode, 200, confirmed.body);
  assert.match(confirmed.body, shown);
  const recorded = await reads();
  assert.equal(recorded.length, 1, 'the confirmed read is on the record');
  assert.equal(recorded[0]!.actor, sessionIn(f, jar).userId, 'in her name');

  const fromConsole = await getFromConsole(f, path, jar);
  assert.equal(fromConsole.statusCode, 200, fromConsole.body);
  assert.match(fromConsole.body, shown, 'the console’s own link shows it at once');
  assert.equal((await reads()).length, 2);
}

/**
 * A console page whose admin-API reads the audit API records in the person's name (`audit.read`):
 * another site's link and a browser without Sec-Fetch-Site get a form of the console's, posting to
 * `action` what the GET asked (`fields`), and nothing is read; the form posted with the console's
 * CSRF token shows the page and records its `reads` once; a link on the console itself
 * (same-origin) shows it at once and records them again.
 */
async function assertAuditReadConfirmedFirst(f: Console, jar: Jar, page: { url: string; action: string; fields: Record<string, string>; shown: RegExp; reads: number; section?: string }): Promise<void> {
  const reads = async () => (await f.auditEvents('audit.read')).filter((e) => e.actor === sessionIn(f, jar).userId);
  for (const headers of [{}, crossSite]) {
    const asked = await f.inject({ method: 'GET', url: page.url, headers: { cookie: jar.header(), ...headers } });
    assert.equal(asked.statusCode, 200, asked.body);
    assert.doesNotMatch(asked.body, page.shown, `${page.url} shows nothing it reads`);
    assert.match(asked.body, new RegExp(`<form method="post" action="${page.action}">`), 'a form of the console shows it');
    for (const [name, value] of Object.entries(page.fields)) assert.match(asked.body, new RegExp(`<input type="hidden" name="${name}" value="${value}">`), `the form keeps ${name}`);
    assert.match(asked.body, new RegExp(`aria-current="page">${page.section ?? 'Audit log'}</a>`), 'in its section of the console');
  }
  assert.equal((await reads()).length, 0, `no read on her record for ${page.url}`);

  assert.equal((await post(f, page.action, { csrf_token: 'forged', ...page.fields }, jar)).statusCode, 403, 'the form needs the console’s token');
  assert.equal((await reads()).length, 0);
  const confirmed = await post(f, page.action, { csrf_token: csrfOf((await get(f, '/console', jar)).body), ...page.fields }, jar);
  assert.equal(confirmed.statusCode, 200, confirmed.body);
  assert.match(confirmed.body, page.shown);
  assert.equal((await reads()).length, page.reads, 'the confirmed reads are on the record, once');

  const fromConsole = await getFromConsole(f, page.url, jar);
  assert.equal(fromConsole.statusCode, 200, fromConsole.body);
  assert.match(fromConsole.body, page.shown, 'the console’s own link shows it at once');
  assert.equal((await reads()).length, 2 * page.reads);
}

/** A mandate of the broker's (the fixture's legal entity) to its client desk-algo, created through the admin API. */
async function createMandate(f: Console): Promise<void> {
  const admin = await f.accessToken('admin-ops', { resource: `${f.issuer}/admin` });
  const created = await f.inject({
    method: 'POST',
    url: '/admin/mandates',
    headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
    payload: JSON.stringify({ id: 'desk-mandate', grantor: { lei: brokerLei }, grantee: { client_id: 'desk-algo' }, scopes: ['order:create'], legal_basis: { reference: 'Desk approval DA-1' }, effective_from: '2020-01-01T00:00:00Z', accepted_by: 'head-of-desk' }),
  });
  assert.equal(created.statusCode, 201, created.body);
}

/** An ended break-glass activation of Tim's and its review, open. */
async function openReview(f: Console): Promise<void> {
  const tim = (await findUserByUsername(f.ctx, 'tim'))!;
  const now = f.clock.now();
  const db = f.ctx.storage.db;
  await db.insertInto('break_glass_accounts').values({ name: 'bg-orders', scopes: '["order:create"]', audience: ordersApi, activation_seconds: 600, custodians: null, created_at: now, updated_at: now }).execute();
  await db.insertInto('break_glass_activations').values({ id: 'act-1', account: 'bg-orders', requester: tim.id, reason: 'venue outage', scopes: '["order:create"]', audience: ordersApi, starts_at: now - 600_000, ends_at: now - 1000, in_force_account: null, ended_at: now - 1000, end_reason: 'expired' }).execute();
  await db.insertInto('break_glass_reviews').values({ activation_id: 'act-1', account: 'bg-orders', opened_at: now - 1000, closed_at: null, closed_by: null, note: null }).execute();
}

/** The id of the person's latest sign-in event (its source address is a personal field). */
async function lastLoginOf(f: Console, userId: string): Promise<string> {
  const row = await f.ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', 'user.login_succeeded').where('subject', '=', userId).orderBy('seq', 'desc').executeTakeFirstOrThrow();
  return (JSON.parse(row.event) as StoredAuditEvent).id;
}
