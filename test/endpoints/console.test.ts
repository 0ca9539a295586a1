import assert from 'node:assert/strict';
import { seedDestination } from '../transfers/enforcement-fixture.ts';
import { describe, test } from 'node:test';
import { verifyBundle } from '../../src/audit/bundle.ts';
import { consoleClientId } from '../../src/console/client.ts';
import { csrfOf, get, Jar, post } from './people-browser.ts';
import { assertSectionRefused, consoleFixture as fixture, getFromConsole, ordersApi, password, sessionIn, signInToConsole, trade } from './console-fixture.ts';
import { decisionsOf, findApprovalRequest } from '../../src/approvals/requests.ts';
import { findUserByUsername } from '../../src/identity/users.ts';
import { openOrderRequest, useTestKind } from '../approvals/fixture.ts';
import { exampleEntities } from '../policy/fixture.ts';
import { partnerKey } from '../federation/fixture.ts';

// The console (src/endpoints/console, docs/console.md) from the outside: a person signs in through
// Clearance's own code flow in two steps, gets a token with their console roles' scopes at their
// roles' level, and reads the audit log and a trade's chain through the admin API with it.

describe('the console', () => {
  test('is a registered confidential client of its own issuer (private_key_jwt), redirecting only to /console/callback', async (t) => {
    const f = await fixture(t);
    const client = (await f.ctx.clients.get(consoleClientId))!;
    assert.equal(client.metadata.token_endpoint_auth_method, 'private_key_jwt');
    assert.deepEqual(client.metadata.redirect_uris, [`${f.issuer}/console/callback`]);
  });

  test('apply and the admin API cannot rewrite the console’s client: its id is reserved', async (t) => {
    const f = await fixture(t);
    const token = await f.accessToken('admin-ops', { resource: `${f.issuer}/admin`, scope: 'admin:write' });
    const hijack = await f.inject({
      method: 'PATCH',
      url: `/admin/clients/${consoleClientId}`,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/merge-patch+json' },
      payload: JSON.stringify({ redirect_uris: ['https://attacker.example/cb'] }),
    });
    assert.equal(hijack.statusCode, 400, hijack.body);
    assert.match(hijack.json().error_description, /reserved for Clearance itself/);
    assert.deepEqual((await f.ctx.clients.get(consoleClientId))!.metadata.redirect_uris, [`${f.issuer}/console/callback`]);
  });

  test('a compliance officer signs in with a passkey in two steps and holds only her roles’ scopes, at the phishing-resistant level', async (t) => {
    const f = await fixture(t);
    const jar = new Jar();
    const { response, path, sawPages } = await signInToConsole(f, jar, 'cora');
    assert.equal(path, '/console', `ended at ${path}: ${response.body}`);
    assert.equal(response.statusCode, 200);
    assert.deepEqual(sawPages, ['password', 'consent', 'passkey', 'consent'], 'who she is (password), then her roles’ level (passkey)');
    assert.match(response.body, /Signed in as <strong>cora<\/strong> at level <code>urn:clearance:acr:phr<\/code>/);
    assert.equal(response.headers['cache-control'], 'no-store');
    const session = sessionIn(f, jar);
    assert.deepEqual(session.roles, ['compliance']);
    assert.deepEqual(session.scopes, ['admin:read', 'audit:hold', 'audit:read', 'reviews:close', 'screening:decide']);

    // The token is the person's own, and the admin API refuses it what her roles do not allow.
    const change = await f.inject({ method: 'PATCH', url: '/admin/clients/desk-algo', headers: { authorization: `Bearer ${session.accessToken}`, 'content-type': 'application/merge-patch+json' }, payload: JSON.stringify({ scope: 'order:create' }) });
    assert.equal(change.statusCode, 403);
    assert.equal(change.json().error, 'insufficient_scope');
  });

  test('a person with a console role but only a password is never shown the console', async (t) => {
    const f = await fixture(t);
    const jar = new Jar();
    const { response, sawPages } = await signInToConsole(f, jar, 'paul');
    assert.deepEqual(sawPages, ['password', 'consent', 'decline']);
    assert.equal(response.statusCode, 403, response.body);
    assert.match(response.body, /Sign-in refused/);
    assert.equal(jar.cookies.has('clearance_console'), false);
  });

  test('a person without a console role is refused after saying who they are, before any admin scope is asked', async (t) => {
    const f = await fixture(t);
    const jar = new Jar();
    const { response, sawPages } = await signInToConsole(f, jar, 'tim');
    assert.deepEqual(sawPages, ['password', 'consent']);
    assert.equal(response.statusCode, 403);
    assert.match(response.body, /No console role/);
    const grants = await f.ctx.storage.db.selectFrom('grants').select('resources').where('client_id', '=', consoleClientId).execute();
    assert.equal(grants.length, 1);
    assert.deepEqual(JSON.parse(grants[0]!.resources), {}, 'no grant of an admin scope: openid only');
  });

  test('compliance finds a trade by its txn, sees each hop verified against the signed checkpoint, and downloads a bundle that verifies offline', async (t) => {
    const f = await fixture(t);
    const txn = await trade(f);
    const jar = new Jar();
    assert.equal((await signInToConsole(f, jar, 'cora')).path, '/console');

    const audit = await getFromConsole(f, `/console/audit?txn=${encodeURIComponent(txn)}`, jar);
    assert.equal(audit.statusCode, 200, audit.body);
    assert.match(audit.body, /token\.issued/);
    assert.match(audit.body, /Audit key fingerprint<\/dt><dd class="mono">[0-9a-f]{64}</);
    assert.match(audit.body, /<dd id="last-verify">never \(<code>clearance audit verify<\/code>\)<\/dd>/);
    await f.ctx.audit.record({ type: 'audit.verified', actor: 'cli:ops', decision: { allow: true, reasons: ['intact'] }, details: { ok: true, leaves: 9, tree_size: 9 } });
    assert.match((await getFromConsole(f, '/console/audit', jar)).body, /<dd id="last-verify"><span class="verified">✓ intact<\/span>, tree size 9, <a href="\/console\/audit\/events\/[0-9a-f-]+">[^<]+<\/a> by <code>cli:ops<\/code><\/dd>/);
    assert.match(audit.body, new RegExp(`<a href="/console/bundle\\?txn=${txn}">Download the evidence bundle of this selection</a>`));

    const view = await getFromConsole(f, `/console/txn?txn=${encodeURIComponent(txn)}`, jar);
    assert.equal(view.statusCode, 200, view.body);
    assert.match(view.body, /<svg class="chain"[^>]*role="img"/);
    assert.match(view.body, /1\. Token issued to desk-algo/);
    assert.match(view.body, /<p id="evidence-summary">1 of 1 event\(s\) verified against the latest signed checkpoint\.<\/p>/);
    assert.match(view.body, /✓ verified/);

    const bundle = await getFromConsole(f, `/console/bundle?txn=${encodeURIComponent(txn)}`, jar);
    assert.equal(bundle.statusCode, 200, bundle.body);
    assert.match(String(bundle.headers['content-disposition']), /^attachment; filename="evidence-/);
    const report = verifyBundle(bundle.body);
    assert.equal(report.ok, true, JSON.stringify(report));
    assert.equal(report.events, 1);
    const exported = await f.ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', 'audit.exported').execute();
    assert.equal(exported.length, 1, 'the export is audited');
    assert.equal(JSON.parse(exported[0]!.event).actor, sessionIn(f, jar).userId, 'with the person who exported');
  });

  test('the dashboard draws the audit log’s activity: tokens issued and refused per interval, refusals by reason, approvals waiting, the seal', async (t) => {
    const f = await fixture(t);
    await trade(f);
    // Two refusals: a scope the client does not have, and an audience nobody registered.
    await f.post('/token', { auth: f.basic('desk-algo'), form: { grant_type: 'client_credentials', scope: 'admin:write', resource: ordersApi } });
    await f.post('/token', { auth: f.basic('desk-algo'), form: { grant_type: 'client_credentials', scope: 'order:create', resource: 'https://nowhere.example/api' } });
    const jar = new Jar();
    assert.equal((await signInToConsole(f, jar, 'cora')).path, '/console');
    // Every token so far — the trade's, and the fixture's and the console's own sign-ins — counts.
    const issued = (await f.ctx.storage.db.selectFrom('audit_events').select('id').where('type', 'in', ['token.issued', 'token.exchanged']).execute()).length;
    assert.match((await get(f, '/console', jar)).body, /href="\/console\/dashboard"/);

    const page = await get(f, '/console/dashboard?range=1h', jar);
    assert.equal(page.statusCode, 200, page.body);
    assert.match(page.body, /<option value="1h" selected>Last hour<\/option>/);
    assert.match(page.body, new RegExp(`<h2 id="s-issued">Tokens issued and exchanged <span class="muted">\\(${issued}\\)</span></h2>`));
    assert.match(page.body, /<h2 id="s-refused">Token requests refused <span class="muted">\(2\)<\/span><\/h2>/);
    assert.match(page.body, new RegExp(`<svg class="bars"[^>]*role="img" aria-labelledby="c-issued-title">\\s*<title id="c-issued-title">Tokens issued and exchanged: ${issued} in all`));
    assert.match(page.body, /<h2 id="s-reasons">Refusals by reason<\/h2>/);
    assert.match(page.body, /<td><code>invalid_scope<\/code><\/td><td>1<\/td>/);
    assert.match(page.body, /<td><code>invalid_target<\/code><\/td><td>1<\/td>/);
    assert.match(page.body, /<dt>Approvals waiting<\/dt><dd>0<\/dd>/);
    assert.match(page.body, /<dt>Latest signed checkpoint<\/dt><dd>tree size \d+/);
    assert.match(page.body, /in intervals of 5 min/);
    // An unknown period is the default one, not an error.
    assert.match((await get(f, '/console/dashboard?range=forever', jar)).body, /<option value="24h" selected>/);

    await assertSectionRefused(f, 'april', 'dashboard');
  });

  test('an approver decides the requests waiting for her through the admin API; a denial needs its reason, and an old sign-in must be renewed', async (t) => {
    const f = await fixture(t);
    // The test kind: April may decide (she is its only eligible approver), nobody else.
    useTestKind(t, { eligible: async (_ctx, _request, approver) => (approver.username === 'april' ? undefined : 'not an approver of this kind') });
    const tim = (await findUserByUsername(f.ctx, 'tim'))!;
    const first = await openOrderRequest(f.ctx, tim.id);
    const second = await openOrderRequest(f.ctx, tim.id);
    const jar = new Jar();
    assert.equal((await signInToConsole(f, jar, 'april')).path, '/console');
    assert.match((await get(f, '/console', jar)).body, /href="\/console\/approvals"/);

    // Followed from the console's own link (Sec-Fetch-Site same-origin): the list, a read on her record, is shown at once.
    const page = await getFromConsole(f, '/console/approvals', jar);
    assert.equal(page.statusCode, 200, page.body);
    assert.equal([...page.body.matchAll(/<h2 id="a-[^"]+">Large order<\/h2>/g)].length, 2);
    assert.match(page.body, /<dt>Order<\/dt><dd>Order 7781 for ACC-7781<\/dd>/);
    const csrf = csrfOf(page.body);

    const approved = await post(f, `/console/approvals/${first.id}/decision`, { csrf_token: csrf, decision: 'approve' }, jar);
    assert.equal(approved.statusCode, 303, approved.body);
    assert.equal(approved.headers.location, '/console/approvals?decided=approve');
    assert.equal((await findApprovalRequest(f.ctx.storage.db, first.id))!.status, 'approved');
    const decisions = await decisionsOf(f.ctx.storage.db, first.id);
    assert.deepEqual(decisions.map((d) => [d.approver, d.decision, d.method]), [[sessionIn(f, jar).userId, 'approve', 'token']]);
    const after = await getFromConsole(f, '/console/approvals?decided=approve', jar);
    assert.match(after.body, /Your approval is recorded\./);
    assert.equal([...after.body.matchAll(/Large order<\/h2>/g)].length, 1, 'the decided request waits no more');

    const noReason = await post(f, `/console/approvals/${second.id}/decision`, { csrf_token: csrf, decision: 'deny', reason: '  ' }, jar);
    assert.equal(noReason.statusCode, 400, noReason.body);
    assert.match(noReason.body, /Not decided: .*reason/);
    assert.equal((await findApprovalRequest(f.ctx.storage.db, second.id))!.status, 'pending');
    const forged = await post(f, `/console/approvals/${second.id}/decision`, { csrf_token: 'forged', decision: 'approve' }, jar);
    assert.equal(forged.statusCode, 403);
    assert.equal((await findApprovalRequest(f.ctx.storage.db, second.id))!.status, 'pending', 'a forged form decides nothing');

    // Six minutes on, the console signs in again without a page (her Clearance session lasts),
    // but a decision needs an authentication of the last five minutes.
    f.clock.advance(6 * 60_000);
    assert.equal((await signInToConsole(f, jar, 'april')).path, '/console');
    const stale = await post(f, `/console/approvals/${second.id}/decision`, { csrf_token: csrfOf((await get(f, '/console/approvals', jar)).body), decision: 'approve' }, jar);
    assert.equal(stale.statusCode, 401, stale.body);
    assert.match(stale.body, /a decision needs a fresh one/);
    assert.match(stale.body, /href="\/console\/sign-in\?fresh=1&amp;return=%2Fconsole%2Fapprovals"/);
    const fresh = await get(f, '/console/sign-in?fresh=1&return=%2Fconsole%2Fapprovals', new Jar());
    assert.equal(new URL(String(fresh.headers.location)).searchParams.get('prompt'), 'login', 'a fresh sign-in asks for the login again');

    // Compliance holds no approvals:decide: no link, and the page says so.
    await assertSectionRefused(f, 'cora', 'approvals');
  });

  test('compliance closes a break-glass review with a note; an administrator sees it but cannot close it', async (t) => {
    const f = await fixture(t);
    const tim = (await findUserByUsername(f.ctx, 'tim'))!;
    const now = f.clock.now();
    const db = f.ctx.storage.db;
    // An activation requested by Tim that ended, and its review, open.
    await db.insertInto('break_glass_accounts').values({ name: 'bg-orders', scopes: '["order:create"]', audience: ordersApi, activation_seconds: 600, custodians: null, created_at: now, updated_at: now }).execute();
    await db.insertInto('break_glass_activations').values({ id: 'act-1', account: 'bg-orders', requester: tim.id, reason: 'venue outage', scopes: '["order:create"]', audience: ordersApi, starts_at: now - 600_000, ends_at: now - 1000, in_force_account: null, ended_at: now - 1000, end_reason: 'expired' }).execute();
    await db.insertInto('break_glass_reviews').values({ activation_id: 'act-1', account: 'bg-orders', opened_at: now - 1000, closed_at: null, closed_by: null, note: null }).execute();

    const ada = new Jar();
    assert.equal((await signInToConsole(f, ada, 'ada')).path, '/console');
    assert.doesNotMatch((await get(f, '/console', ada)).body, /href="\/console\/reviews"/, 'no link for an administrator');
    const seen = await getFromConsole(f, '/console/reviews', ada);
    assert.equal(seen.statusCode, 200, seen.body);
    assert.match(seen.body, /Account <code>bg-orders<\/code>, activation <code>act-1<\/code>/);
    assert.match(seen.body, /Only compliance closes reviews\./);
    assert.doesNotMatch(seen.body, /Close the review/);
    const forced = await post(f, '/console/reviews/act-1/close', { csrf_token: csrfOf((await get(f, '/console', ada)).body), note: 'looks fine' }, ada);
    assert.equal(forced.statusCode, 403, forced.body);
    assert.match(forced.body, /Not closed: Your roles do not allow this/);
    assert.equal((await db.selectFrom('break_glass_reviews').select('closed_at').where('activation_id', '=', 'act-1').executeTakeFirstOrThrow()).closed_at, null);

    const cora = new Jar();
    assert.equal((await signInToConsole(f, cora, 'cora')).path, '/console');
    assert.match((await get(f, '/console', cora)).body, /href="\/console\/reviews"/);
    const page = await getFromConsole(f, '/console/reviews', cora);
    assert.match(page.body, /Close the review/);
    const empty = await post(f, '/console/reviews/act-1/close', { csrf_token: csrfOf(page.body), note: '   ' }, cora);
    assert.equal(empty.statusCode, 400, empty.body);
    assert.match(empty.body, /Not closed: a note of 1 to 2000 characters is required/);
    const closed = await post(f, '/console/reviews/act-1/close', { csrf_token: csrfOf(page.body), note: 'INC-42: outage confirmed, orders reconciled' }, cora);
    assert.equal(closed.statusCode, 303, closed.body);
    const after = await getFromConsole(f, '/console/reviews?closed=1', cora);
    assert.match(after.body, /The review is closed\./);
    assert.match(after.body, /<h2>Open <span class="muted">\(0\)<\/span><\/h2>/);
    assert.match(after.body, new RegExp(`<td><code>${sessionIn(f, cora).userId}</code></td><td>INC-42: outage confirmed, orders reconciled</td>`));
    assert.equal((await f.auditEvents('break_glass.review_closed')).length, 1);
  });

  test('a policy set version shows its diff and what it would flip; an administrator activates it as the second person, never as its author, and compliance is offered no form', async (t) => {
    const f = await fixture(t);
    const permitAll = '@id("all") permit (principal, action, resource);';
    await f.apply({
      policies: [
        { version: 'v1', text: permitAll, change_ref: 'CHG-1', author: 'alice.author', approver: 'bob.approver', active: true },
        { version: 'v2', text: `${permitAll}\n@id("no-orders") forbid (principal, action == Action::"order:create", resource);`, change_ref: 'CHG-2', author: 'alice.author' },
        { version: 'v3', text: permitAll, change_ref: 'CHG-3', author: 'ada' },
      ],
    });
    await trade(f);

    const cora = new Jar();
    assert.equal((await signInToConsole(f, cora, 'cora')).path, '/console');
    assert.match((await get(f, '/console/directory', cora)).body, /<a href="\/console\/policies\/v2"><code>v2<\/code><\/a>/);
    const page = await getFromConsole(f, '/console/policies/v2', cora);
    assert.equal(page.statusCode, 200, page.body);
    // The trade's two decisions (its audience and its instrument) were allowed by v1; v2 denies both.
    assert.match(page.body, /<p id="simulation">Replayed \d+ of the last \d+ recorded decisions: <strong>2 would flip<\/strong> \(2 allow → deny, 0 deny → allow\)/);
    assert.match(page.body, /<td><code>order:create<\/code><\/td><td><code>Instrument::&quot;DE0001102580&quot;<\/code><\/td><td>allow \(all @ v1\)<\/td><td>deny \(no-orders\)<\/td>/);
    assert.match(page.body, /<h2>Compared with <code>v1<\/code><\/h2>/, 'with the active version by default');
    assert.match(page.body, /1 line\(s\) added, 0 removed\./);
    assert.match(page.body, /<span class="added">\+ @id\(&quot;no-orders&quot;\) forbid/);
    assert.doesNotMatch(page.body, /Activate v2/, 'compliance cannot change anything');
    const forced = await post(f, '/console/policies/v2/activate', { csrf_token: csrfOf(page.body) }, cora);
    assert.equal(forced.statusCode, 403, forced.body);
    assert.match(forced.body, /Not activated: Your roles do not allow this/);

    const ada = new Jar();
    assert.equal((await signInToConsole(f, ada, 'ada')).path, '/console');
    const own = await get(f, '/console/policies/v3', ada);
    assert.match(own.body, /Activate v3/);
    const refused = await post(f, '/console/policies/v3/activate', { csrf_token: csrfOf(own.body) }, ada);
    assert.equal(refused.statusCode, 403, refused.body);
    assert.match(refused.body, /Not activated: .*must not be the author/);
    const activated = await post(f, '/console/policies/v2/activate', { csrf_token: csrfOf(own.body) }, ada);
    assert.equal(activated.statusCode, 303, activated.body);
    assert.equal((await f.ctx.policies.list()).find((p) => p.active)?.version, 'v2');
    const [event] = (await f.auditEvents('policy.activated')).filter((e) => e.details?.version === 'v2');
    assert.deepEqual([event!.actor, event!.details?.approver, event!.details?.author], [sessionIn(f, ada).userId, 'ada', 'alice.author']);
    assert.match((await get(f, '/console/policies/v2?done=activated', ada)).body, /<dt>Status<\/dt><dd><strong>active<\/strong>/);
  });

  test('activating a policy set with a sign-in more than 5 minutes old is refused by the admin API, and the console sends the person to sign in again, back to the version', async (t) => {
    const f = await fixture(t);
    const permitAll = '@id("all") permit (principal, action, resource);';
    await f.apply({
      policies: [
        { version: 'v1', text: permitAll, change_ref: 'CHG-1', author: 'alice.author', approver: 'bob.approver', active: true },
        { version: '2026-02.1', text: `${permitAll}\n@id("no-orders") forbid (principal, action == Action::"order:create", resource);`, change_ref: 'CHG-2', author: 'alice.author' },
      ],
    });
    const ada = new Jar();
    assert.equal((await signInToConsole(f, ada, 'ada')).path, '/console');
    // Six minutes on, the console signs in again without a page (her Clearance session lasts), but
    // activating a policy set needs an authentication of the last five minutes.
    f.clock.advance(6 * 60_000);
    assert.equal((await signInToConsole(f, ada, 'ada')).path, '/console');
    const page = await get(f, '/console/policies/2026-02.1', ada);
    assert.match(page.body, /Activate 2026-02\.1/);
    const stale = await post(f, '/console/policies/2026-02.1/activate', { csrf_token: csrfOf(page.body) }, ada);
    assert.equal(stale.statusCode, 401, stale.body);
    assert.match(stale.body, /Not activated: .*last 5 minutes/);
    assert.match(stale.body, /href="\/console\/sign-in\?fresh=1&amp;return=%2Fconsole%2Fpolicies%2F2026-02\.1"/);
    assert.equal((await f.ctx.policies.list()).find((p) => p.active)?.version, 'v1', 'nothing was activated');

    // The link asks Clearance for the login again (prompt=login), then the roles' level, and comes back to the version.
    const fresh = await get(f, '/console/sign-in?fresh=1&return=%2Fconsole%2Fpolicies%2F2026-02.1', new Jar());
    assert.equal(new URL(String(fresh.headers.location)).searchParams.get('prompt'), 'login', 'a fresh sign-in asks for the login again');
    const again = await signInToConsole(f, ada, 'ada', '/console/sign-in?fresh=1&return=%2Fconsole%2Fpolicies%2F2026-02.1');
    assert.equal(again.path, '/console/policies/2026-02.1');
    assert.ok(again.sawPages.includes('password'), `the person typed her password again: ${again.sawPages.join(', ')}`);
    const activated = await post(f, '/console/policies/2026-02.1/activate', { csrf_token: csrfOf(again.response.body) }, ada);
    assert.equal(activated.statusCode, 303, activated.body);
    assert.equal((await f.ctx.policies.list()).find((p) => p.active)?.version, '2026-02.1');
  });

  test('a mandate shows every version and what each changed, and an administrator revokes it through the admin API', async (t) => {
    const f = await fixture(t);
    const admin = await f.accessToken('admin-ops', { resource: `${f.issuer}/admin` });
    const api = (url: string, body: unknown) => f.inject({ method: 'POST', url, headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' }, payload: JSON.stringify(body) });
    await f.apply(exampleEntities());
    const terms = { grantor: { lei: '5493001KJTIIGC8Y1R12' }, grantee: { client_id: 'desk-algo' }, scopes: ['order:create'], legal_basis: { reference: 'Desk approval DA-1' }, effective_from: '2020-01-01T00:00:00Z' };
    const created = await api('/admin/mandates', { id: 'desk-mandate', ...terms, accepted_by: 'head-of-desk' });
    assert.equal(created.statusCode, 201, created.body);
    f.clock.advance(60_000);
    const amended = await api('/admin/mandates/desk-mandate/amend', { version: 1, ...terms, constraints: { venues: ['XLON'] }, accepted_by: 'head-of-desk', accepted_at: new Date(f.clock.now()).toISOString() });
    assert.equal(amended.statusCode, 200, amended.body);

    const cora = new Jar();
    assert.equal((await signInToConsole(f, cora, 'cora')).path, '/console');
    const seen = await getFromConsole(f, '/console/mandates/desk-mandate', cora);
    assert.equal(seen.statusCode, 200, seen.body);
    assert.match(seen.body, /<h3 id="v-2">Version 1 → 2<\/h3>/);
    assert.match(seen.body, /<tr><td>status<\/td><td><code>superseded<\/code><\/td><td><code>active<\/code><\/td><\/tr>/);
    assert.match(seen.body, /<tr><td>constraints<\/td><td><code>\{\}<\/code><\/td><td><code>\{&quot;venues&quot;:\[&quot;XLON&quot;\]\}<\/code><\/td><\/tr>/);
    assert.doesNotMatch(seen.body, /<tr><td>scopes<\/td>/, 'what did not change is not listed');
    assert.doesNotMatch(seen.body, /Revoke mandate/, 'compliance is offered no revocation');

    const ada = new Jar();
    assert.equal((await signInToConsole(f, ada, 'ada')).path, '/console');
    const page = await getFromConsole(f, '/console/mandates/desk-mandate', ada);
    assert.match(page.body, /Revoke mandate desk-mandate/);
    const noReason = await post(f, '/console/mandates/desk-mandate/revoke', { csrf_token: csrfOf(page.body), reason: ' ' }, ada);
    assert.equal(noReason.statusCode, 400, noReason.body);
    assert.match(noReason.body, /Not revoked: /);
    const revoked = await post(f, '/console/mandates/desk-mandate/revoke', { csrf_token: csrfOf(page.body), reason: 'desk closed' }, ada);
    assert.equal(revoked.statusCode, 303, revoked.body);
    const after = await getFromConsole(f, '/console/mandates/desk-mandate?done=revoked', ada);
    assert.match(after.body, /Version 2, <strong>revoked<\/strong>/);
    assert.doesNotMatch(after.body, /Revoke mandate/);
    const [event] = await f.auditEvents('mandate.revoked');
    assert.match(JSON.stringify(event), /desk closed/, 'the revocation is on the record with its reason');
  });

  test('a partner’s page shows its trust profile, its drift status and the partner check run now', async (t) => {
    const f = await fixture(t);
    const key = await partnerKey('acme-2025');
    await f.apply({
      partners: [{ id: 'acme', issuer: 'http://127.0.0.1:9', allow_private_network: true, jwks: { keys: [key.jwk] }, algorithms: ['ES256'], allowed_audiences: [ordersApi], allowed_scopes: ['order:create'] }],
    });
    const cora = new Jar();
    assert.equal((await signInToConsole(f, cora, 'cora')).path, '/console');
    assert.match((await get(f, '/console/directory', cora)).body, /<a href="\/console\/partners\/acme"><code>acme<\/code><\/a>/);
    const page = await get(f, '/console/partners/acme', cora);
    assert.equal(page.statusCode, 200, page.body);
    assert.match(page.body, /<dt>issuer<\/dt><dd><code>http:\/\/127\.0\.0\.1:9<\/code><\/dd>/);
    assert.match(page.body, /<dt>Status<\/dt><dd>unchecked<\/dd>/);
    assert.doesNotMatch(page.body, /check-result/, 'the check fetches the partner: only when asked, by a form');
    // The check sends requests to the partner's servers: admin:write's (an administrator), not a compliance reader's.
    const notCora = await post(f, '/console/partners/acme/check', { csrf_token: csrfOf(page.body) }, cora);
    assert.doesNotMatch(notCora.body, /check-result/, notCora.body);
    assert.match(notCora.body, /Your roles do not allow this/);
    const ada = new Jar();
    assert.equal((await signInToConsole(f, ada, 'ada')).path, '/console');
    const adaPage = await get(f, '/console/partners/acme', ada);
    const checked = await post(f, '/console/partners/acme/check', { csrf_token: csrfOf(adaPage.body) }, ada);
    assert.equal(checked.statusCode, 200, checked.body);
    assert.match(checked.body, /<p id="check-result">Every rule passes\.<\/p>/);
    assert.match(checked.body, /<tr><td>pass<\/td><td>algorithm ES256<\/td>/);
    assert.equal((await post(f, '/console/partners/acme/check', { csrf_token: 'forged' }, ada)).statusCode, 403);
    assert.equal((await get(f, '/console/partners/nobody', cora)).statusCode, 404);
  });

  test('offers the partner check only to a role that may run it (admin:write): a compliance reader’s page has no such form, an administrator’s has', async (t) => {
    const f = await fixture(t);
    const key = await partnerKey('acme-2025');
    await f.apply({
      partners: [{ id: 'acme', issuer: 'http://127.0.0.1:9', allow_private_network: true, jwks: { keys: [key.jwk] }, algorithms: ['ES256'], allowed_audiences: [ordersApi], allowed_scopes: ['order:create'] }],
    });
    const checkForm = /<form method="post" action="\/console\/partners\/acme\/check">/;
    const cora = new Jar();
    assert.equal((await signInToConsole(f, cora, 'cora')).path, '/console');
    const coraPage = await get(f, '/console/partners/acme', cora);
    assert.equal(coraPage.statusCode, 200, coraPage.body);
    assert.doesNotMatch(coraPage.body, checkForm, 'no form the admin API would refuse');
    assert.doesNotMatch(coraPage.body, /Run the partner check/);
    const ada = new Jar();
    assert.equal((await signInToConsole(f, ada, 'ada')).path, '/console');
    assert.match((await get(f, '/console/partners/acme', ada)).body, checkForm);
  });

  test('an event page checks its inclusion proof live, and says so when the event is not sealed yet', async (t) => {
    const f = await fixture(t);
    const txn = await trade(f);
    const jar = new Jar();
    assert.equal((await signInToConsole(f, jar, 'cora')).path, '/console');
    const id = (await f.ctx.storage.db.selectFrom('audit_events').select('id').where('txn', '=', txn).executeTakeFirstOrThrow()).id;
    const sealed = await getFromConsole(f, `/console/audit/events/${id}`, jar);
    assert.equal(sealed.statusCode, 200, sealed.body);
    assert.match(sealed.body, /<dd id="proof"><span class="verified">✓ verified<\/span>/);
    const fresh = (await f.ctx.storage.db.selectFrom('audit_events').select('id').orderBy('seq', 'desc').executeTakeFirstOrThrow()).id;
    const unsealed = await getFromConsole(f, `/console/audit/events/${fresh}`, jar);
    assert.equal(unsealed.statusCode, 404, unsealed.body);
    assert.match(unsealed.body, /not sealed yet/);
  });

  test('an approver’s token does not read the audit log: the page says so and offers no audit links', async (t) => {
    const f = await fixture(t);
    const jar = new Jar();
    assert.equal((await signInToConsole(f, jar, 'april')).path, '/console');
    assert.deepEqual(sessionIn(f, jar).scopes, ['approvals:decide']);
    const home = await get(f, '/console', jar);
    assert.doesNotMatch(home.body, /href="\/console\/audit"/);
    const audit = await get(f, '/console/audit', jar);
    assert.equal(audit.statusCode, 403);
    assert.match(audit.body, /Your roles do not allow this/);
  });

  test('the directory lists what is registered through the admin API, and says which lists a role may not read', async (t) => {
    const f = await fixture(t);
    const cora = new Jar();
    assert.equal((await signInToConsole(f, cora, 'cora')).path, '/console');
    await seedDestination(f.ctx, { account: 'ACC-9', destination: { kind: 'iban', iban: 'DE89370400440532013000' }, state: 'cooling_down' });
    const page = await getFromConsole(f, '/console/directory', cora);
    assert.equal(page.statusCode, 200, page.body);
    assert.match(page.body, /<tr><td><code>ACC-9<\/code><\/td><td><code>5493001KJTIIGC8Y1R12<\/code><\/td><td><code>iban:DE89370400440532013000<\/code><\/td><td><\/td><td><span class="not-verified">cooling down<\/span> <span class="muted">\(v1\)<\/span><\/td>/, 'the address books, a destination not yet usable marked');
    assert.match(page.body, /<h2 id="clients">Clients <span class="muted">\(\d+\)<\/span><\/h2>/);
    assert.match(page.body, /<td><code>desk-algo<\/code><\/td><td>service<\/td>/);
    assert.match(page.body, new RegExp(`<td><code>${ordersApi.replaceAll('.', '\\.')}</code></td><td><code>order:create</code></td><td>300 s</td>`));
    // People as an access review needs them: username, roles, factors, sessions — never a name or email.
    assert.match(page.body, /<tr><td><code>cora<\/code><\/td><td>compliance<\/td><td>broker-compliance<\/td><td>active<\/td><td>password, 1 passkey<\/td><td>[1-9]\d*<\/td>/);
    assert.match(page.body, /<tr><td><code>paul<\/code><\/td><td>compliance<\/td><td><\/td><td>active<\/td><td>password<\/td>/);
    assert.doesNotMatch(page.body, /Cora Compliance|@/, 'no names, no email addresses');
    const reviewed = await f.auditEvents('people.reviewed');
    assert.equal(reviewed.length, 1, 'the read of the people is on the record');
    assert.equal(reviewed[0]!.actor, sessionIn(f, cora).userId);
    assert.match(page.body, /<h2 id="keys">Keys and certificates<\/h2>/);
    assert.match(page.body, /<tr><td><code>[^<]+<\/code><\/td><td>(ES256|EdDSA|PS256)<\/td><td>active<\/td>/, 'the signing key in use');
    assert.match(page.body, /No private CA/);

    const april = new Jar();
    assert.equal((await signInToConsole(f, april, 'april')).path, '/console');
    assert.doesNotMatch((await get(f, '/console', april)).body, /href="\/console\/directory"/);
    const refused = await get(f, '/console/directory', april);
    assert.equal(refused.statusCode, 200);
    assert.equal([...refused.body.matchAll(/Your roles do not allow this/g)].length, 10, 'each of the nine lists and the keys say so');
  });

  test('an administrator holds the admin scopes but not audit:hold, nor closes reviews', async (t) => {
    const f = await fixture(t);
    const jar = new Jar();
    assert.equal((await signInToConsole(f, jar, 'ada')).path, '/console');
    assert.deepEqual(sessionIn(f, jar).scopes, ['admin:read', 'admin:write', 'audit:read', 'metrics:read']);
  });

  test('refuses a callback this browser did not start, a forged state, and a console cookie it did not seal', async (t) => {
    const f = await fixture(t);
    const stranger = await get(f, '/console/callback?code=abc&state=xyz', new Jar());
    assert.equal(stranger.statusCode, 400);
    assert.match(stranger.body, /Sign-in expired/);

    const jar = new Jar();
    const started = await get(f, '/console/sign-in', jar);
    assert.equal(started.statusCode, 303);
    const forged = await get(f, '/console/callback?code=abc&state=not-the-state', jar);
    assert.equal(forged.statusCode, 400);

    const tampered = new Jar('clearance_console=v1.AAAA.BBBB.CCCC');
    const page = await get(f, '/console/audit', tampered);
    assert.equal(page.statusCode, 303, 'treated as signed out');
    assert.match(String(page.headers.location), /\/console\/sign-in\?return=%2Fconsole%2Faudit$/);
  });

  test('signs out only with the form’s token', async (t) => {
    const f = await fixture(t);
    const jar = new Jar();
    assert.equal((await signInToConsole(f, jar, 'cora')).path, '/console');
    const forged = await post(f, '/console/sign-out', { csrf_token: 'wrong' }, jar);
    assert.equal(forged.statusCode, 403);
    assert.ok(jar.cookies.has('clearance_console'));
    const home = await get(f, '/console', jar);
    const out = await post(f, '/console/sign-out', { csrf_token: csrfOf(home.body) }, jar);
    assert.equal(out.statusCode, 200);
    assert.equal(jar.cookies.has('clearance_console'), false);
  });
});
