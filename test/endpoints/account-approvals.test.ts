import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, test, type TestContext } from 'node:test';
import { verifyApprovalEvidence, type RequestApprovalEvidence } from '../../src/approvals/evidence.ts';
import { AuditKeys, auditOrigin } from '../../src/audit/audit-key.ts';
import { exportBundle, verifyBundle } from '../../src/audit/bundle.ts';
import { createSealer } from '../../src/audit/lifecycle.ts';
import { resolveMasterKey } from '../../src/keys/master-key.ts';
import { decisionsOf, findApprovalRequest, requestDigest, type ApprovalRequest } from '../../src/approvals/requests.ts';
import { acr } from '../../src/identity/acr.ts';
import { parseApprovalChallenge } from '../../src/jose/approval-digest.ts';
import { codeFlowFixture, type CodeFlowFixture } from '../authorization/fixture.ts';
import { openOrderRequest, orderContent, useTestKind } from '../approvals/fixture.ts';
import { SoftwareAuthenticator } from '../helpers/authenticator.ts';
import { Browser, csrfOf } from '../helpers/inject-browser.ts';
import { testDialects, type TestDialect } from '../helpers/storage.ts';
import { assertOnlyPasskeyScripts, passkeyPageCsp } from '../helpers/pages.ts';

// The approver's side on the account pages (docs/approvals.md "The approver's side"): a signed-in
// person sees the requests they may decide, approves one with a passkey whose challenge commits to
// its content, or denies it with a reason; every refusal is audited and changes nothing.

interface Person {
  id: string;
  browser: Browser;
  authenticator: SoftwareAuthenticator;
}

interface Harness {
  f: CodeFlowFixture;
  /** A person signed in at `level` (phishing-resistant by default), with a passkey unless `passkey: false`. */
  person(username: string, options?: { level?: string; passkey?: boolean }): Promise<Person>;
  /** What the page's script does: the ceremony's options, then the authenticator's answer. */
  sign(who: Person, request: ApprovalRequest): Promise<{ options: Record<string, unknown>; credential: string; csrf: string }>;
  decide(who: Person, request: ApprovalRequest, form: Record<string, string>): Promise<{ statusCode: number; body: string; headers: Record<string, unknown> }>;
  refusals(): Promise<string[]>;
}

async function harness(t: TestContext, dialect?: TestDialect): Promise<Harness> {
  const f = await codeFlowFixture(t, dialect ? { dialect } : {});
  useTestKind(t);
  const h: Harness = {
    f,
    async person(username, options = {}) {
      const level = options.level ?? acr.phishingResistant;
      const signedIn = await f.signIn(username, { acr: level, amr: level === acr.password ? ['pwd'] : ['hwk', 'user', 'mfa'] });
      const browser = new Browser(f, signedIn.cookie);
      const authenticator = new SoftwareAuthenticator({ origin: f.issuer });
      if (options.passkey !== false) {
        const account = await browser.get('/account');
        const csrf = csrfOf(account.body);
        const creation = await browser.post('/account/passkeys/options', { csrf_token: csrf });
        assert.equal(creation.statusCode, 200, creation.body);
        const added = await browser.post('/account/passkeys', { csrf_token: csrf, name: 'Laptop', credential: JSON.stringify(authenticator.register(creation.json())) });
        assert.equal(added.statusCode, 303, added.body);
      }
      return { id: signedIn.userId, browser, authenticator };
    },
    async sign(who, request) {
      const page = await who.browser.get(`/account/approvals/${request.id}`);
      assert.equal(page.statusCode, 200, page.body);
      const csrf = csrfOf(page.body);
      const response = await who.browser.post(`/account/approvals/${request.id}/options`, { csrf_token: csrf });
      assert.equal(response.statusCode, 200, response.body);
      assert.equal(response.headers['cache-control'], 'no-store');
      const options = response.json() as Record<string, unknown>;
      return { options, csrf, credential: JSON.stringify(who.authenticator.assert(options as never)) };
    },
    async decide(who, request, form) {
      const page = await who.browser.get('/account');
      return who.browser.post(`/account/approvals/${request.id}/decision`, { csrf_token: csrfOf(page.body), ...form });
    },
    async refusals() {
      const rows = await f.ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', 'approval.refused').orderBy('seq').execute();
      return rows.map((r) => (JSON.parse(r.event) as { decision: { reasons: string[] } }).decision.reasons[0]!);
    },
  };
  return h;
}

const status = async (h: Harness, request: ApprovalRequest) => (await findApprovalRequest(h.f.ctx.storage.db, request.id))!.status;

describe('the approvals page', () => {
  test('shows a second person the request in plain words; a passkey over its digest approves it, and the evidence verifies as an auditor would', async (t) => {
    const h = await harness(t);
    const alice = await h.f.user('alice');
    const sup = await h.person('sup-1');
    const request = await openOrderRequest(h.f.ctx, alice);

    const list = await sup.browser.get('/account/approvals');
    assert.equal(list.statusCode, 200, list.body);
    assert.equal(list.headers['content-security-policy'], "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'");
    assert.match(list.body, new RegExp(`href="/account/approvals/${request.id}">Large order</a>`));
    assert.match(list.body, /asked by Trading Desk for Alice Trader — “Order 7781 for ACC-7781”/);
    assert.match(list.body, /approvals 0 of 1/);

    const page = await sup.browser.get(`/account/approvals/${request.id}`);
    assert.equal(page.statusCode, 200, page.body);
    assert.equal(page.headers['content-security-policy'], passkeyPageCsp('ownForm', h.f.issuer));
    assertOnlyPasskeyScripts(page.body);
    assert.match(page.body, /<dt>Binding message<\/dt><dd id="binding-message">Order 7781 for ACC-7781<\/dd>/);
    assert.match(page.body, /<dt>Asked by<\/dt><dd>Trading Desk \(application\)<\/dd>/);
    assert.match(page.body, /<dt>For<\/dt><dd>Alice Trader<\/dd>/);
    assert.match(page.body, /<li>Create buy orders in /, 'the authorization_details in plain words');
    assert.ok(page.body.includes(request.digest), 'the digest the passkey signs is shown');

    const { options, credential } = await h.sign(sup, request);
    assert.equal(parseApprovalChallenge(String(options.challenge))?.digest, request.digest, 'the challenge commits to the request’s content');
    assert.equal(options.userVerification, 'required');
    assert.deepEqual((options.allowCredentials as { id: string }[]).map((c) => c.id), [Buffer.from(sup.authenticator.credentials[0]!.id).toString('base64url')], 'the person’s own passkeys only');
    const counter = async () => Number((await h.f.ctx.storage.db.selectFrom('passkeys').select('sign_count').where('user_id', '=', sup.id).executeTakeFirstOrThrow()).sign_count);
    const before = await counter();
    const decided = await h.decide(sup, request, { decision: 'approve', credential });
    assert.equal(decided.statusCode, 303, decided.body);
    assert.equal(decided.headers.location, `${h.f.issuer}/account/approvals`);
    assert.equal(await status(h, request), 'approved');
    assert.ok((await counter()) > before, 'the passkey’s counter moved on');
    const [decision] = await decisionsOf(h.f.ctx.storage.db, request.id);
    assert.equal(decision!.method, 'passkey');
    assert.equal(decision!.acr, acr.phishingResistant);

    const given = await h.f.ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', 'approval.given').executeTakeFirstOrThrow();
    const evidence = JSON.parse(given.event).details.evidence as RequestApprovalEvidence;
    assert.equal(evidence.format, 'clearance-approval-request/1');
    assert.equal(evidence.request_id, request.id);
    assert.deepEqual(evidence.content, request.content);
    assert.equal(evidence.digest, requestDigest(request.content));
    assert.deepEqual(verifyApprovalEvidence(evidence), []);
    assert.doesNotMatch((await sup.browser.get('/account/approvals')).body, /Large order/, 'a decided request leaves the list');
  });

  test('the request’s evidence bundle verifies offline, names who approved what, and checks a token’s approvals against them', async (t) => {
    const h = await harness(t);
    const sup = await h.person('sup-1');
    const request = await openOrderRequest(h.f.ctx, await h.f.user('alice'));
    const { credential } = await h.sign(sup, request);
    assert.equal((await h.decide(sup, request, { decision: 'approve', credential })).statusCode, 303);
    const ctx = h.f.ctx;
    const [decision] = await decisionsOf(ctx.storage.db, request.id);
    // What the CIBA grant records when it issues the token (src/grants/ciba.ts): each approval's evidence digest.
    const entry = { sub: decision!.approver, role: decision!.role, evidence_digest: decision!.evidenceDigest };
    const issued = (evidenceDigests: unknown[]) =>
      ctx.audit.record({ type: 'token.issued', txn: request.id, subject: request.subject, client: 'web-app', details: { grant_type: 'urn:openid:params:grant-type:ciba', approval_request_id: request.id, evidence_digests: evidenceDigests } });
    await issued([entry]);
    await issued([{ ...entry, evidence_digest: 'x'.repeat(43) }]);
    const masterKey = resolveMasterKey(ctx.config).key;
    await createSealer(ctx, masterKey).sealOnce();
    const key = await new AuditKeys(ctx.storage.db, masterKey, ctx.clock).signingKey(auditOrigin(ctx.config.issuer));
    const { text } = await exportBundle(ctx.storage.db, { query: { txn: request.id }, key, jwksInForce: (from, to) => ctx.keys.jwksInForce(from, to), now: ctx.clock.now() });
    const report = verifyBundle(text);
    assert.equal(report.problems.length, 1, report.problems.join('\n'));
    assert.match(report.problems[0]!, /token.issued evidence_digests\[0\] \(.+\) has no matching approval.given in the bundle/);
    assert.equal(report.approvals, 1);
    assert.deepEqual(
      report.approvers!.map((a) => [a.approver, a.requestId, a.kind, a.method, a.signatureVerified, a.digest]),
      [[sup.id, request.id, 'ciba', 'passkey', true, request.digest]],
    );
  });

  test('the subject approves for themselves when their own approval is pending', async (t) => {
    const h = await harness(t);
    const alice = await h.person('alice');
    const request = await openOrderRequest(h.f.ctx, alice.id, { requiredApprovals: 0, subjectMustApprove: true });
    assert.match((await alice.browser.get('/account/approvals')).body, /About you: asked by Trading Desk/);
    const page = await alice.browser.get(`/account/approvals/${request.id}`);
    assert.match(page.body, /<dt>For<\/dt><dd>Alice Trader \(you\)<\/dd>/);
    const { credential } = await h.sign(alice, request);
    assert.equal((await h.decide(alice, request, { decision: 'approve', credential })).statusCode, 303);
    assert.equal(await status(h, request), 'approved');
    assert.equal((await decisionsOf(h.f.ctx.storage.db, request.id))[0]!.role, 'subject');
  });

  test('a person who may not decide sees nothing, gets no ceremony, and a decision from them is refused and audited', async (t) => {
    const h = await harness(t);
    const alice = await h.person('alice');
    const mallory = await h.person('mallory');
    const sup = await h.person('sup-1');
    const about = await openOrderRequest(h.f.ctx, alice.id);
    const asked = await openOrderRequest(h.f.ctx, 'someone', { requester: sup.id, requesterType: 'user' });
    for (const [who, request, refusal] of [
      [alice, about, 'approver_is_subject'],
      [mallory, about, 'not_eligible: not a supervisor'],
      [sup, asked, 'approver_is_requester'],
    ] as const) {
      const list = await who.browser.get('/account/approvals');
      assert.doesNotMatch(list.body, new RegExp(request.id));
      assert.equal((await who.browser.get(`/account/approvals/${request.id}`)).statusCode, 404);
      const csrf = csrfOf((await who.browser.get('/account')).body);
      const options = await who.browser.post(`/account/approvals/${request.id}/options`, { csrf_token: csrf });
      assert.equal(options.statusCode, 404);
      assert.equal(options.json().error, 'not_found');
      const denied = await h.decide(who, request, { decision: 'deny', reason: 'no' });
      assert.equal(denied.statusCode, 403, denied.body);
      assert.equal((await h.refusals()).at(-1), refusal);
    }
    assert.equal(await status(h, about), 'pending');
    assert.equal(await status(h, asked), 'pending');
    assert.equal((await h.f.ctx.storage.db.selectFrom('approval_decisions').selectAll().execute()).length, 0);
  });

  test('refuses a form without the CSRF token, with another session’s token, or from a foreign origin', async (t) => {
    const h = await harness(t);
    const sup = await h.person('sup-1');
    const other = await h.person('sup-2');
    const request = await openOrderRequest(h.f.ctx, await h.f.user('alice'));
    const csrf = csrfOf((await sup.browser.get('/account')).body);
    const othersCsrf = csrfOf((await other.browser.get('/account')).body);
    const path = `/account/approvals/${request.id}/decision`;
    for (const [form, headers] of [
      [{ decision: 'deny', reason: 'no' }, {}],
      [{ csrf_token: othersCsrf, decision: 'deny', reason: 'no' }, {}],
      [{ csrf_token: csrf, decision: 'deny', reason: 'no' }, { origin: 'https://evil.example' }],
    ] as const) {
      const response = await sup.browser.post(path, form as Record<string, string>, headers as Record<string, string>);
      assert.equal(response.statusCode, 403, response.body);
      assert.match(response.body, /This form has expired/);
    }
    const options = await sup.browser.post(`/account/approvals/${request.id}/options`, {});
    assert.equal(options.statusCode, 403);
    assert.equal(options.json().error, 'access_denied');
    assert.equal(await status(h, request), 'pending');
  });

  test('a denial needs a reason of at most 500 characters; with one it settles the request denied', async (t) => {
    const h = await harness(t);
    const sup = await h.person('sup-1');
    const request = await openOrderRequest(h.f.ctx, await h.f.user('alice'));
    for (const reason of ['', '   ', 'x'.repeat(501)]) {
      const response = await h.decide(sup, request, { decision: 'deny', reason });
      assert.equal(response.statusCode, 400, response.body);
      assert.match(response.body, /Give a reason for denying it/);
    }
    assert.equal(await status(h, request), 'pending');
    assert.deepEqual(await h.refusals(), ['reason_required', 'reason_required', 'reason_required']);
    const denied = await h.decide(sup, request, { decision: 'deny', reason: 'Above the desk’s limit' });
    assert.equal(denied.statusCode, 303, denied.body);
    assert.equal(await status(h, request), 'denied');
    const [decision] = await decisionsOf(h.f.ctx.storage.db, request.id);
    assert.equal(decision!.method, 'session');
    assert.equal(decision!.reason, 'Above the desk’s limit');
  });

  test('a session below the request’s level cannot deny, and approving needs the passkey, never the session', async (t) => {
    const h = await harness(t);
    const sup = await h.person('sup-1', { level: acr.password });
    const request = await openOrderRequest(h.f.ctx, await h.f.user('alice'));
    const page = await sup.browser.get(`/account/approvals/${request.id}`);
    assert.match(page.body, /Your sign-in is not strong enough to deny this request/);
    assert.doesNotMatch(page.body, /name="reason"/);
    assert.equal((await h.decide(sup, request, { decision: 'deny', reason: 'no' })).statusCode, 400);
    const noPasskey = await h.decide(sup, request, { decision: 'approve' });
    assert.equal(noPasskey.statusCode, 400);
    assert.deepEqual(await h.refusals(), ['insufficient_authentication', 'no_ceremony']);
    assert.equal(await status(h, request), 'pending');
  });

  test('refuses an answer for a replaced ceremony, then any answer to the used-up one, and a replay of a used answer', async (t) => {
    const h = await harness(t);
    const sup = await h.person('sup-1');
    const request = await openOrderRequest(h.f.ctx, await h.f.user('alice'), { requiredApprovals: 2 });
    const first = await h.sign(sup, request);
    const second = await h.sign(sup, request);
    assert.equal((await h.decide(sup, request, { decision: 'approve', credential: first.credential })).statusCode, 400, 'the first ceremony was replaced');
    assert.equal((await h.decide(sup, request, { decision: 'approve', credential: second.credential })).statusCode, 400, 'a refused answer used the ceremony up');
    assert.deepEqual(await h.refusals(), ['wrong_challenge', 'no_ceremony']);
    const third = await h.sign(sup, request);
    assert.equal((await h.decide(sup, request, { decision: 'approve', credential: third.credential })).statusCode, 303);
    const replay = await h.decide(sup, request, { decision: 'approve', credential: third.credential });
    assert.equal(replay.statusCode, 409, replay.body);
    assert.equal((await h.refusals()).at(-1), 'no_ceremony');
    const after = await findApprovalRequest(h.f.ctx.storage.db, request.id);
    assert.equal(after!.approvals, 1, 'counted once');
  });

  test('refuses an answer after the ceremony expired, for content changed since it started, or by another person’s passkey', async (t) => {
    const h = await harness(t);
    const sup = await h.person('sup-1');
    const other = await h.person('sup-2');
    const request = await openOrderRequest(h.f.ctx, await h.f.user('alice'));
    const late = await h.sign(sup, request);
    h.f.clock.advance(5 * 60_000);
    assert.equal((await h.decide(sup, request, { decision: 'approve', credential: late.credential })).statusCode, 400);

    const changed = await h.sign(sup, request);
    const content = { ...request.content, binding_message: 'Order 9999' };
    await h.f.ctx.storage.db.updateTable('approval_requests').set({ content: JSON.stringify(content), digest: requestDigest(content) }).where('id', '=', request.id).execute();
    assert.equal((await h.decide(sup, request, { decision: 'approve', credential: changed.credential })).statusCode, 400);

    const { options } = await h.sign(sup, request);
    const foreign = JSON.stringify(other.authenticator.assert({ ...(options as { challenge: string; rpId: string }), allowCredentials: [] }));
    assert.equal((await h.decide(sup, request, { decision: 'approve', credential: foreign })).statusCode, 400);
    assert.deepEqual(await h.refusals(), ['expired', 'changed', 'wrong_person']);
    assert.equal(await status(h, request), 'pending');
    assert.equal((await decisionsOf(h.f.ctx.storage.db, request.id)).length, 0);
  });
});

for (const dialect of testDialects()) {
  describe(`the approvals list on ${dialect.name}`, () => {
    test('shows a request the person may decide however many older pending requests they may not', async (t) => {
      const h = await harness(t, dialect);
      const sup = await h.person('sup-1');
      const alice = await h.f.user('alice');
      // 450 older requests sup may not decide: sup is an actor of each (independence, decided in code, not SQL).
      const now = h.f.clock.now();
      const rows = Array.from({ length: 450 }, () => ({
        id: randomUUID(),
        kind: 'ciba',
        status: 'pending',
        requester: 'web-app',
        requester_type: 'client',
        subject: alice,
        client_id: 'web-app',
        actors: JSON.stringify([sup.id]),
        content: JSON.stringify(orderContent),
        digest: requestDigest(orderContent),
        required_approvals: 1,
        approvals: 0,
        subject_approval: 'none',
        created_at: now,
        expires_at: now + 600_000,
        decided_at: null,
        consumed_at: null,
      }));
      for (let i = 0; i < rows.length; i += 150) await h.f.ctx.storage.db.insertInto('approval_requests').values(rows.slice(i, i + 150)).execute();
      h.f.clock.advance(1);
      const mine = await openOrderRequest(h.f.ctx, alice);
      const list = await sup.browser.get('/account/approvals');
      assert.equal(list.statusCode, 200, list.body);
      assert.match(list.body, new RegExp(`href="/account/approvals/${mine.id}"`));
      assert.equal(list.body.match(/href="\/account\/approvals\/[0-9a-f-]{36}"/g)?.length, 1, 'only the one sup may decide');
    });
  });

  describe(`approval ceremonies on ${dialect.name}`, () => {
    test('two answers to one ceremony at once decide once', async (t) => {
      const h = await harness(t, dialect);
      const sup = await h.person('sup-1');
      const request = await openOrderRequest(h.f.ctx, await h.f.user('alice'), { requiredApprovals: 2 });
      const { credential } = await h.sign(sup, request);
      const csrf = csrfOf((await sup.browser.get('/account')).body);
      const answers = await Promise.all([1, 2].map(() => sup.browser.post(`/account/approvals/${request.id}/decision`, { csrf_token: csrf, decision: 'approve', credential })));
      assert.deepEqual(answers.map((a) => a.statusCode).sort(), [303, 409], answers.map((a) => a.body.slice(0, 200)).join('\n'));
      assert.equal((await findApprovalRequest(h.f.ctx.storage.db, request.id))!.approvals, 1);
      assert.equal((await h.f.ctx.storage.db.selectFrom('approval_challenges').selectAll().execute()).length, 0, 'the ceremony is gone');
    });
  });
}
