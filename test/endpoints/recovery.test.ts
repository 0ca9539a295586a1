import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { adminAudience } from '../../src/admin/authorize.ts';
import { recoveryKind } from '../../src/approvals/kinds/recovery.ts';
import { decideApprovalRequest } from '../../src/approvals/requests.ts';
import { acr } from '../../src/identity/acr.ts';
import { listPasskeys } from '../../src/identity/passkeys/store.ts';
import { findUserByUsername } from '../../src/identity/users.ts';
import { credentialsHeld } from '../../src/lifecycle/credential-hold.ts';
import { enrolmentBinding, maxLiveChallengesPerLink } from '../../src/identity/recovery/enrolment.ts';
import { startSession } from '../../src/identity/sessions.ts';
import { createLogger } from '../../src/log.ts';
import { mintAccessToken, newJti } from '../../src/tokens/access-token.ts';
import { SoftwareAuthenticator } from '../helpers/authenticator.ts';
import { assertOnlyPasskeyScripts, passkeyPageCsp } from '../helpers/pages.ts';
import { codeFlowFixture, type CodeFlowFixture, type Person } from '../authorization/fixture.ts';
import { approverOf, holdBothRoles, person, recoveryPeople, strongProof } from '../identity/recovery/fixture.ts';
import { assertOAuthError, decodeJwt, ordersApi } from './fixture.ts';
import { Jar, csrfOf, get, post, startAuthorization, submitPassword } from './people-browser.ts';

// Recovery of a lost authenticator over HTTP (docs/recovery.md): the help desk opens a request
// through the admin API, the person through /account; a second person approves (the generic
// approver page is another's work: decideApprovalRequest stands in for it); the link then enrols
// one passkey and nothing else.

const alicePassword = 'alice-correct-horse-42';
const alice = { username: 'alice', password: alicePassword, name: 'Alice Trader', desks: ['rates'] };
const phr: { acr: string; amr: string[] } = { acr: acr.phishingResistant, amr: ['hwk', 'user', 'mfa'] };

async function fixture(t: Parameters<typeof codeFlowFixture>[0]): Promise<CodeFlowFixture> {
  const f = await codeFlowFixture(t, { risk: 'off' }); // sign-ins that are not about risk (docs/risk.md), whatever the hour
  await f.apply({
    users: [alice, ...recoveryPeople, { username: 'bob', password: 'bob-battery-staple-77', name: 'Bob Ops' }],
    clients: [{ client_id: 'help-desk-robot', kind: 'service', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], scope: 'recovery:request' }],
  });
  return f;
}

/** A real session of a stored person (no upsert: their roles stay). */
async function sessionOf(f: CodeFlowFixture, username: string, level: { acr: string; amr: string[] } = phr): Promise<Person> {
  const userId = (await person(f.ctx, username)).id;
  const started = await startSession(f.ctx, { userId, ...level, cookieHeader: undefined });
  return { userId, cookie: started.setCookie.split(';')[0]!, authentication: started.authentication };
}

/** What a person holds after signing in to web-app: a refresh token, an Order API token, and the grant. */
async function tokensOf(f: CodeFlowFixture, who: Person): Promise<{ refresh: string; access: string; grantId: string }> {
  const { code, pkce } = await f.authorizeAndApprove({ person: who, query: { scope: 'openid offline_access order:create', resource: ordersApi } });
  const redeemed = await f.redeem('web-app', code, pkce.verifier);
  assert.equal(redeemed.statusCode, 200, redeemed.body);
  const body = redeemed.json() as { access_token: string; refresh_token: string };
  return { refresh: body.refresh_token, access: body.access_token, grantId: String(decodeJwt(body.access_token).payload.grant_id) };
}

/** A person's token for the admin API, under their consent grant, at their session's level. */
async function personAdminToken(f: CodeFlowFixture, username: string, level = phr, scope = 'recovery:request', extra: Record<string, unknown> = {}): Promise<string> {
  const who = await sessionOf(f, username, level);
  const { grantId } = await tokensOf(f, who);
  const iat = Math.floor(f.clock.now() / 1000);
  return mintAccessToken(f.ctx.keys, { iss: f.issuer, aud: adminAudience(f.issuer), iat, exp: iat + 300, jti: newJti(), client_id: 'web-app', scope, sub: who.userId, grant_id: grantId, acr: level.acr, amr: level.amr, ...extra });
}

function open(f: CodeFlowFixture, token: string, username: string, body: unknown): Promise<LightMyRequestResponse> {
  return f.inject({ method: 'POST', url: `/admin/users/${username}/recovery`, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, payload: JSON.stringify(body) });
}

const checked = { verification_method: 'in_person_id_check', evidence_ref: 'HD-1234' };

/** The help desk opens a recovery of alice: its request id and the link's path. */
async function helpDeskOpens(f: CodeFlowFixture, body: unknown = checked): Promise<{ id: string; path: string }> {
  const response = await open(f, await personAdminToken(f, 'helen'), 'alice', body);
  assert.equal(response.statusCode, 201, response.body);
  const answer = response.json() as { request_id: string; enrolment_link: string };
  return { id: answer.request_id, path: new URL(answer.enrolment_link).pathname };
}

async function approve(f: CodeFlowFixture, id: string, username = 'rita') {
  return decideApprovalRequest(f.ctx, recoveryKind, { requestId: id, approver: await approverOf(f.ctx, username), proof: strongProof, decision: 'approve' });
}

describe('opening a recovery', () => {
  test('the help desk opens one through the admin API with a phishing-resistant person token, and gets the link once', async (t) => {
    const f = await fixture(t);
    const response = await open(f, await personAdminToken(f, 'helen'), 'alice', { ...checked, lost: ['passkeys'] });
    assert.equal(response.statusCode, 201, response.body);
    assert.equal(response.headers['cache-control'], 'no-store');
    const body = response.json() as Record<string, string>;
    assert.equal(body.status, 'pending');
    assert.equal(body.person, 'alice');
    assert.deepEqual(body.lost, ['passkeys']);
    assert.match(body.enrolment_link!, new RegExp(`^${f.issuer}/recovery/[A-Za-z0-9_-]{43}$`));
    const [requested] = await f.auditEvents('approval.requested');
    assert.equal(requested!.actor, (await person(f.ctx, 'helen')).id);
    assert.equal(requested!.txn, body.request_id);
    const token = body.enrolment_link!.split('/').pop()!;
    assert.doesNotMatch(await f.auditText(), new RegExp(token));
  });

  test('refuses clients on their own, people without help-desk, weak tokens, the help desk’s own account, and bodies without the identity check', async (t) => {
    const f = await fixture(t);
    const robot = await f.accessToken('help-desk-robot', { resource: adminAudience(f.issuer), scope: 'recovery:request' });
    assertOAuthError(await open(f, robot, 'alice', checked), 403, 'access_denied');
    assertOAuthError(await open(f, await personAdminToken(f, 'bob'), 'alice', checked), 403, 'access_denied');
    assertOAuthError(await open(f, await personAdminToken(f, 'helen', { acr: acr.multiFactor, amr: ['pwd', 'otp', 'mfa'] }), 'alice', checked), 403, 'access_denied');
    assertOAuthError(await open(f, await personAdminToken(f, 'helen', phr, 'admin:write'), 'alice', checked), 403, 'insufficient_scope');
    const helen = await personAdminToken(f, 'helen');
    assertOAuthError(await open(f, helen, 'helen', checked), 403, 'access_denied');
    assertOAuthError(await open(f, helen, 'nobody', checked), 404, 'not_found');
    assertOAuthError(await open(f, helen, 'alice', { evidence_ref: 'HD-1' }), 400, 'invalid_request');
    assertOAuthError(await open(f, helen, 'alice', { verification_method: 'in_person_id_check' }), 400, 'invalid_request');
    assertOAuthError(await open(f, helen, 'alice', { verification_method: 'they_sounded_nice', evidence_ref: 'HD-1' }), 400, 'invalid_request');
    assertOAuthError(await open(f, helen, 'alice', { ...checked, evidence_ref: '' }), 400, 'invalid_request');
    assertOAuthError(await open(f, helen, 'alice', { ...checked, lost: ['password'] }), 400, 'invalid_request');
    assertOAuthError(await open(f, helen, 'alice', { ...checked, extra: 1 }), 400, 'invalid_request');
    assertOAuthError(await open(f, helen, 'alice', ['not', 'an', 'object']), 400, 'invalid_request');
    assert.equal((await open(f, helen, 'alice', checked)).statusCode, 201);
    assertOAuthError(await open(f, helen, 'alice', checked), 409, 'invalid_request');
    assertOAuthError(await f.inject({ method: 'POST', url: '/admin/users/alice/recovery', payload: checked }), 401, 'invalid_token');
  });

  test('refuses a delegated token, and records every refused caller as recovery.refused with its reason', async (t) => {
    const f = await fixture(t);
    const delegated = await personAdminToken(f, 'helen', phr, 'recovery:request', { act: { sub: 'some-agent-client' } });
    assertOAuthError(await open(f, delegated, 'alice', checked), 403, 'access_denied');
    const robot = await f.accessToken('help-desk-robot', { resource: adminAudience(f.issuer), scope: 'recovery:request' });
    assertOAuthError(await open(f, robot, 'alice', checked), 403, 'access_denied');
    assertOAuthError(await open(f, await personAdminToken(f, 'bob'), 'alice', checked), 403, 'access_denied');
    assertOAuthError(await open(f, await personAdminToken(f, 'helen', { acr: acr.multiFactor, amr: ['pwd', 'otp', 'mfa'] }), 'alice', checked), 403, 'access_denied');
    // The same answer about nobody: whether a person exists is not told to a refused caller.
    assertOAuthError(await open(f, robot, 'nobody', checked), 403, 'access_denied');

    const [helen, bob, aliceId] = [(await person(f.ctx, 'helen')).id, (await person(f.ctx, 'bob')).id, (await person(f.ctx, 'alice')).id];
    const refused = (await f.auditEvents('recovery.refused')).map((e) => [e.actor, e.subject, e.decision?.reasons]);
    assert.deepEqual(refused, [
      [helen, aliceId, ['delegated_token']],
      ['help-desk-robot', aliceId, ['client_token']],
      [bob, aliceId, ['not_help_desk']],
      [helen, aliceId, ['insufficient_authentication']],
      ['help-desk-robot', undefined, ['client_token']],
    ]);
    assert.deepEqual(await f.auditEvents('approval.requested'), [], 'nothing was opened');
  });

  test('the person opens their own on /account only from a session that proved two factors', async (t) => {
    const f = await fixture(t);
    const weak = new Jar((await sessionOf(f, 'alice', { acr: acr.password, amr: ['pwd'] })).cookie);
    const weakPage = await get(f, '/account', weak);
    assert.match(weakPage.body, /id="recovery-locked"/);
    assert.doesNotMatch(weakPage.body, /action="\/account\/recovery"/);
    const refused = await post(f, '/account/recovery', { csrf_token: csrfOf(weakPage.body), lost: 'passkeys' }, weak);
    assert.equal(refused.statusCode, 403);
    assert.equal((await f.ctx.storage.db.selectFrom('recovery_links').select('request_id').execute()).length, 0);

    const strong = new Jar((await sessionOf(f, 'alice', { acr: acr.multiFactor, amr: ['pwd', 'mfa', 'urn:clearance:amr:recovery-code'] })).cookie);
    const page = await get(f, '/account', strong);
    assert.match(page.body, /action="\/account\/recovery"/);
    // A forged form (no CSRF token) opens nothing.
    assert.equal((await post(f, '/account/recovery', { lost: 'passkeys' }, strong)).statusCode, 403);
    const opened = await post(f, '/account/recovery', { csrf_token: csrfOf(page.body), lost: 'authenticator' }, strong);
    assert.equal(opened.statusCode, 200, opened.body);
    assert.equal(opened.headers['cache-control'], 'no-store');
    const link = /<p class="secret" id="recovery-link">([^<]+)<\/p>/.exec(opened.body)![1]!;
    const notYet = await get(f, new URL(link).pathname);
    assert.equal(notYet.statusCode, 403);
    assert.match(notYet.body, /Not approved yet/);
    const [requested] = await f.auditEvents('approval.requested');
    assert.equal((requested!.details!.content as { opened_by: string }).opened_by, 'self');
    assert.equal((await post(f, '/account/recovery', { csrf_token: csrfOf(page.body), lost: 'passkeys' }, strong)).statusCode, 409);
  });
});

describe('approving a recovery', () => {
  test('needs an independent recovery approver outside the help desk, and then revokes everything the person holds', async (t) => {
    const f = await fixture(t);
    const aliceSession = await sessionOf(f, 'alice');
    const held = await tokensOf(f, aliceSession);
    assert.equal((await f.introspect('orders-gateway', held.access)).active, true);
    f.clock.advance(1000);
    const { id } = await helpDeskOpens(f);
    // Still working while it waits.
    assert.equal((await f.introspect('orders-gateway', held.access)).active, true);
    assert.deepEqual(await approve(f, id, 'helen'), { ok: false, refusal: 'approver_is_requester' });
    assert.deepEqual(await approve(f, id, 'alice'), { ok: false, refusal: 'approver_is_subject' });
    await holdBothRoles(f.ctx, 'hank');
    assert.deepEqual(await approve(f, id, 'hank'), { ok: false, refusal: 'not_eligible: the help desk never approves a recovery' });
    assert.deepEqual(await approve(f, id, 'sam'), { ok: false, refusal: 'approver_on_requesters_desk' });
    await f.apply({ recovery: { distinct_desks: true } });
    assert.deepEqual(await approve(f, id, 'fiona'), { ok: false, refusal: 'approver_on_requesters_desk' });
    const approved = await approve(f, id, 'rita');
    assert.ok(approved.ok && approved.settled === 'approved');

    assertOAuthError(await f.refresh('web-app', held.refresh, { resource: ordersApi }), 400, 'invalid_grant');
    assert.equal((await f.introspect('orders-gateway', held.access)).active, false, 'consent-bound access tokens end');
    const account = await get(f, '/account', new Jar(aliceSession.cookie));
    assert.match(account.body, /You are not signed in/, 'the session ended');
    const alerts = await f.ctx.storage.db.selectFrom('alerts').select('type').orderBy('created_at').execute();
    assert.deepEqual(alerts.map((a) => a.type), ['recovery.requested', 'recovery.approved']);
  });
});

describe('who may hold the roles of a recovery', () => {
  test('no administrator gives one person both help-desk and recovery-approver, through the admin API as through apply', async (t) => {
    const f = await fixture(t);
    const admin = await f.accessToken('admin-ops', { resource: adminAudience(f.issuer) });
    const call = (method: 'PUT' | 'PATCH', username: string, body: unknown) =>
      f.inject({ method, url: `/admin/users/${username}`, headers: { authorization: `Bearer ${admin}`, 'content-type': method === 'PATCH' ? 'application/merge-patch+json' : 'application/json' }, payload: JSON.stringify(body) });
    const both = ['help-desk', 'recovery-approver'];
    const widened = await call('PATCH', 'rita', { roles: both });
    assertOAuthError(widened, 400, 'invalid_request');
    assert.match(widened.json().error_description, /help-desk and recovery-approver are never held by one person/);
    assert.deepEqual((await person(f.ctx, 'rita')).roles, ['recovery-approver'], 'nothing of the write landed');
    assertOAuthError(await call('PATCH', 'helen', { roles: [...both].reverse() }), 400, 'invalid_request');
    assertOAuthError(await call('PUT', 'newcomer', { username: 'newcomer', name: 'New Comer', password: 'newcomer-long-password-1', roles: both }), 400, 'invalid_request');
    assert.equal(await findUserByUsername(f.ctx, 'newcomer'), undefined, 'nobody was created');
    await assert.rejects(f.apply({ users: [{ username: 'newcomer', name: 'New Comer', roles: both }] }));
    assert.equal(await findUserByUsername(f.ctx, 'newcomer'), undefined);
  });
});

describe('the enrolment link', () => {
  test('enrols one passkey with the person’s password and nothing else, once: no session, no token, the link never logged', async (t) => {
    const f = await fixture(t);
    const { id, path } = await helpDeskOpens(f);
    assert.ok((await approve(f, id)).ok);
    const browser = new Jar();
    const page = await get(f, path, browser);
    assert.equal(page.statusCode, 200, page.body);
    assert.equal(page.headers['content-security-policy'], passkeyPageCsp('ownForm', f.issuer));
    assert.equal(page.headers['referrer-policy'], 'no-referrer');
    assert.equal(page.headers['cache-control'], 'no-store');
    assertOnlyPasskeyScripts(page.body);
    // One form, for a passkey: its fields are the CSRF token, the credential, the password and a name.
    assert.equal([...page.body.matchAll(/<form /g)].length, 1);
    assert.deepEqual([...page.body.matchAll(/<input [^>]*name="([a-z_]+)"/g)].map((m) => m[1]), ['csrf_token', 'credential', 'password', 'name']);
    assert.match(page.body, /data-passkey="register"/);
    const csrf = csrfOf(page.body);

    assert.equal((await post(f, `${path}/options`, { csrf_token: 'forged' }, browser)).statusCode, 403);
    const options = await post(f, `${path}/options`, { csrf_token: csrf }, browser);
    assert.equal(options.statusCode, 200, options.body);
    assert.equal(options.headers['cache-control'], 'no-store');
    const authenticator = new SoftwareAuthenticator({ origin: f.issuer });
    const credential = JSON.stringify(authenticator.register(options.json()));
    // The help desk holds the link but not the password.
    const guessed = await post(f, path, { csrf_token: csrf, password: 'helen-has-no-idea', name: 'Mine', credential }, browser);
    assert.equal(guessed.statusCode, 400);
    assert.match(guessed.body, /That password is not right/);
    const done = await post(f, path, { csrf_token: csrf, password: alicePassword, name: 'New laptop', credential }, browser);
    assert.equal(done.statusCode, 200, done.body);
    assert.match(done.body, /Your new passkey is ready/);
    assert.doesNotMatch(String(done.headers['set-cookie'] ?? ''), /clearance_session=/, 'no session');
    assert.doesNotMatch(done.body, /access_token|code=/);
    assert.deepEqual((await listPasskeys(f.ctx, (await person(f.ctx, 'alice')).id)).map((p) => p.name), ['New laptop']);
    const account = await get(f, '/account', browser);
    assert.match(account.body, /You are not signed in/, 'the link signed nobody in');

    const again = await get(f, path, browser);
    assert.equal(again.statusCode, 410);
    assert.match(again.body, /already used/);
    assert.equal((await post(f, path, { csrf_token: csrf, password: alicePassword, name: 'Again', credential }, browser)).statusCode, 410);
    const usedRefusals = (await f.auditEvents('recovery.link_refused')).filter((e) => e.decision!.reasons[0] === 'used');
    assert.deepEqual(usedRefusals.map((e) => e.txn), [id, id], 'opening a used link and posting to it are on the record');
    const token = path.split('/').pop()!;
    assert.doesNotMatch(await f.auditText(), new RegExp(token));

    const lines = new PassThrough();
    const written: string[] = [];
    lines.on('data', (chunk: Buffer) => written.push(chunk.toString()));
    createLogger('info', lines).info({ req: { method: 'GET', url: `${path}?x=1` } }, 'incoming request');
    await new Promise((resolve) => setImmediate(resolve));
    assert.match(written.join(''), /"path":"\/recovery\/\[redacted\]"/);
    assert.doesNotMatch(written.join(''), new RegExp(token));
  });

  test('refuses the link once an administrator has set the password while the request waited, even with that password, and records why', async (t) => {
    const f = await fixture(t);
    const { id, path } = await helpDeskOpens(f);
    const admin = await f.accessToken('admin-ops', { resource: adminAudience(f.issuer) });
    const known = 'administrator-knows-it-1';
    const reset = await f.inject({ method: 'PATCH', url: '/admin/users/alice', headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/merge-patch+json' }, payload: JSON.stringify({ password: known }) });
    assert.equal(reset.statusCode, 200, reset.body);
    assert.ok((await approve(f, id)).ok);
    const browser = new Jar();
    const page = await get(f, path, browser);
    assert.equal(page.statusCode, 410);
    assert.match(page.body, /password of this account was changed/);
    assert.equal(page.headers['cache-control'], 'no-store');
    // The page never offered the form; a POST with the administrator's password is refused all the same.
    const posted = await post(f, path, { csrf_token: 'x', password: known, name: 'Attacker key', credential: '{}' }, browser);
    assert.notEqual(posted.statusCode, 200);
    assert.deepEqual(await listPasskeys(f.ctx, (await person(f.ctx, 'alice')).id), []);
    const refused = await f.auditEvents('recovery.link_refused');
    assert.ok(refused.length >= 1);
    assert.ok(refused.every((e) => e.decision!.reasons[0] === 'password_changed' && e.txn === id));
  });

  test('records every refused use of the link as recovery.link_refused with its reason, on opening it as on posting to it, never with the token', async (t) => {
    const f = await fixture(t);
    const { id, path } = await helpDeskOpens(f);
    const token = path.split('/').pop()!;
    const reasons = async () => (await f.auditEvents('recovery.link_refused')).map((e) => ({ reason: e.decision!.reasons[0], txn: e.txn, cause: e.details?.cause }));
    assert.equal((await get(f, path)).statusCode, 403, 'not approved yet');
    assert.deepEqual(await reasons(), [{ reason: 'not_approved', txn: id, cause: undefined }]);
    assert.ok((await approve(f, id)).ok);
    assert.equal((await get(f, path)).statusCode, 200, 'a live link is no refusal');
    assert.equal((await f.auditEvents('recovery.link_refused')).length, 1);
    f.clock.advance(15 * 60_000);
    assert.equal((await get(f, path)).statusCode, 410);
    assert.equal((await post(f, path, { csrf_token: 'x', password: alicePassword, name: 'Late', credential: '{}' })).statusCode, 410);
    assert.equal((await post(f, `${path}/options`, { csrf_token: 'x' })).statusCode, 404);
    assert.deepEqual((await reasons()).slice(1), [
      { reason: 'expired', txn: id, cause: undefined },
      { reason: 'expired', txn: id, cause: undefined },
      { reason: 'expired', txn: id, cause: undefined },
    ]);
    const [first] = await f.auditEvents('recovery.link_refused');
    assert.equal(first!.subject, (await person(f.ctx, 'alice')).id);
    assert.equal(first!.details?.request_id, id);
    // A token that names no link: on the record too (through the refusal limit: anyone can try one).
    assert.equal((await get(f, `/recovery/${'A'.repeat(43)}`)).statusCode, 404);
    const [unknown] = (await f.auditEvents('recovery.link_refused')).slice(4);
    assert.deepEqual(unknown!.decision!.reasons, ['unknown']);
    assert.equal(unknown!.txn, undefined);
    assert.doesNotMatch(await f.auditText(), new RegExp(token), 'never the link’s token');
    assert.doesNotMatch(await f.auditText(), /AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/, 'nor a guessed one');
  });

  test('records a link refused because its person was disabled since, with the request and why', async (t) => {
    const f = await fixture(t);
    const { id, path } = await helpDeskOpens(f);
    assert.ok((await approve(f, id)).ok);
    const admin = await f.accessToken('admin-ops', { resource: adminAudience(f.issuer) });
    const disabled = await f.inject({ method: 'PATCH', url: '/admin/users/alice', headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/merge-patch+json' }, payload: JSON.stringify({ status: 'disabled' }) });
    assert.equal(disabled.statusCode, 200, disabled.body);
    assert.equal((await get(f, path)).statusCode, 404);
    const [event] = await f.auditEvents('recovery.link_refused');
    assert.deepEqual(event!.decision!.reasons, ['unknown']);
    assert.equal(event!.txn, id);
    assert.equal(event!.details?.cause, 'person_inactive');
  });

  test('refuses a wrong token, a link not approved, and one that expired', async (t) => {
    const f = await fixture(t);
    const unknown = await get(f, `/recovery/${'A'.repeat(43)}`);
    assert.equal(unknown.statusCode, 404);
    assert.match(unknown.body, /This link is not valid/);
    assert.equal((await get(f, '/recovery/short')).statusCode, 404);
    const options = await post(f, `/recovery/${'A'.repeat(43)}/options`, { csrf_token: 'x' });
    assertOAuthError(options, 404, 'not_found');
    const { id, path } = await helpDeskOpens(f);
    assert.equal((await get(f, path)).statusCode, 403);
    assert.ok((await approve(f, id)).ok);
    assert.equal((await get(f, path)).statusCode, 200);
    f.clock.advance(15 * 60_000);
    const expired = await get(f, path);
    assert.equal(expired.statusCode, 410);
    assert.match(expired.body, /This link has expired/);
  });
});

describe('between the approval and the enrolment', () => {
  test('refuses the password alone a sign-in, and so a passkey of its own, once the approval removed every factor above it', async (t) => {
    const f = await fixture(t);
    const { id } = await helpDeskOpens(f);
    // An administrator resets alice's password while the request waits: the link is void, and they know the password.
    const admin = await f.accessToken('admin-ops', { resource: adminAudience(f.issuer) });
    const known = 'administrator-knows-it-1';
    const reset = await f.inject({ method: 'PATCH', url: '/admin/users/alice', headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/merge-patch+json' }, payload: JSON.stringify({ password: known }) });
    assert.equal(reset.statusCode, 200, reset.body);
    assert.ok((await approve(f, id)).ok);

    const jar = new Jar();
    const { id: interaction } = await startAuthorization(f, jar);
    await submitPassword(f, jar, interaction, 'alice', known);
    const account = await get(f, '/account', jar);
    if (account.statusCode === 200 && !/You are not signed in/.test(account.body)) {
      const options = await post(f, '/account/passkeys/options', { csrf_token: csrfOf(account.body) }, jar);
      if (options.statusCode === 200) {
        const credential = JSON.stringify(new SoftwareAuthenticator({ origin: f.issuer }).register(options.json()));
        await post(f, '/account/passkeys', { csrf_token: csrfOf(account.body), name: 'Attacker key', credential }, jar);
      }
    }
    assert.deepEqual((await listPasskeys(f.ctx, (await person(f.ctx, 'alice')).id)).map((p) => p.name), [], 'no passkey but through the link');
    assert.match(account.body, /You are not signed in/, 'the password alone signs nobody in while the recovery waits for its link');
    // Nor does a password set after the approval open the door.
    const again = await f.inject({ method: 'PATCH', url: '/admin/users/alice', headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/merge-patch+json' }, payload: JSON.stringify({ password: 'administrator-knows-it-2' }) });
    assert.equal(again.statusCode, 400, again.body);
  });

  test('lifts that hold with the link’s enrolment, and holds nobody who keeps a factor above the password', async (t) => {
    const f = await fixture(t);
    const { id, path } = await helpDeskOpens(f, { ...checked, lost: ['passkeys'] });
    assert.ok((await approve(f, id)).ok);
    const aliceId = (await person(f.ctx, 'alice')).id;
    assert.equal(await credentialsHeld(f.ctx.storage.db, aliceId), true);
    const [disabled] = await f.auditEvents('recovery.factors_disabled');
    assert.equal(disabled!.details?.credentials_held, true);
    const browser = new Jar();
    const csrf = csrfOf((await get(f, path, browser)).body);
    const options = await post(f, `${path}/options`, { csrf_token: csrf }, browser);
    const credential = JSON.stringify(new SoftwareAuthenticator({ origin: f.issuer }).register(options.json()));
    assert.equal((await post(f, path, { csrf_token: csrf, password: alicePassword, name: 'New laptop', credential }, browser)).statusCode, 200);
    assert.equal(await credentialsHeld(f.ctx.storage.db, aliceId), false, 'the enrolment lifts it');
    const [enrolled] = await f.auditEvents('recovery.enrolled');
    assert.equal(enrolled!.details?.credential_hold_lifted, true);

    // A recovery of the authenticator alone leaves her passkey: nothing is held.
    const second = await helpDeskOpens(f, { ...checked, lost: ['authenticator'] });
    assert.ok((await approve(f, second.id)).ok);
    assert.equal(await credentialsHeld(f.ctx.storage.db, aliceId), false);
  });
});

describe('whoever set the person’s password', () => {
  /** `username` sets alice's password through the admin API with their own person token. */
  async function setsAlicePassword(f: CodeFlowFixture, username: string): Promise<void> {
    const token = await personAdminToken(f, username, phr, 'admin:write');
    const reset = await f.inject({ method: 'PATCH', url: '/admin/users/alice', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/merge-patch+json' }, payload: JSON.stringify({ password: 'chosen-by-someone-else-1' }) });
    assert.equal(reset.statusCode, 200, reset.body);
    assert.equal((await person(f.ctx, 'alice')).passwordSet?.by, (await person(f.ctx, username)).id);
  }

  test('does not approve the recovery: they hold the half of the link only the person should', async (t) => {
    const f = await fixture(t);
    await setsAlicePassword(f, 'rita');
    const { id } = await helpDeskOpens(f);
    assert.deepEqual(await approve(f, id, 'rita'), { ok: false, refusal: "not_eligible: set the person's password" });
    const [refused] = await f.auditEvents('approval.refused');
    assert.deepEqual(refused!.decision!.reasons, ["not_eligible: set the person's password"]);
    assert.ok((await approve(f, id, 'fiona')).ok, 'another approver may');
  });

  test('does not open the recovery as the help desk, and the refusal is on the record', async (t) => {
    const f = await fixture(t);
    await setsAlicePassword(f, 'helen');
    const response = await open(f, await personAdminToken(f, 'helen'), 'alice', checked);
    assertOAuthError(response, 403, 'access_denied');
    const refused = (await f.auditEvents('recovery.refused')).map((e) => e.decision!.reasons[0]);
    assert.deepEqual(refused, ['set_password']);
  });
});

describe('guessing the password of a link', () => {
  test('checks at most five passwords against a link, even sent all at once, and then not the right one', async (t) => {
    const f = await fixture(t);
    const { id, path } = await helpDeskOpens(f);
    assert.ok((await approve(f, id)).ok);
    const browser = new Jar();
    const csrf = csrfOf((await get(f, path, browser)).body);
    // Whoever holds the link (the help desk) but not the password sends ten guesses in parallel.
    const guesses = await Promise.all(Array.from({ length: 10 }, (_, i) => post(f, path, { csrf_token: csrf, password: `guess-number-${i}-of-ten`, name: 'Mine', credential: '{}' }, browser)));
    const answeredWrong = guesses.filter((g) => /That password is not right/.test(g.body)).length;
    assert.ok(answeredWrong <= 4, `${answeredWrong} guesses were answered "not right": only the first four may be`);
    const checked = (await f.auditEvents('recovery.link_refused')).filter((e) => e.decision!.reasons[0] === 'wrong_password');
    assert.ok(checked.length <= 5, `${checked.length} passwords were checked against the link`);
    assert.ok(guesses.every((g) => g.statusCode === 400 || g.statusCode === 404), guesses.map((g) => g.statusCode).join(','));
    // The link is dead: the right password gets the same "not valid" as anyone.
    const right = await post(f, path, { csrf_token: csrf, password: alicePassword, name: 'Mine', credential: '{}' }, browser);
    assert.equal(right.statusCode, 404);
    assert.match(right.body, /This link is not valid/);
  });
});

describe('the passkey options of a link', () => {
  test('keeps at most a few live challenges per link, asked one after another or all at once: the newest work, the oldest are replaced', async (t) => {
    const f = await fixture(t);
    const { id, path } = await helpDeskOpens(f);
    assert.ok((await approve(f, id)).ok);
    const browser = new Jar();
    const csrf = csrfOf((await get(f, path, browser)).body);
    const live = async () => (await f.ctx.storage.db.selectFrom('passkey_challenges').select('id').where('binding', '=', enrolmentBinding(id)).execute()).length;
    const asked: LightMyRequestResponse[] = [];
    for (let i = 0; i < 12; i++) {
      asked.push(await post(f, `${path}/options`, { csrf_token: csrf }, browser));
      f.clock.advance(1);
    }
    assert.ok(asked.every((o) => o.statusCode === 200));
    assert.equal(await live(), maxLiveChallengesPerLink);
    await Promise.all(Array.from({ length: 12 }, () => post(f, `${path}/options`, { csrf_token: csrf }, browser)));
    assert.ok((await live()) <= maxLiveChallengesPerLink, `${await live()} live challenges for one link`);

    // The first options' challenge was replaced: its ceremony is refused, the newest one's enrols.
    const authenticator = new SoftwareAuthenticator({ origin: f.issuer });
    const stale = JSON.stringify(authenticator.register(asked[0]!.json()));
    const refused = await post(f, path, { csrf_token: csrf, password: alicePassword, name: 'Stale', credential: stale }, browser);
    assert.equal(refused.statusCode, 400);
    assert.match(refused.body, /expired or was already used/);
    const fresh = await post(f, `${path}/options`, { csrf_token: csrf }, browser);
    const done = await post(f, path, { csrf_token: csrf, password: alicePassword, name: 'New laptop', credential: JSON.stringify(new SoftwareAuthenticator({ origin: f.issuer }).register(fresh.json())) }, browser);
    assert.equal(done.statusCode, 200, done.body);
  });
});

describe('telling the person on /account', () => {
  test('shows the opening, the approval and the use of a recovery of theirs at their next sign-in to /account, until a session of their own factor has seen them', async (t) => {
    const f = await fixture(t);
    const { id, path } = await helpDeskOpens(f, { ...checked, lost: ['passkeys'] });
    assert.ok((await approve(f, id)).ok);
    const browser = new Jar();
    const csrf = csrfOf((await get(f, path, browser)).body);
    const options = await post(f, `${path}/options`, { csrf_token: csrf }, browser);
    const credential = JSON.stringify(new SoftwareAuthenticator({ origin: f.issuer }).register(options.json()));
    assert.equal((await post(f, path, { csrf_token: csrf, password: alicePassword, name: 'New laptop', credential }, browser)).statusCode, 200);

    const account = (who: Person) => f.inject({ method: 'GET', url: '/account', headers: { cookie: who.cookie } });
    // A password-only session is shown them and keeps them (whoever knows the password cannot make them go away).
    const weak = await account(await sessionOf(f, 'alice', { acr: acr.password, amr: ['pwd'] }));
    assert.equal(weak.statusCode, 200, weak.body);
    assert.match(weak.body, /A recovery of your account was asked for on <time[^>]*>[^<]*<\/time>, by the help desk\./);
    const first = await account(await sessionOf(f, 'alice'));
    assert.equal(first.statusCode, 200, first.body);
    assert.match(first.body, /A recovery of your account was asked for on <time[^>]*>[^<]*<\/time>, by the help desk\./);
    assert.match(first.body, /A recovery of your account was approved on <time[^>]*>[^<]*<\/time>: you were signed out everywhere, your passkeys were removed\./);
    assert.match(first.body, /A new passkey was enrolled through your recovery link on <time[^>]*>[^<]*<\/time> from [0-9.]+\./);
    assert.match(first.body, /If this was not you, tell your administrator/);
    const next = await account(await sessionOf(f, 'alice'));
    assert.doesNotMatch(next.body, /A recovery of your account/, 'seen once by the person’s own passkey session');
  });
});
