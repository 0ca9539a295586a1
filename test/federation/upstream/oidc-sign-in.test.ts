import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as client from 'openid-client';
import { decodeJwt } from 'jose';
import { HttpBrowser, csrfOf, signInAndApprove } from '../../helpers/http-browser.ts';
import { alicePassword } from '../../helpers/desk-app.ts';
import { decidePassword, upsertUser } from '../../../src/identity/users.ts';
import { linkIdentity } from '../../../src/federation/upstream/linking.ts';
import { findProvider } from '../../../src/federation/upstream/providers.ts';
import { defaultRiskSettings } from '../../../src/risk/settings.ts';
import { approve, authorizationRequest, followAll, form, fundLei, signInThroughOrganisation, startBrokering, upstreamAcr, type BrokeringHarness } from './fixture.ts';
import type { StoredAuditEvent } from '../../../src/audit/events.ts';
import { decryptEventsUnaudited } from '../../../src/audit/subject-keys.ts';
import { resolveMasterKey } from '../../../src/keys/master-key.ts';

// A person at a partner fund signs in to the broker's desk application through the fund's own
// OpenID Provider (node-oidc-provider), over HTTP: home-realm discovery, the code flow with PKCE
// (and PAR, which the upstream offers), the ID token validated by openid-client, the person
// provisioned just in time and linked by (issuer, subject), the level capped by the fund's declared
// trust, and the fund named as the source of assurance in the session, the tokens and the log.

const mfa = 'urn:clearance:acr:mfa';
const upstreamAmr = 'urn:clearance:amr:upstream';

async function tokensFor(h: BrokeringHarness, request: ReturnType<typeof authorizationRequest>, callback: URL) {
  return client.authorizationCodeGrant(h.config, callback, { pkceCodeVerifier: request.verifier, expectedState: request.state, expectedNonce: request.nonce });
}

/** The recorded events of a type, oldest first. */
async function eventsOf(h: BrokeringHarness, type: string) {
  const ctx = h.server.running.ctx;
  const rows = await ctx.storage.db.selectFrom('audit_events').select(['event']).where('type', '=', type).orderBy('seq').execute();
  // Personal fields are stored encrypted (docs/privacy.md): read through the decrypting reader.
  const events = await decryptEventsUnaudited(ctx.storage.db, resolveMasterKey(ctx.config).key, rows.map((row) => JSON.parse(row.event) as StoredAuditEvent));
  return events as { actor?: string; subject?: string; details: Record<string, unknown> }[];
}

test('a fund’s portfolio manager signs in through the fund’s OpenID Provider and gets tokens naming the fund as the source of assurance', async (t) => {
  const h = await startBrokering(t);
  h.upstream.nextSignIn = { sub: 'pm-001', claims: { name: 'Petra Manager', email: 'petra@fund-a.example', preferred_username: 'petra' }, acr: upstreamAcr.mfa, amr: ['pwd', 'otp', 'mfa'] };
  const browser = new HttpBrowser();
  const request = authorizationRequest(h);
  const back = await signInThroughOrganisation(h, browser, await request.url(), 'petra@fund-a.example');
  assert.ok(back.visited.some((u) => u.href.startsWith(h.upstream.issuer)), 'the browser went to the upstream');
  assert.equal(h.upstream.signIns, 1);
  const callback = await approve(browser, back);
  const tokens = await tokensFor(h, request, callback);

  const idToken = tokens.claims()!;
  assert.equal(idToken.acr, mfa, 'the fund is trusted for two-factor sign-ins, and asserted one');
  assert.deepEqual(new Set(idToken.amr as string[]), new Set(['pwd', 'otp', 'mfa', upstreamAmr]));
  assert.equal(idToken.assurance_source, h.upstream.issuer);
  const access = decodeJwt(tokens.access_token);
  assert.equal(access.sub, idToken.sub);
  assert.equal(access.acr, mfa);
  assert.equal(access.assurance_source, h.upstream.issuer);

  // Provisioned just in time: mapped name and email, the declared desk, no password, no roles.
  const db = h.server.running.ctx.storage.db;
  const person = await db.selectFrom('users').selectAll().where('id', '=', idToken.sub).executeTakeFirstOrThrow();
  assert.equal(person.username, 'fund-a.petra');
  assert.equal(person.name, 'Petra Manager');
  assert.equal(person.email, 'petra@fund-a.example');
  assert.deepEqual(JSON.parse(person.desks), ['fund-a-pm']);
  assert.deepEqual(JSON.parse(person.roles), []);
  assert.equal(person.password_hash, null);
  const link = await db.selectFrom('user_links').selectAll().where('user_id', '=', person.id).executeTakeFirstOrThrow();
  assert.deepEqual([link.issuer, link.subject, link.provider_id, link.linked_by], [h.upstream.issuer, 'pm-001', 'fund-a', 'provisioned']);
  const session = await db.selectFrom('sessions').selectAll().where('user_id', '=', person.id).executeTakeFirstOrThrow();
  assert.deepEqual([session.assurance_provider, session.assurance_source, session.acr], ['fund-a', h.upstream.issuer, mfa]);

  const [provisioned] = await eventsOf(h, 'user.provisioned');
  assert.equal(provisioned?.subject, person.id);
  assert.deepEqual(provisioned?.details, { provider: 'fund-a', issuer: h.upstream.issuer, upstream_subject: 'pm-001', legal_entity: fundLei, desks: ['fund-a-pm'] });
  const login = (await eventsOf(h, 'user.login_succeeded')).find((e) => e.actor === person.id);
  assert.equal(login?.details.method, 'upstream');
  assert.equal(login?.details.assurance_source, h.upstream.issuer);
  assert.equal(login?.details.acr, mfa);
  assert.equal(login?.details.capped, undefined);
  const issued = (await eventsOf(h, 'token.issued')).find((e) => e.subject === person.id);
  assert.equal(issued?.details.assurance_source, h.upstream.issuer);
});

test('an upstream claiming more than it is trusted for is capped at its declared level, and its amr is not passed on', async (t) => {
  const h = await startBrokering(t);
  h.upstream.nextSignIn = { sub: 'pm-002', claims: { email: 'paul@fund-a.example' }, acr: upstreamAcr.phr, amr: ['hwk', 'user'] };
  const browser = new HttpBrowser();
  const request = authorizationRequest(h);
  const callback = await approve(browser, await signInThroughOrganisation(h, browser, await request.url(), 'paul@fund-a.example'));
  const idToken = (await tokensFor(h, request, callback)).claims()!;
  assert.equal(idToken.acr, mfa, 'phishing-resistant asserted, two-factor believed');
  assert.deepEqual(idToken.amr, [upstreamAmr], 'no hwk: the fund is not trusted for it');
  const login = (await eventsOf(h, 'user.login_succeeded')).find((e) => e.actor === idToken.sub);
  assert.equal(login?.details.capped, true);
  assert.equal(login?.details.trusted_up_to, mfa);
  assert.deepEqual(login?.details.asserted, { acr: upstreamAcr.phr, amr: ['hwk', 'user'] });
});

test('an upstream acr the declaration does not map is a password’s level', async (t) => {
  const h = await startBrokering(t);
  h.upstream.nextSignIn = { sub: 'pm-003', claims: { email: 'pia@fund-a.example' }, acr: upstreamAcr.password, amr: ['pwd'] };
  const browser = new HttpBrowser();
  const request = authorizationRequest(h);
  const callback = await approve(browser, await signInThroughOrganisation(h, browser, await request.url(), 'pia@fund-a.example'));
  const idToken = (await tokensFor(h, request, callback)).claims()!;
  assert.equal(idToken.acr, 'urn:clearance:acr:pwd');
});

test('a level the fund is not trusted for is not reached through it: the step-up page offers nothing, and the request ends unmet', async (t) => {
  const h = await startBrokering(t);
  h.upstream.nextSignIn = { sub: 'pm-004', claims: { email: 'pat@fund-a.example' }, acr: upstreamAcr.phr, amr: ['hwk'] };
  const browser = new HttpBrowser();
  const request = authorizationRequest(h, { claims: JSON.stringify({ id_token: { acr: { essential: true, value: 'urn:clearance:acr:phr' } } }) });
  const page = await signInThroughOrganisation(h, browser, await request.url(), 'pat@fund-a.example');
  assert.equal(page.response.status, 200);
  const html = await page.response.text();
  assert.match(html, /your organisation’s sign-in/, 'the page says how the person signed in');
  assert.match(html, /id="no-method"/, 'no method of theirs reaches a passkey’s level');
  const declined = await followAll(browser, `${page.url.href}/decline`, form({ csrf_token: csrfOf(html) }), (url) => url.href.startsWith(h.app.redirectUri));
  const callback = new URL(declined.response.headers.get('location')!);
  assert.equal(callback.searchParams.get('error'), 'unmet_authentication_requirements');
});

test('the second sign-in of the same upstream identity is the same person, with the mapped name brought up to date', async (t) => {
  const h = await startBrokering(t);
  h.upstream.nextSignIn = { sub: 'pm-005', claims: { name: 'Quinn', email: 'quinn@fund-a.example' }, acr: upstreamAcr.mfa };
  const first = authorizationRequest(h);
  const firstBrowser = new HttpBrowser();
  const firstSub = (await tokensFor(h, first, await approve(firstBrowser, await signInThroughOrganisation(h, firstBrowser, await first.url(), 'quinn@fund-a.example')))).claims()!.sub;
  h.upstream.nextSignIn = { sub: 'pm-005', claims: { name: 'Quinn Q. Manager', email: 'quinn@fund-a.example' }, acr: upstreamAcr.mfa };
  const second = authorizationRequest(h);
  const browser = new HttpBrowser();
  const back = await signInThroughOrganisation(h, browser, await second.url(), 'quinn@fund-a.example');
  const secondSub = (await tokensFor(h, second, await approve(browser, back))).claims()!.sub;
  assert.equal(secondSub, firstSub);
  const db = h.server.running.ctx.storage.db;
  assert.equal((await db.selectFrom('users').select('name').where('id', '=', firstSub).executeTakeFirstOrThrow()).name, 'Quinn Q. Manager');
  assert.equal((await eventsOf(h, 'user.provisioned')).length, 1);
});

test('a local account with the same email is never taken over: refused and audited, until an administrator links the two', async (t) => {
  const h = await startBrokering(t);
  const ctx = h.server.running.ctx;
  const entry = { username: 'rita', email: 'Rita@fund-a.example', password: 'a long local password 123' };
  const decision = await decidePassword(ctx.storage.db, entry);
  const { id: ritaId } = await ctx.storage.db.transaction().execute((trx) => upsertUser(trx, ctx.clock.now(), entry, decision));
  h.upstream.nextSignIn = { sub: 'pm-006', claims: { email: 'rita@fund-a.example' }, acr: upstreamAcr.mfa };
  const browser = new HttpBrowser();
  const request = authorizationRequest(h);
  const refused = await signInThroughOrganisation(h, browser, await request.url(), 'rita@fund-a.example');
  assert.equal(refused.response.status, 409);
  assert.match(await refused.response.text(), /already uses the email address/);
  assert.doesNotMatch(refused.response.headers.get('set-cookie') ?? '', /clearance_session=/, 'no session');
  const [event] = await eventsOf(h, 'upstream.sign_in_refused');
  assert.equal(event?.subject, ritaId);
  assert.equal(event?.details.reason, 'email_taken');
  assert.equal(await ctx.storage.db.selectFrom('user_links').select('user_id').where('subject', '=', 'pm-006').executeTakeFirst(), undefined);

  const provider = (await findProvider(ctx.storage.db, 'fund-a'))!.provider;
  assert.deepEqual(await linkIdentity(ctx, { userId: ritaId, provider, subject: 'pm-006', actor: 'admin-1' }), { ok: true });
  const linked = await eventsOf(h, 'user.linked');
  assert.deepEqual([linked[0]?.actor, linked[0]?.subject], ['admin-1', ritaId]);
  const again = authorizationRequest(h);
  const browser2 = new HttpBrowser();
  const sub = (await tokensFor(h, again, await approve(browser2, await signInThroughOrganisation(h, browser2, await again.url(), 'rita@fund-a.example')))).claims()!.sub;
  assert.equal(sub, ritaId);
  assert.deepEqual(await linkIdentity(ctx, { userId: ritaId, provider, subject: 'pm-006', actor: 'admin-1' }), { ok: false, reason: 'already_linked' });
});

test('a callback is used once: replayed, with an unknown state, or in another browser it is refused and audited', async (t) => {
  const h = await startBrokering(t);
  h.upstream.nextSignIn = { sub: 'pm-007', claims: { email: 'sam@fund-a.example' }, acr: upstreamAcr.mfa };
  const browser = new HttpBrowser();
  const request = authorizationRequest(h);
  const done = await signInThroughOrganisation(h, browser, await request.url(), 'sam@fund-a.example');
  assert.equal(done.response.status, 200);
  const callback = done.visited.find((u) => u.pathname === '/broker/oidc/callback')!;
  const replayed = await browser.fetch(callback);
  assert.equal(replayed.status, 400);
  assert.equal(replayed.headers.get('cache-control'), 'no-store');
  const unknown = new URL(callback);
  unknown.searchParams.set('state', 'A'.repeat(43));
  assert.equal((await browser.fetch(unknown)).status, 400);
  const missing = new URL(callback);
  missing.searchParams.delete('state');
  assert.equal((await browser.fetch(missing)).status, 400);
  const reasons = (await eventsOf(h, 'upstream.sign_in_refused')).map((e) => e.details.reason);
  assert.deepEqual(reasons, ['replayed', 'unknown_state', 'missing_state']);

  // A state lured into another browser: refused there, and used up.
  const victim = authorizationRequest(h);
  const attacker = new HttpBrowser();
  const page = await attacker.follow(await victim.url(), h.server.issuer);
  const html = await page.response.text();
  const toUpstream = await attacker.fetch(`${page.url.href}/upstream`, form({ csrf_token: csrfOf(html), realm: 'sam@fund-a.example' }));
  const upstreamBack = await followAll(attacker, toUpstream.headers.get('location')!, {}, (url) => url.href.startsWith(h.server.issuer));
  const lured = new URL(upstreamBack.response.headers.get('location')!);
  const other = await new HttpBrowser().fetch(lured);
  assert.equal(other.status, 400);
  assert.equal((await eventsOf(h, 'upstream.sign_in_refused')).at(-1)?.details.reason, 'other_browser');
  assert.equal((await attacker.fetch(lured)).status, 400, 'used up');
});

test('home-realm discovery: an unknown domain is said plainly, an LEI or the request’s idp_hint finds the fund', async (t) => {
  const h = await startBrokering(t);
  const browser = new HttpBrowser();
  const request = authorizationRequest(h);
  const page = await browser.follow(await request.url(), h.server.issuer);
  const html = await page.response.text();
  const unknown = await browser.fetch(`${page.url.href}/upstream`, form({ csrf_token: csrfOf(html), realm: 'someone@elsewhere.example' }));
  assert.equal(unknown.status, 400);
  assert.match(await unknown.text(), /No organisation’s sign-in is set up for that/);
  const byLei = await browser.fetch(`${page.url.href}/upstream`, form({ csrf_token: csrfOf(html), realm: fundLei.toLowerCase() }));
  assert.equal(byLei.status, 303);
  assert.ok(byLei.headers.get('location')!.startsWith(h.upstream.issuer));

  const hinted = authorizationRequest(h, { idp_hint: 'fund-a', login_hint: 'tom@fund-a.example' });
  const hintBrowser = new HttpBrowser();
  const first = await hintBrowser.follow(await hinted.url(), h.server.issuer);
  assert.equal(first.response.status, 303, 'straight on to the fund');
  const at = new URL(first.response.headers.get('location')!);
  assert.equal(at.origin, new URL(h.upstream.issuer).origin);
  assert.equal((await eventsOf(h, 'upstream.sign_in_refused')).length, 0);
});

test('disabling the provider ends the sessions its people hold through it, their refresh tokens issue nothing more, and no sign-in goes through it', async (t) => {
  const h = await startBrokering(t, { refreshTokens: true });
  h.upstream.nextSignIn = { sub: 'pm-008', claims: { email: 'uma@fund-a.example' }, acr: upstreamAcr.mfa };
  const browser = new HttpBrowser();
  const request = authorizationRequest(h);
  const tokens = await tokensFor(h, request, await approve(browser, await signInThroughOrganisation(h, browser, await request.url(), 'uma@fund-a.example')));
  const sub = tokens.claims()!.sub;
  assert.ok(tokens.refresh_token);
  const refreshed = await client.refreshTokenGrant(h.config, tokens.refresh_token!);
  assert.equal(decodeJwt(refreshed.access_token).assurance_source, h.upstream.issuer, 'a refreshed token names the source too');
  await h.server.apply({ identity_providers: [{ ...h.providerEntry, enabled: false }] });
  await assert.rejects(client.refreshTokenGrant(h.config, refreshed.refresh_token!), (error: { error?: string }) => error.error === 'invalid_grant');
  const db = h.server.running.ctx.storage.db;
  const session = await db.selectFrom('sessions').selectAll().where('user_id', '=', sub).executeTakeFirstOrThrow();
  assert.equal(session.end_reason, 'provider_disabled');
  const [disabled] = await eventsOf(h, 'identity_provider.disabled');
  assert.deepEqual(disabled?.details, { provider: 'fund-a', issuer: h.upstream.issuer, sessions_ended: 1 });
  const again = authorizationRequest(h);
  const page = await new HttpBrowser().follow(await again.url(), h.server.issuer);
  assert.doesNotMatch(await page.response.text(), /Sign in through your organisation/, 'no upstream is offered any more');
});

test('policy sees the source of assurance: a forbid on people signed in through the fund refuses them, and not a local person', async (t) => {
  const h = await startBrokering(t);
  await h.server.apply({
    policies: [
      {
        version: 'v1',
        text: `@id("everything") permit (principal, action, resource);
@id("no-orders-through-the-fund-sign-in")
forbid (principal is User, action == Action::"order:create", resource)
when { context has assurance && context.assurance.federated && context.assurance.source == "${h.upstream.issuer}" };`,
        change_ref: 'CHG-22',
        author: 'alice.author',
        approver: 'bob.approver',
        active: true,
      },
    ],
  });
  h.upstream.nextSignIn = { sub: 'pm-009', claims: { email: 'vera@fund-a.example' }, acr: upstreamAcr.mfa };
  const browser = new HttpBrowser();
  const request = authorizationRequest(h);
  const end = await signInThroughOrganisation(h, browser, await request.url(), 'vera@fund-a.example');
  // The code is issued; the token endpoint's decision refuses the scope (all or nothing).
  const callback = await approve(browser, end);
  await assert.rejects(tokensFor(h, request, callback), (error: { error?: string; cause?: { error?: string } }) => (error.error ?? error.cause?.error) === 'invalid_scope');
  const decisions = (await eventsOf(h, 'policy.denied')).concat(await eventsOf(h, 'token.refused'));
  assert.ok(JSON.stringify(decisions).includes("no-orders-through-the-fund-sign-in"), 'the forbid that decided is on the record');

  // Alice signs in with her password: Clearance's own assurance, and the order scope is hers.
  const local = authorizationRequest(h);
  const aliceBrowser = new HttpBrowser();
  const aliceCallback = await signInAndApprove(aliceBrowser, h.server.issuer, await local.url(), { username: 'alice', password: alicePassword });
  const tokens = await tokensFor(h, local, aliceCallback);
  assert.equal(decodeJwt(tokens.access_token).scope, 'order:create');
  assert.equal(tokens.claims()!.assurance_source, undefined);
});

test('a person whose email the fund’s sign-in found taken joins the two by signing in with their own account, then and there', async (t) => {
  const h = await startBrokering(t);
  const ctx = h.server.running.ctx;
  const entry = { username: 'rita', email: 'rita@fund-a.example', password: 'a long local password 123' };
  const decision = await decidePassword(ctx.storage.db, entry);
  const { id: ritaId } = await ctx.storage.db.transaction().execute((trx) => upsertUser(trx, ctx.clock.now(), entry, decision));
  h.upstream.nextSignIn = { sub: 'pm-010', claims: { email: 'rita@fund-a.example' }, acr: upstreamAcr.mfa };
  const browser = new HttpBrowser();
  const request = authorizationRequest(h);
  const offered = await signInThroughOrganisation(h, browser, await request.url(), 'rita@fund-a.example');
  assert.equal(offered.response.status, 409);
  const page = await offered.response.text();
  assert.match(page, /If it is yours, sign in with it above: the two will be joined/);
  assert.match(offered.response.headers.get('set-cookie') ?? '', /clearance_link=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Lax/);
  // Rita signs in with her password on that page: the fund's identity is hers from now on.
  // Clearance's sign-in page is where the organisation form posted from.
  const interactionPage = new URL(offered.visited[0]!.href.replace(/\/upstream$/, ''));
  const signedIn = await browser.fetch(`${interactionPage.href}/login`, form({ csrf_token: csrfOf(page), username: 'rita', password: entry.password }));
  assert.equal(signedIn.status, 303);
  assert.match(signedIn.headers.get('set-cookie') ?? '', /clearance_link=; Path=\/; HttpOnly; SameSite=Lax; Max-Age=0/, 'the pending link is used up');
  const link = await ctx.storage.db.selectFrom('user_links').selectAll().where('subject', '=', 'pm-010').executeTakeFirstOrThrow();
  assert.deepEqual([link.user_id, link.linked_by], [ritaId, 'local_sign_in']);
  const [linked] = await eventsOf(h, 'user.linked');
  assert.deepEqual([linked?.actor, linked?.subject, linked?.details.via], [ritaId, ritaId, 'local_sign_in']);
  // The next sign-in through the fund is Rita's.
  const again = authorizationRequest(h);
  const next = new HttpBrowser();
  const sub = (await tokensFor(h, again, await approve(next, await signInThroughOrganisation(h, next, await again.url(), 'rita@fund-a.example')))).claims()!.sub;
  assert.equal(sub, ritaId);
});

test('a pending link attaches to nobody else: another local person signing in on that page is not joined to it', async (t) => {
  const h = await startBrokering(t);
  const ctx = h.server.running.ctx;
  for (const entry of [{ username: 'rita', email: 'rita@fund-a.example', password: 'a long local password 123' }, { username: 'sam', email: 'sam@broker.example', password: 'another long password 456' }]) {
    const decision = await decidePassword(ctx.storage.db, entry);
    await ctx.storage.db.transaction().execute((trx) => upsertUser(trx, ctx.clock.now(), entry, decision));
  }
  h.upstream.nextSignIn = { sub: 'pm-011', claims: { email: 'rita@fund-a.example' }, acr: upstreamAcr.mfa };
  const browser = new HttpBrowser();
  const offered = await signInThroughOrganisation(h, browser, await authorizationRequest(h).url(), 'rita@fund-a.example');
  const page = await offered.response.text();
  // Clearance's sign-in page is where the organisation form posted from.
  const interactionPage = new URL(offered.visited[0]!.href.replace(/\/upstream$/, ''));
  const signedIn = await browser.fetch(`${interactionPage.href}/login`, form({ csrf_token: csrfOf(page), username: 'sam', password: 'another long password 456' }));
  assert.equal(signedIn.status, 303, 'Sam is signed in');
  assert.match(signedIn.headers.get('set-cookie') ?? '', /clearance_link=; /, 'the pending link is used up all the same');
  assert.equal(await ctx.storage.db.selectFrom('user_links').selectAll().executeTakeFirst(), undefined);
  assert.equal((await eventsOf(h, 'user.linked')).length, 0);
});

test('an upstream naming an address outside its own domains, or one it has not verified, is offered no link: only an administrator links', async (t) => {
  const h = await startBrokering(t);
  const ctx = h.server.running.ctx;
  for (const entry of [{ username: 'trader', email: 'trader@broker.example', password: 'a long local password 123' }, { username: 'rita', email: 'rita@fund-a.example', password: 'a long local password 456' }]) {
    const decision = await decidePassword(ctx.storage.db, entry);
    await ctx.storage.db.transaction().execute((trx) => upsertUser(trx, ctx.clock.now(), entry, decision));
  }
  for (const person of [
    { sub: 'pm-012', claims: { email: 'trader@broker.example' }, acr: upstreamAcr.mfa },
    { sub: 'pm-013', claims: { email: 'rita@fund-a.example', email_verified: false }, acr: upstreamAcr.mfa },
  ]) {
    h.upstream.nextSignIn = person;
    const browser = new HttpBrowser();
    const refused = await signInThroughOrganisation(h, browser, await authorizationRequest(h).url(), 'someone@fund-a.example');
    assert.equal(refused.response.status, 409, person.sub);
    assert.match(await refused.response.text(), /ask your administrator to link the two/);
    assert.doesNotMatch(refused.response.headers.get('set-cookie') ?? '', /clearance_link=/, 'no pending link');
  }
  assert.equal((await eventsOf(h, 'upstream.sign_in_refused')).filter((e) => e.details.reason === 'email_taken').length, 2);
});

test('Clearance authenticates to an upstream with private_key_jwt, its key published at /broker/oidc/jwks', async (t) => {
  const h = await startBrokering(t, { privateKeyJwt: true });
  const jwks = await fetch(`${h.server.issuer}/broker/oidc/jwks`);
  assert.match(jwks.headers.get('content-type')!, /jwk-set\+json/);
  const { keys } = (await jwks.json()) as { keys: Record<string, unknown>[] };
  assert.deepEqual(keys.map((k) => [k.kid, k.kty, k.crv, k.alg, 'd' in k]), [['upstream-fund-a', 'EC', 'P-256', 'ES256', false]]);
  h.upstream.nextSignIn = { sub: 'pm-020', claims: { email: 'kim@fund-a.example' }, acr: upstreamAcr.mfa };
  const browser = new HttpBrowser();
  const request = authorizationRequest(h);
  const tokens = await tokensFor(h, request, await approve(browser, await signInThroughOrganisation(h, browser, await request.url(), 'kim@fund-a.example')));
  assert.equal(tokens.claims()!.assurance_source, h.upstream.issuer, 'the upstream accepted the signed client assertion');
  // A client_secret with private_key_jwt is refused by apply: the key is Clearance's own.
  await assert.rejects(h.server.apply({ identity_providers: [{ ...h.providerEntry, client_secret: 'a-secret-that-does-not-belong-here' }] }), /private_key_jwt signs with a key Clearance makes/);
});

test('a sign-in through the fund that the risk engine denies is refused with a page, risk.denied and its alert, and signs nobody in', async (t) => {
  const h = await startBrokering(t);
  const ctx = h.server.running.ctx;
  // Every sign-in denied, whatever its signals (and the hour): the threshold is nothing.
  ctx.risk.settings = { get: async () => ({ ...defaultRiskSettings, outcomes: { step_up: 0, deny: 0 } }) };
  h.upstream.nextSignIn = { sub: 'pm-030', claims: { email: 'ned@fund-a.example' }, acr: upstreamAcr.mfa };
  const refused = await signInThroughOrganisation(h, new HttpBrowser(), await authorizationRequest(h).url(), 'ned@fund-a.example');
  assert.equal(refused.response.status, 401);
  assert.doesNotMatch(refused.response.headers.get('set-cookie') ?? '', /clearance_session=/);
  const [refusal] = await eventsOf(h, 'upstream.sign_in_refused');
  assert.equal(refusal?.details.reason, 'risk_denied');
  const [denied] = await eventsOf(h, 'risk.denied');
  assert.deepEqual([denied?.subject, denied?.details.method], [refusal?.subject, 'upstream']);
  assert.equal((await ctx.storage.db.selectFrom('alerts').select('type').where('type', '=', 'risk.denied').execute()).length, 1);
  assert.equal(await ctx.storage.db.selectFrom('sessions').selectAll().executeTakeFirst(), undefined);
});
