import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { adminAudience } from '../../src/admin/authorize.ts';
import { acr } from '../../src/identity/acr.ts';
import { verifyLogin } from '../../src/identity/login.ts';
import { hashPassword } from '../../src/identity/passwords.ts';
import { guardedRoles, privilegedRoles } from '../../src/identity/roles.ts';
import { startSession } from '../../src/identity/sessions.ts';
import { findUserByUsername } from '../../src/identity/users.ts';
import { mintAccessToken, newJti } from '../../src/tokens/access-token.ts';
import { sql } from 'kysely';
import { codeFlowFixture, type CodeFlowFixture } from '../authorization/fixture.ts';
import { testDialects, type TestDialect } from '../helpers/storage.ts';
import { assertOAuthError, decodeJwt, ordersApi } from '../endpoints/fixture.ts';

// Segregation of duties for privileged roles (docs/approvals.md `role_grant`, docs/recovery.md):
// through the admin API no PUT, PATCH or apply document gives a person a guarded role; an
// administrator asks at POST /admin/users/{username}/role-grants and a second administrator
// approves. The CLI (the operator with the database) gives roles as before.

const password = 'correct horse battery staple 7';
const person = (username: string, roles: string[] = [], extra: Record<string, unknown> = {}) => ({ username, password, name: username, roles, ...extra });
const phr: { acr: string; amr: string[] } = { acr: acr.phishingResistant, amr: ['hwk', 'user', 'mfa'] };
const pwd = { acr: 'urn:clearance:acr:pwd', amr: ['pwd'] };
const scope = 'admin:read admin:write approvals:decide';

async function harness(t: TestContext, dialect?: TestDialect): Promise<CodeFlowFixture> {
  const f = await codeFlowFixture(t, { risk: 'off', ...(dialect ? { dialect } : {}) });
  // Through the CLI's path (the fixture's apply is `via: cli`): the operator gives roles.
  await f.apply({
    users: [
      person('ada', ['admin']),
      person('abe', ['admin']),
      person('pat'),
      person('bob'),
      person('rita', ['recovery-approver']),
      person('dora', [], { status: 'disabled' }),
    ],
  });
  f.clock.advance(2000);
  return f;
}

/** A person's admin token under their own consent grant, at this level (`extra`: e.g. an `act`). */
async function personToken(f: CodeFlowFixture, username: string, level = phr, extra: Record<string, unknown> = {}): Promise<string> {
  const userId = (await findUserByUsername(f.ctx, username))!.id;
  const started = await startSession(f.ctx, { userId, ...level, cookieHeader: undefined });
  const who = { userId, cookie: started.setCookie.split(';')[0]!, authentication: started.authentication };
  const { code, pkce } = await f.authorizeAndApprove({ person: who, query: { scope: 'openid order:create', resource: ordersApi } });
  const redeemed = await f.redeem('web-app', code, pkce.verifier);
  assert.equal(redeemed.statusCode, 200, redeemed.body);
  const grantId = String(decodeJwt(redeemed.json().access_token as string).payload.grant_id);
  const iat = Math.floor(f.clock.now() / 1000);
  return mintAccessToken(f.ctx.keys, { iss: f.issuer, aud: adminAudience(f.issuer), iat, exp: iat + 300, auth_time: iat, jti: newJti(), client_id: 'web-app', scope, sub: userId, grant_id: grantId, acr: level.acr, amr: level.amr, ...extra });
}

/** The client's own admin token (client credentials): no person behind it. */
const clientToken = (f: CodeFlowFixture) => f.accessToken('admin-ops', { resource: adminAudience(f.issuer) });

function call(f: CodeFlowFixture, token: string, method: 'GET' | 'PUT' | 'PATCH' | 'POST', url: string, body?: unknown, type = 'application/json'): Promise<LightMyRequestResponse> {
  return f.inject({
    method,
    url,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': method === 'PATCH' ? 'application/merge-patch+json' : type }) },
    ...(body === undefined ? {} : { payload: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
}

async function rolesOf(f: CodeFlowFixture, username: string): Promise<string[] | undefined> {
  return (await findUserByUsername(f.ctx, username))?.roles;
}

const idOf = async (f: CodeFlowFixture, username: string) => (await findUserByUsername(f.ctx, username))!.id;

const refusals = async (f: CodeFlowFixture) => (await f.auditEvents('user.role_grant_refused')).map((e) => ({ reasons: e.decision?.reasons, via: e.details?.via, role: e.details?.role, subject: e.subject }));

describe('the guarded roles', () => {
  test('are the privileged roles and compliance, in one list', () => {
    assert.deepEqual([...guardedRoles], [...privilegedRoles, 'compliance']);
  });
});

describe('PUT and PATCH /admin/users give no guarded role', () => {
  test('adding a guarded role to an existing person is 403 naming the role-grants endpoint, for every guarded role, and changes nothing', async (t) => {
    const f = await harness(t);
    const token = await clientToken(f);
    for (const role of guardedRoles) {
      const patched = assertOAuthError(await call(f, token, 'PATCH', '/admin/users/pat', { roles: [role] }), 403, 'access_denied', role);
      assert.match(String(patched.error_description), /POST \/admin\/users\/pat\/role-grants/);
    }
    const current = (await call(f, token, 'GET', '/admin/users/pat')).json();
    const { name, email, desks, attributes, status } = current;
    assertOAuthError(await call(f, token, 'PUT', '/admin/users/pat', { name, email, desks, attributes, status, roles: ['trader', 'approver'] }), 403, 'access_denied');
    // A person's own token is refused alike: the second person is the approver, not the token.
    assertOAuthError(await call(f, await personToken(f, 'ada'), 'PATCH', '/admin/users/pat', { roles: ['help-desk'] }), 403, 'access_denied');
    assert.deepEqual(await rolesOf(f, 'pat'), []);
    const recorded = await refusals(f);
    assert.equal(recorded.length, guardedRoles.length + 2);
    assert.deepEqual(recorded[0], { reasons: ['not_through_admin_api'], via: 'users', role: guardedRoles[0], subject: await idOf(f, 'pat') });
  });

  test('creating a person holding a guarded role is 403 and creates nobody', async (t) => {
    const f = await harness(t);
    const token = await clientToken(f);
    for (const roles of [['help-desk'], ['recovery-approver'], ['trader', 'compliance']]) {
      assertOAuthError(await call(f, token, 'PUT', '/admin/users/mallory', { name: 'Mallory', password: 'mallory-long-password-1', roles }), 403, 'access_denied', roles.join());
    }
    assert.equal(await findUserByUsername(f.ctx, 'mallory'), undefined);
  });

  test('removing a guarded role, keeping the roles a person holds, and giving an ordinary role pass as before', async (t) => {
    const f = await harness(t);
    const token = await clientToken(f);
    const kept = await call(f, token, 'PATCH', '/admin/users/rita', { email: 'rita@broker.example' });
    assert.equal(kept.statusCode, 200, kept.body);
    const widened = await call(f, token, 'PATCH', '/admin/users/rita', { roles: ['recovery-approver', 'trader'] });
    assert.equal(widened.statusCode, 200, widened.body);
    const removed = await call(f, token, 'PATCH', '/admin/users/rita', { roles: ['trader'] });
    assert.equal(removed.statusCode, 200, removed.body);
    assert.deepEqual(await rolesOf(f, 'rita'), ['trader']);
    const created = await call(f, token, 'PUT', '/admin/users/tom', { name: 'Tom', roles: ['trader'] });
    assert.equal(created.statusCode, 200, created.body);
    // Given back a removed guarded role, she asks like anyone else.
    assertOAuthError(await call(f, token, 'PATCH', '/admin/users/rita', { roles: ['trader', 'recovery-approver'] }), 403, 'access_denied');
  });
});

describe('POST /admin/apply gives no guarded role', () => {
  test('a document adding a guarded role is 403, the dry run too, nothing written; the same document through the CLI path applies', async (t) => {
    const f = await harness(t);
    const token = await clientToken(f);
    for (const users of [[person('pat', ['help-desk'])], [person('newbie', ['recovery-approver'])]]) {
      const document = JSON.stringify({ users });
      assertOAuthError(await call(f, token, 'POST', '/admin/apply?dry_run=true', document), 403, 'access_denied');
      const refused = assertOAuthError(await call(f, token, 'POST', '/admin/apply', document), 403, 'access_denied');
      assert.match(String(refused.error_description), new RegExp(`POST /admin/users/${users[0]!.username}/role-grants`));
    }
    assert.deepEqual(await rolesOf(f, 'pat'), []);
    assert.equal(await findUserByUsername(f.ctx, 'newbie'), undefined);
    assert.deepEqual((await refusals(f)).map((r) => r.via), ['apply', 'apply', 'apply', 'apply']);
    // A document keeping the roles people hold applies (naming no password: a holder's is not set here).
    const keeping = await call(f, token, 'POST', '/admin/apply', JSON.stringify({ users: [{ username: 'rita', name: 'rita', roles: ['recovery-approver'], email: 'rita@broker.example' }] }));
    assert.equal(keeping.statusCode, 200, keeping.body);
    // The operator with the database (clearance apply: via cli) gives them.
    await f.apply({ users: [person('pat', ['help-desk']), person('newbie', ['recovery-approver'])] });
    assert.deepEqual(await rolesOf(f, 'pat'), ['help-desk']);
    assert.deepEqual(await rolesOf(f, 'newbie'), ['recovery-approver']);
  });
});

const grants = (username: string) => `/admin/users/${username}/role-grants`;

describe('POST /admin/users/{username}/role-grants', () => {
  test('refuses a client’s own token, a delegated token, a person without admin and a password-only session: 403, each recorded', async (t) => {
    const f = await harness(t);
    const body = { role: 'approver', reason: 'CHG-1' };
    assertOAuthError(await call(f, await clientToken(f), 'POST', grants('pat'), body), 403, 'access_denied');
    assertOAuthError(await call(f, await personToken(f, 'ada', phr, { act: { sub: 'some-agent-client' } }), 'POST', grants('pat'), body), 403, 'access_denied');
    assertOAuthError(await call(f, await personToken(f, 'bob'), 'POST', grants('pat'), body), 403, 'access_denied');
    assertOAuthError(await call(f, await personToken(f, 'ada', pwd), 'POST', grants('pat'), body), 403, 'access_denied');
    const pat = await idOf(f, 'pat');
    assert.deepEqual(await refusals(f), [
      { reasons: ['client_token'], via: 'role_grant', role: 'approver', subject: pat },
      { reasons: ['delegated_token'], via: 'role_grant', role: 'approver', subject: pat },
      { reasons: ['not_admin'], via: 'role_grant', role: 'approver', subject: pat },
      { reasons: ['insufficient_authentication'], via: 'role_grant', role: 'approver', subject: pat },
    ]);
    assert.deepEqual(await f.auditEvents('approval.requested'), []);
  });

  test('refuses an unknown, inactive or held person, a role that is not guarded, a role held already, help-desk to a recovery approver, and a second grant while one waits', async (t) => {
    const f = await harness(t);
    const ada = await personToken(f, 'ada');
    const admin = await clientToken(f);
    // A leaver re-activated: active, but her credentials are on hold until an approved recovery.
    await f.apply({ users: [person('lea')] });
    assert.equal((await call(f, admin, 'POST', '/admin/users/lea/offboard', {})).statusCode, 200);
    assert.equal((await call(f, admin, 'PATCH', '/admin/users/lea', { status: 'active' })).statusCode, 200);
    assertOAuthError(await call(f, ada, 'POST', grants('nobody'), { role: 'approver', reason: 'r' }), 404, 'not_found');
    assertOAuthError(await call(f, ada, 'POST', grants('dora'), { role: 'approver', reason: 'r' }), 400, 'invalid_request');
    assertOAuthError(await call(f, ada, 'POST', grants('lea'), { role: 'approver', reason: 'r' }), 400, 'invalid_request');
    const ordinary = assertOAuthError(await call(f, ada, 'POST', grants('pat'), { role: 'trader', reason: 'r' }), 400, 'invalid_request');
    assert.match(String(ordinary.error_description), /PUT or PATCH/);
    assertOAuthError(await call(f, ada, 'POST', grants('pat'), { role: 'approver' }), 400, 'invalid_request');
    assertOAuthError(await call(f, ada, 'POST', grants('pat'), { role: 'approver', reason: '' }), 400, 'invalid_request');
    assertOAuthError(await call(f, ada, 'POST', grants('abe'), { role: 'admin', reason: 'r' }), 409, 'invalid_request');
    const both = assertOAuthError(await call(f, ada, 'POST', grants('rita'), { role: 'help-desk', reason: 'r' }), 400, 'invalid_request');
    assert.match(String(both.error_description), /never held by one person/);
    assert.equal((await call(f, ada, 'POST', grants('pat'), { role: 'approver', reason: 'CHG-1' })).statusCode, 202);
    assertOAuthError(await call(f, ada, 'POST', grants('pat'), { role: 'approver', reason: 'CHG-1' }), 409, 'invalid_request');
    assert.equal((await f.auditEvents('approval.requested')).length, 1);
  });
});

describe('the approval of a role grant', () => {
  test('neither the administrator who asked nor the person receiving the role approves it; a second administrator at phr does, and the person then holds it, audited', async (t) => {
    const f = await harness(t);
    // pat is an administrator asking to become an approver: a grant to an admin, so the grantee could otherwise approve.
    await f.apply({ users: [person('pat', ['admin'])] });
    f.clock.advance(2000);
    const ada = await personToken(f, 'ada');
    const asked = await call(f, ada, 'POST', grants('pat'), { role: 'approver', reason: 'CHG-7 new desk head' });
    assert.equal(asked.statusCode, 202, asked.body);
    const { request_id: id, required_approvals } = asked.json();
    assert.equal(required_approvals, 1);
    const [requested] = await f.auditEvents('approval.requested');
    assert.equal(requested!.actor, await idOf(f, 'ada'));
    assert.equal(requested!.subject, await idOf(f, 'pat'));
    assert.equal((requested!.details as { kind: string }).kind, 'role_grant');

    const decide = (token: string, decision = 'approve', reason?: string) => call(f, token, 'POST', `/admin/approvals/${id}/decision`, { decision, ...(reason ? { reason } : {}) });
    assertOAuthError(await decide(ada), 403, 'access_denied');
    assertOAuthError(await decide(await personToken(f, 'pat')), 403, 'access_denied');
    assertOAuthError(await decide(await personToken(f, 'bob')), 403, 'access_denied');
    assert.deepEqual(
      (await f.auditEvents('approval.refused')).map((e) => e.decision?.reasons[0]),
      ['approver_is_requester', 'approver_is_subject', 'not_eligible: not a holder of admin'],
    );
    assert.deepEqual(await rolesOf(f, 'pat'), ['admin']);

    const abe = await personToken(f, 'abe');
    const shown = await call(f, abe, 'GET', `/admin/approvals/${id}`);
    assert.equal(shown.statusCode, 200, shown.body);
    assert.match(shown.body, /Grant of the role approver/);
    assert.match(shown.body, /CHG-7 new desk head/);
    const approved = await decide(abe);
    assert.equal(approved.statusCode, 200, approved.body);
    assert.equal(approved.json().settled, 'approved');
    const read = await call(f, abe, 'GET', '/admin/users/pat');
    assert.deepEqual(read.json().roles, ['admin', 'approver']);
    const [granted] = await f.auditEvents('user.role_granted');
    assert.equal(granted!.txn, id);
    assert.equal(granted!.actor, await idOf(f, 'abe'));
    assert.deepEqual(granted!.details, {
      request_id: id,
      role: 'approver',
      grantee: await idOf(f, 'pat'),
      requested_by: await idOf(f, 'ada'),
      approved_by: [await idOf(f, 'abe')],
      reason: 'CHG-7 new desk head',
    });
  });

  test('a password-only second administrator cannot approve; a denial changes nothing', async (t) => {
    const f = await harness(t);
    const asked = await call(f, await personToken(f, 'ada'), 'POST', grants('pat'), { role: 'compliance', reason: 'CHG-8' });
    assert.equal(asked.statusCode, 202, asked.body);
    const id = asked.json().request_id;
    const weak = await call(f, await personToken(f, 'abe', pwd), 'POST', `/admin/approvals/${id}/decision`, { decision: 'approve' });
    assert.notEqual(weak.statusCode, 200, weak.body);
    const denied = await call(f, await personToken(f, 'abe'), 'POST', `/admin/approvals/${id}/decision`, { decision: 'deny', reason: 'no change ticket' });
    assert.equal(denied.statusCode, 200, denied.body);
    assert.equal(denied.json().settled, 'denied');
    assert.deepEqual(await rolesOf(f, 'pat'), []);
    assert.deepEqual(await f.auditEvents('user.role_granted'), []);
  });

  test('an approved grant the person’s record no longer allows gives nothing, and says so', async (t) => {
    const f = await harness(t);
    const asked = await call(f, await personToken(f, 'ada'), 'POST', grants('pat'), { role: 'approver', reason: 'CHG-9' });
    const id = asked.json().request_id;
    // Disabled meanwhile.
    assert.equal((await call(f, await clientToken(f), 'PATCH', '/admin/users/pat', { status: 'disabled' })).statusCode, 200);
    const approved = await call(f, await personToken(f, 'abe'), 'POST', `/admin/approvals/${id}/decision`, { decision: 'approve' });
    assert.equal(approved.statusCode, 200, approved.body);
    assert.deepEqual(await rolesOf(f, 'pat'), []);
    const [refused] = await f.auditEvents('user.role_grant_refused');
    assert.deepEqual(refused!.decision?.reasons, ['person_not_active']);
  });
});

// The password step (docs/recovery.md "Who holds the password", docs/approvals.md "Role grants"):
// an administrator who could set a guarded role's holder's password could sign in as them and
// enrol a passkey. Through the admin API no write sets it; who set a person's password is on their
// record, and that administrator neither asks for nor approves a guarded role for them.

const passwordRow = (f: CodeFlowFixture, username: string) =>
  f.ctx.storage.db.selectFrom('users').select(['password_hash', 'password_set_by', 'password_set_at']).where('username', '=', username).executeTakeFirstOrThrow();

const hashOf = async (f: CodeFlowFixture, username: string) =>
  (await f.ctx.storage.db.selectFrom('users').select('password_hash').where('username', '=', username).executeTakeFirstOrThrow()).password_hash;

const passwordRefusals = async (f: CodeFlowFixture) =>
  (await f.auditEvents('user.password_reset_refused')).map((e) => ({ reasons: e.decision?.reasons, via: e.details?.via, role: e.details?.role, subject: e.subject }));

describe('the password of a guarded role’s holder is not set through the admin API', () => {
  test('PUT and PATCH with a password for a holder are 403, nothing written, each refusal recorded with its reason', async (t) => {
    const f = await harness(t);
    const before = await hashOf(f, 'rita');
    for (const token of [await clientToken(f), await personToken(f, 'ada')]) {
      const patched = assertOAuthError(await call(f, token, 'PATCH', '/admin/users/rita', { password: 'a brand new password 1' }), 403, 'access_denied');
      assert.match(String(patched.error_description), /recovery/);
      const current = (await call(f, token, 'GET', '/admin/users/rita')).json();
      const { name, email, desks, roles, attributes, status } = current;
      assertOAuthError(await call(f, token, 'PUT', '/admin/users/rita', { name, email, desks, roles, attributes, status, password: 'a brand new password 2' }), 403, 'access_denied');
    }
    // Even the password she has: an answer "unchanged" against 403 would tell a guess from a miss.
    assertOAuthError(await call(f, await clientToken(f), 'PATCH', '/admin/users/rita', { password }), 403, 'access_denied');
    // Removing her role in the same write does not help: the write is judged on the roles she holds.
    assertOAuthError(await call(f, await clientToken(f), 'PATCH', '/admin/users/rita', { roles: [], password: 'a brand new password 3' }), 403, 'access_denied');
    assert.deepEqual(await hashOf(f, 'rita'), before);
    assert.deepEqual(await rolesOf(f, 'rita'), ['recovery-approver']);
    assert.deepEqual(await f.auditEvents('user.password_reset'), []);
    const rita = await idOf(f, 'rita');
    const recorded = await passwordRefusals(f);
    assert.equal(recorded.length, 6);
    assert.deepEqual(recorded[0], { reasons: ['guarded_role'], via: 'users', role: 'recovery-approver', subject: rita });
  });

  test('a password for a person a role grant waits for is 403 too; a person holding no guarded role has theirs reset as before', async (t) => {
    const f = await harness(t);
    const asked = await call(f, await personToken(f, 'ada'), 'POST', grants('pat'), { role: 'approver', reason: 'CHG-11' });
    assert.equal(asked.statusCode, 202, asked.body);
    const before = await hashOf(f, 'pat');
    assertOAuthError(await call(f, await clientToken(f), 'PATCH', '/admin/users/pat', { password: 'a brand new password 4' }), 403, 'access_denied');
    assert.deepEqual(await hashOf(f, 'pat'), before);
    assert.deepEqual(await passwordRefusals(f), [{ reasons: ['role_grant_waiting'], via: 'users', role: 'approver', subject: await idOf(f, 'pat') }]);
    const reset = await call(f, await clientToken(f), 'PATCH', '/admin/users/bob', { password: 'a brand new password 5' });
    assert.equal(reset.statusCode, 200, reset.body);
    assert.equal((await f.auditEvents('user.password_reset')).length, 1);
  });

  test('POST /admin/apply with a holder’s password is 403, the dry run too, nothing written; the CLI sets it', async (t) => {
    const f = await harness(t);
    const token = await clientToken(f);
    const before = await hashOf(f, 'rita');
    for (const entry of [person('rita', ['recovery-approver'], { password: 'a brand new password 6' }), person('rita', ['recovery-approver'])]) {
      const document = JSON.stringify({ users: [entry] });
      assertOAuthError(await call(f, token, 'POST', '/admin/apply?dry_run=true', document), 403, 'access_denied');
      assertOAuthError(await call(f, token, 'POST', '/admin/apply', document), 403, 'access_denied');
    }
    assert.deepEqual(await hashOf(f, 'rita'), before);
    assert.deepEqual((await passwordRefusals(f)).map((r) => [r.via, r.reasons]), Array(4).fill(['apply', ['guarded_role']]));
    // The hash she has, given back unchanged, names no new password: it passes.
    const same = await call(f, token, 'POST', '/admin/apply', JSON.stringify({ users: [{ username: 'rita', name: 'rita', roles: ['recovery-approver'], password_hash: before }] }));
    assert.equal(same.statusCode, 200, same.body);
    // The operator with the database (clearance apply: via cli) sets it.
    await f.apply({ users: [person('rita', ['recovery-approver'], { password: 'a brand new password 7' })] });
    assert.notEqual(await hashOf(f, 'rita'), before);
  });
});

describe('who set a person’s password', () => {
  test('is on their record: the administrator who set or created it through the admin API; none for the CLI', async (t) => {
    const f = await harness(t);
    const ada = await personToken(f, 'ada');
    f.clock.advance(1000);
    const reset = await call(f, ada, 'PATCH', '/admin/users/pat', { password: 'a brand new password 8' });
    assert.equal(reset.statusCode, 200, reset.body);
    assert.deepEqual({ ...(await passwordRow(f, 'pat')), password_hash: undefined }, { password_hash: undefined, password_set_by: await idOf(f, 'ada'), password_set_at: f.clock.now() });
    const created = await call(f, ada, 'PUT', '/admin/users/nina', { name: 'Nina', password: 'a brand new password 9' });
    assert.equal(created.statusCode, 200, created.body);
    assert.equal((await passwordRow(f, 'nina')).password_set_by, await idOf(f, 'ada'));
    // A client's own token: the client is who set it.
    assert.equal((await call(f, await clientToken(f), 'PATCH', '/admin/users/bob', { password: 'a brand new password 10' })).statusCode, 200);
    assert.equal((await passwordRow(f, 'bob')).password_set_by, 'admin-ops');
    // A write that names no password keeps the record.
    assert.equal((await call(f, ada, 'PATCH', '/admin/users/nina', { email: 'nina@broker.example' })).statusCode, 200);
    assert.equal((await passwordRow(f, 'nina')).password_set_by, await idOf(f, 'ada'));
    // The operator's new password: no administrator knows it.
    f.clock.advance(1000);
    await f.apply({ users: [person('pat', [], { password: 'the operator’s password 1' })] });
    assert.deepEqual({ ...(await passwordRow(f, 'pat')), password_hash: undefined }, { password_hash: undefined, password_set_by: null, password_set_at: f.clock.now() });
  });

  test('stays when the person’s own sign-in rewrites the hash: whoever set the password still knows it', async (t) => {
    const f = await harness(t);
    const ada = await personToken(f, 'ada');
    const weak = await hashPassword('a brand new password 13', { memory: 4096, passes: 1, parallelism: 1 });
    assert.equal((await call(f, ada, 'PATCH', '/admin/users/pat', { password_hash: weak })).statusCode, 200);
    const set = await passwordRow(f, 'pat');
    f.clock.advance(1000);
    const signedIn = await verifyLogin(f.ctx, { username: 'pat', password: 'a brand new password 13', sourceAddress: '198.51.100.7', requestId: 'req-1', clientId: 'web-app' });
    assert.equal(signedIn.ok, true);
    const after = await passwordRow(f, 'pat');
    assert.notEqual(after.password_hash, weak);
    assert.deepEqual([after.password_set_by, after.password_set_at], [await idOf(f, 'ada'), set.password_set_at]);
  });

  test('the administrator who set it cannot ask for a guarded role for the person: 403, recorded as set_password', async (t) => {
    const f = await harness(t);
    const ada = await personToken(f, 'ada');
    assert.equal((await call(f, ada, 'PATCH', '/admin/users/pat', { password: 'a brand new password 11' })).statusCode, 200);
    const refused = assertOAuthError(await call(f, ada, 'POST', grants('pat'), { role: 'approver', reason: 'CHG-12' }), 403, 'access_denied');
    assert.match(String(refused.error_description), /password/);
    assert.deepEqual(await refusals(f), [{ reasons: ['set_password'], via: 'role_grant', role: 'approver', subject: await idOf(f, 'pat') }]);
    assert.deepEqual(await f.auditEvents('approval.requested'), []);
  });

  test('the administrator who set it cannot approve a guarded role for the person; the approver is shown who set it and when', async (t) => {
    const f = await harness(t);
    await f.apply({ users: [person('ari', ['admin'])] });
    f.clock.advance(2000);
    const ada = await personToken(f, 'ada');
    assert.equal((await call(f, ada, 'PATCH', '/admin/users/pat', { password: 'a brand new password 12' })).statusCode, 200);
    const setAt = new Date(f.clock.now()).toISOString();
    f.clock.advance(1000);
    const asked = await call(f, await personToken(f, 'abe'), 'POST', grants('pat'), { role: 'approver', reason: 'CHG-13' });
    assert.equal(asked.statusCode, 202, asked.body);
    const id = asked.json().request_id;
    const adaId = await idOf(f, 'ada');

    const shown = (await call(f, await personToken(f, 'ari'), 'GET', `/admin/approvals/${id}`)).json().approval as { lines: { label: string; value: string }[] };
    const line = shown.lines.find((l) => /password/i.test(l.label));
    assert.ok(line, JSON.stringify(shown.lines));
    assert.match(line.value, new RegExp(adaId));
    assert.match(line.value, new RegExp(setAt.replace(/[.]/g, '\\.')));

    const byAda = await call(f, await personToken(f, 'ada'), 'POST', `/admin/approvals/${id}/decision`, { decision: 'approve' });
    assertOAuthError(byAda, 403, 'access_denied');
    const [refused] = await f.auditEvents('approval.refused');
    assert.match(String(refused!.decision?.reasons[0]), /^not_eligible: .*password/);
    assert.deepEqual(await rolesOf(f, 'pat'), []);
    const approved = await call(f, await personToken(f, 'ari'), 'POST', `/admin/approvals/${id}/decision`, { decision: 'approve' });
    assert.equal(approved.statusCode, 200, approved.body);
    assert.deepEqual(await rolesOf(f, 'pat'), ['approver']);
  });

  test('an approved grant whose requester is found, when it settles, to have set the person’s password gives nothing', async (t) => {
    const f = await harness(t);
    const asked = await call(f, await personToken(f, 'ada'), 'POST', grants('pat'), { role: 'approver', reason: 'CHG-14' });
    const id = asked.json().request_id;
    // Landed while the grant waited (a write racing the asking), as the record now says.
    await f.ctx.storage.db.updateTable('users').set({ password_set_by: await idOf(f, 'ada'), password_set_at: f.clock.now() }).where('username', '=', 'pat').execute();
    const approved = await call(f, await personToken(f, 'abe'), 'POST', `/admin/approvals/${id}/decision`, { decision: 'approve' });
    assert.equal(approved.statusCode, 200, approved.body);
    assert.deepEqual(await rolesOf(f, 'pat'), []);
    const [refused] = await f.auditEvents('user.role_grant_refused');
    assert.deepEqual(refused!.decision?.reasons, ['requester_set_password']);
  });
});

const postgres = testDialects().find((d) => d.name === 'postgres');

describe('a grant settles on the person as they are when it lands', { skip: postgres ? false : 'PostgreSQL only: set TEST_DATABASE_URL' }, () => {
  test('on PostgreSQL, an offboarding committed while the approval waits for the person’s row is seen: nothing is given', async (t) => {
    const f = await harness(t, postgres);
    const asked = await call(f, await personToken(f, 'ada'), 'POST', grants('pat'), { role: 'approver', reason: 'CHG-15' });
    assert.equal(asked.statusCode, 202, asked.body);
    const id = asked.json().request_id;
    const abe = await personToken(f, 'abe');
    const pat = await idOf(f, 'pat');
    const db = f.ctx.storage.db;
    // The offboarding's transaction holds pat's row (as src/lifecycle/leaver.ts writes it) until released.
    let holding!: () => void;
    let release!: () => void;
    const held = new Promise<void>((resolve) => (holding = resolve));
    const released = new Promise<void>((resolve) => (release = resolve));
    const offboarding = db.transaction().execute(async (trx) => {
      const now = f.clock.now();
      await trx.updateTable('users').set({ status: 'disabled', lock_reason: 'admin', locked_at: now, offboarded_at: now, password_hash: null, updated_at: now }).where('id', '=', pat).execute();
      holding();
      await released;
    });
    await held;
    const deciding = call(f, abe, 'POST', `/admin/approvals/${id}/decision`, { decision: 'approve' });
    // Deterministic: the decision's transaction is waiting for pat's row before the offboarding commits.
    const waiting = async () =>
      (
        await sql<{ n: number }>`select count(*)::int as n from pg_stat_activity a
          where a.wait_event_type = 'Lock' and a.datname = current_database()
            and exists (select 1 from pg_locks l join pg_class c on c.oid = l.relation join pg_namespace s on s.oid = c.relnamespace
                        where l.pid = a.pid and s.nspname = current_schema() and c.relname = 'users')`.execute(db)
      ).rows[0]!.n;
    for (let i = 0; (await waiting()) === 0; i++) {
      if (i > 200) assert.fail('the decision never waited for the person’s row');
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    release();
    await offboarding;
    const approved = await deciding;
    assert.equal(approved.statusCode, 200, approved.body);
    assert.deepEqual(await rolesOf(f, 'pat'), []);
    const [refused] = await f.auditEvents('user.role_grant_refused');
    assert.deepEqual(refused?.decision?.reasons, ['person_not_active']);
  });
});
