import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { adminAudience } from '../../src/admin/authorize.ts';
import { recoveryKind } from '../../src/approvals/kinds/recovery.ts';
import { findApprovalRequest } from '../../src/approvals/requests.ts';
import { decideApprovalRequest } from '../../src/approvals/requests.ts';
import { acr } from '../../src/identity/acr.ts';
import { listPasskeys } from '../../src/identity/passkeys/store.ts';
import { startSession } from '../../src/identity/sessions.ts';
import { scimAudience } from '../../src/resource-servers/builtins.ts';
import { mintAccessToken, newJti } from '../../src/tokens/access-token.ts';
import { codeFlowFixture, type CodeFlowFixture } from '../authorization/fixture.ts';
import { assertOAuthError, decodeJwt, ordersApi, secretClient } from '../endpoints/fixture.ts';
import { Jar, approveAndRedeem, csrfOf, get, post, startAuthorization, submitPassword } from '../endpoints/people-browser.ts';
import { SoftwareAuthenticator } from '../helpers/authenticator.ts';
import { testDialects } from '../helpers/storage.ts';
import { enrolTotp } from '../identity/factors/fixture.ts';
import { approverOf, person, recoveryPeople, storedPasskey, strongProof } from '../identity/recovery/fixture.ts';

// The reviewer's takeover (docs/lifecycle.md "Re-joining"): one administrator offboards alice (her
// factors go), makes her active again with a password they chose, signs in as her — the same
// `sub`, no factor left, so the password level is enough to enrol a passkey of their own. The
// leaver now revokes the password too and puts her credentials on hold: no administrator gives
// her a password, nothing signs her in, and only an approved recovery — the help desk opens it, a
// second person approves, she enrols through the link — brings her back.

const alicePassword = 'alice-correct-horse-42';
const alice = { username: 'alice', password: alicePassword, name: 'Alice Trader', desks: ['rates'] };
const known = 'administrator-knows-this-1';
const phr = { acr: acr.phishingResistant, amr: ['hwk', 'user', 'mfa'] };
const mergePatch = 'application/merge-patch+json';

interface Scene {
  f: CodeFlowFixture;
  admin: string;
  userId: string;
}

/** Alice with a password, an authenticator and a passkey; the people of a recovery; an admin:write token. */
async function scene(t: TestContext, dialect: ReturnType<typeof testDialects>[number]): Promise<Scene> {
  const f = await codeFlowFixture(t, { dialect, risk: 'off' });
  await f.apply({ users: [alice, ...recoveryPeople] });
  const { userId } = await enrolTotp(f, 'alice');
  await storedPasskey(f.ctx, userId, 'cred-alice');
  return { f, userId, admin: await f.accessToken('admin-ops', { resource: adminAudience(f.issuer) }) };
}

function adminCall(f: CodeFlowFixture, token: string, method: 'POST' | 'PUT' | 'PATCH', url: string, body: unknown): Promise<LightMyRequestResponse> {
  return f.inject({
    method,
    url,
    headers: { authorization: `Bearer ${token}`, 'content-type': method === 'PATCH' ? mergePatch : 'application/json' },
    payload: JSON.stringify(body),
  });
}

/** POST /admin/users/alice/offboard: 200, her factors revoked; what it answered of her credentials. */
async function offboard(s: Scene): Promise<{ password_revoked?: boolean; credentials_held?: boolean }> {
  const done = await adminCall(s.f, s.admin, 'POST', '/admin/users/alice/offboard', { reason: 'left the firm' });
  assert.equal(done.statusCode, 200, done.body);
  const ended = (done.json() as { ended: { factors: Record<string, number>; password_revoked?: boolean; credentials_held?: boolean } }).ended;
  assert.deepEqual(ended.factors, { totp: 1, recovery_codes: 10, passkeys: 1 });
  return ended;
}

async function row(f: CodeFlowFixture) {
  return { ...(await f.ctx.storage.db.selectFrom('users').select(['status', 'password_hash']).where('username', '=', 'alice').executeTakeFirstOrThrow()) };
}

/** A password sign-in on the sign-in page that opened no session (the page again, no cookie). */
async function assertNoPasswordSignIn(f: CodeFlowFixture, password: string): Promise<void> {
  const jar = new Jar();
  const { id } = await startAuthorization(f, jar);
  const attempt = await submitPassword(f, jar, id, 'alice', password);
  assert.notEqual(attempt.statusCode, 303, `signed in as alice: ${attempt.statusCode} ${attempt.headers.location ?? ''}`);
  assert.doesNotMatch(String(attempt.headers['set-cookie'] ?? ''), /clearance_session=[^;]/);
}

/** The help desk's own token for the admin API, under their consent, at a phishing-resistant level. */
async function helpDeskToken(f: CodeFlowFixture): Promise<string> {
  const userId = (await person(f.ctx, 'helen')).id;
  const started = await startSession(f.ctx, { userId, ...phr, cookieHeader: undefined });
  const { code, pkce } = await f.authorizeAndApprove({ person: { userId, cookie: started.setCookie.split(';')[0]!, authentication: started.authentication }, query: { scope: 'openid order:create', resource: ordersApi } });
  const redeemed = await f.redeem('web-app', code, pkce.verifier);
  assert.equal(redeemed.statusCode, 200, redeemed.body);
  const grantId = String(decodeJwt((redeemed.json() as { access_token: string }).access_token).payload.grant_id);
  const iat = Math.floor(f.clock.now() / 1000);
  return mintAccessToken(f.ctx.keys, { iss: f.issuer, aud: adminAudience(f.issuer), iat, exp: iat + 300, jti: newJti(), client_id: 'web-app', scope: 'recovery:request', sub: userId, grant_id: grantId, ...phr });
}

for (const dialect of testDialects()) {
  describe(`a leaver made active again on ${dialect.name}`, () => {
    test('an administrator who offboards alice and re-activates her with a password they chose cannot sign in as her: the password is refused, naming the recovery', async (t) => {
      const s = await scene(t, dialect);
      const { f, admin } = s;
      const ended = await offboard(s);

      const reactivated = await adminCall(f, admin, 'PATCH', '/admin/users/alice', { status: 'active', password: known });
      assertOAuthError(reactivated, 400, 'invalid_request');
      assert.match(reactivated.json().error_description, /^users\[0\]\.password: alice was offboarded: .*approved recovery/);
      assert.equal((await row(f)).status, 'disabled', 'nothing of the refused write landed');
      // A ready hash the administrator made (helen's, whose password the test knows) is a password all the same.
      const hash = (await f.ctx.storage.db.selectFrom('users').select('password_hash').where('username', '=', 'helen').executeTakeFirstOrThrow()).password_hash!;
      const put = await adminCall(f, admin, 'PUT', '/admin/users/alice', { name: 'Alice Trader', email: null, desks: ['rates'], roles: [], attributes: {}, status: 'active', password_hash: hash });
      assertOAuthError(put, 400, 'invalid_request');
      assert.match(put.json().error_description, /^users\[0\]\.password_hash: alice was offboarded: .*approved recovery/);
      assert.equal((await row(f)).status, 'disabled');
      await assertNoPasswordSignIn(f, recoveryPeople[0]!.password);
      await assertNoPasswordSignIn(f, known);

      // A rehire: re-activating alone is allowed, and brings her back holding nothing.
      const rehired = await adminCall(f, admin, 'PATCH', '/admin/users/alice', { status: 'active' });
      assert.equal(rehired.statusCode, 200, rehired.body);
      assert.equal(rehired.json().status, 'active');
      assert.equal(rehired.json().has_password, false);
      // Nor right after: a password for the re-activated leaver is refused all the same.
      assertOAuthError(await adminCall(f, admin, 'PATCH', '/admin/users/alice', { password: known }), 400, 'invalid_request');
      assert.equal((await row(f)).password_hash, null);
      await assertNoPasswordSignIn(f, known);
      await assertNoPasswordSignIn(f, alicePassword);
      // Nor an upstream identity an administrator links to her.
      assertOAuthError(await adminCall(f, admin, 'POST', '/admin/users/alice/links', { provider: 'corp-idp', subject: 'their-own' }), 400, 'invalid_request');
      // The offboarding said so: the password went with the factors, and her credentials are on hold.
      assert.deepEqual([ended.password_revoked, ended.credentials_held], [true, true]);
      const [event] = await f.auditEvents('user.offboarded');
      assert.equal(event!.details!.credentials_held, true);
    });

    test('apply re-applying a document with her old password, or re-activating her with it, is refused as a whole and nothing is written', async (t) => {
      const s = await scene(t, dialect);
      const { f, admin } = s;
      await offboard(s);
      for (const entry of [alice, { ...alice, status: 'active' }, { ...alice, password: known, status: 'active' }]) {
        const applied = await f.inject({
          method: 'POST',
          url: '/admin/apply',
          headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
          payload: JSON.stringify({ users: [entry] }),
        });
        assert.ok(applied.statusCode === 400 || applied.statusCode === 409, `${JSON.stringify(entry)}: ${applied.statusCode} ${applied.body}`);
        assert.equal(applied.json().error, 'invalid_request');
        assert.match(applied.json().error_description, /alice was offboarded: .*approved recovery/);
        assert.deepEqual(await row(f), { status: 'disabled', password_hash: null });
      }
      // A dry run (and `clearance apply --plan`) says so as a plan problem at the member: never a 5xx.
      const planned = await f.inject({
        method: 'POST',
        url: '/admin/apply?dry_run=true',
        headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
        payload: JSON.stringify({ users: [{ ...alice, password: known, status: 'active' }] }),
      });
      assert.equal(planned.statusCode, 400, planned.body);
      assert.match(planned.body, /users\[0\]\.password/);
      await assertNoPasswordSignIn(f, alicePassword);
      await assertNoPasswordSignIn(f, known);
    });

    test('a password written for her anyway signs nobody in while her credentials are on hold', async (t) => {
      const s = await scene(t, dialect);
      const { f, admin } = s;
      await offboard(s);
      assert.equal((await adminCall(f, admin, 'PATCH', '/admin/users/alice', { status: 'active' })).statusCode, 200);
      // A writer that knows nothing of the hold (a hash copied into the row by hand).
      const helen = await f.ctx.storage.db.selectFrom('users').select('password_hash').where('username', '=', 'helen').executeTakeFirstOrThrow();
      await f.ctx.storage.db.updateTable('users').set({ password_hash: helen.password_hash }).where('username', '=', 'alice').execute();
      await assertNoPasswordSignIn(f, recoveryPeople[0]!.password);
    });

    test('SCIM re-activates a leaver it provisioned (active: true), but not with a password', async (t) => {
      const f = await codeFlowFixture(t, { dialect, risk: 'off', env: { CLEARANCE_SCIM_GLOBAL_CLIENTS: 'hr-system' } });
      await f.apply({ clients: [secretClient('hr-system', 'scim:read scim:write')] });
      const hr = await f.accessToken('hr-system', { resource: scimAudience(f.issuer) });
      const scim = (method: 'POST' | 'PUT' | 'PATCH', url: string, body: unknown) =>
        f.inject({ method, url: `/scim/v2${url}`, headers: { authorization: `Bearer ${hr}`, 'content-type': 'application/scim+json' }, payload: JSON.stringify(body) });
      const user = 'urn:ietf:params:scim:schemas:core:2.0:User';
      const patchOp = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';
      const created = await scim('POST', '/Users', { schemas: [user], userName: 'alice', password: alicePassword, active: true });
      assert.equal(created.statusCode, 201, created.body);
      const id = created.json().id as string;
      assert.equal((await scim('PATCH', `/Users/${id}`, { schemas: [patchOp], Operations: [{ op: 'replace', path: 'active', value: false }] })).statusCode, 200);
      const back = await scim('PUT', `/Users/${id}`, { schemas: [user], userName: 'alice', password: known, active: true });
      assert.equal(back.statusCode, 400, back.body);
      assert.match(back.body, /alice was offboarded: .*approved recovery/);
      assert.deepEqual(await row(f), { status: 'disabled', password_hash: null });
      const rehired = await scim('PATCH', `/Users/${id}`, { schemas: [patchOp], Operations: [{ op: 'replace', path: 'active', value: true }] });
      assert.equal(rehired.statusCode, 200, rehired.body);
      assert.equal(rehired.json().active, true);
      await assertNoPasswordSignIn(f, alicePassword);
      assert.equal((await scim('PATCH', `/Users/${id}`, { schemas: [patchOp], Operations: [{ op: 'replace', path: 'password', value: known }] })).statusCode, 400);
    });

    test('an approved recovery brings her back: the help desk opens it, a second person approves, she enrols a passkey through the link with no password and signs in with it as the same sub', async (t) => {
      const s = await scene(t, dialect);
      const { f, admin, userId } = s;
      await offboard(s);
      assert.equal((await adminCall(f, admin, 'PATCH', '/admin/users/alice', { status: 'active' })).statusCode, 200);

      const opened = await adminCall(f, await helpDeskToken(f), 'POST', '/admin/users/alice/recovery', { verification_method: 'in_person_id_check', evidence_ref: 'HR-rehire-7' });
      assert.equal(opened.statusCode, 201, opened.body);
      const { request_id: requestId, enrolment_link: link } = opened.json() as { request_id: string; enrolment_link: string };
      const path = new URL(link).pathname;
      assert.equal((await get(f, path)).statusCode, 403, 'inert until a second person approves');
      const approved = await decideApprovalRequest(f.ctx, recoveryKind, { requestId, approver: await approverOf(f.ctx, 'rita'), proof: strongProof, decision: 'approve' });
      assert.ok(approved.ok, JSON.stringify(approved));

      const browser = new Jar();
      const page = await get(f, path, browser);
      assert.equal(page.statusCode, 200, page.body);
      assert.doesNotMatch(page.body, /Your password/, 'she holds none: the page does not ask for one');
      const csrf = csrfOf(page.body);
      const options = await post(f, `${path}/options`, { csrf_token: csrf }, browser);
      assert.equal(options.statusCode, 200, options.body);
      const authenticator = new SoftwareAuthenticator({ origin: f.issuer });
      const credential = JSON.stringify(authenticator.register(options.json()));
      // As the page's form sends it: no password field at all.
      const enrolled = await post(f, path, { csrf_token: csrf, name: 'Rehire laptop', credential }, browser);
      assert.equal(enrolled.statusCode, 200, enrolled.body);
      assert.deepEqual((await listPasskeys(f.ctx, userId)).map((p) => p.name), ['Rehire laptop']);
      const request = await f.ctx.storage.db.selectFrom('approval_requests').select('content').where('id', '=', requestId).executeTakeFirstOrThrow();
      assert.equal(JSON.parse(request.content).credentials_held, true, 'the approver was told the link alone enrols');
      const shown = recoveryKind.describe((await findApprovalRequest(f.ctx.storage.db, requestId))!);
      assert.ok(shown.lines.some((line) => line.label === 'No password'), 'and the approval page says so');
      const [event] = await f.auditEvents('recovery.enrolled');
      assert.equal(event!.details!.credential_hold_lifted, true);

      // Signed in with the passkey, username-less, to tokens for the same sub.
      const jar = new Jar();
      const { id, verifier } = await startAuthorization(f, jar);
      const signInPage = await get(f, `/interaction/${id}`, jar);
      const signInCsrf = csrfOf(signInPage.body);
      const assertion = await post(f, `/interaction/${id}/passkey/options`, { csrf_token: signInCsrf }, jar);
      assert.equal(assertion.statusCode, 200, assertion.body);
      const signedIn = await post(f, `/interaction/${id}/passkey`, { csrf_token: signInCsrf, credential: JSON.stringify(authenticator.assert(assertion.json())) }, jar);
      assert.equal(signedIn.statusCode, 303, signedIn.body);
      const { idToken } = await approveAndRedeem(f, jar, id, verifier, signedIn);
      assert.equal(idToken.sub, userId);
      assert.equal(idToken.acr, acr.phishingResistant);
    });
  });
}
