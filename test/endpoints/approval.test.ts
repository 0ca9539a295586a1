import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { decodeJwt } from 'jose';
import { verifyApprovalEvidence, type ApprovalEvidence } from '../../src/approvals/evidence.ts';
import { AuditKeys, auditOrigin } from '../../src/audit/audit-key.ts';
import { exportBundle, verifyBundle } from '../../src/audit/bundle.ts';
import { createSealer } from '../../src/audit/lifecycle.ts';
import { canonicalize } from '../../src/jose/canonical-json.ts';
import { resolveMasterKey } from '../../src/keys/master-key.ts';
import { approvalDigest, parseApprovalChallenge } from '../../src/jose/approval-digest.ts';
import { codeFlowFixture, orderDetail, pkce, type CodeFlowFixture } from '../authorization/fixture.ts';
import { SoftwareAuthenticator } from '../helpers/authenticator.ts';
import { Browser, csrfOf } from '../helpers/inject-browser.ts';
import { ordersApi } from './fixture.ts';
import { approvalPolicySet as policies } from '../policy/fixture.ts';

// What-you-see-is-what-you-sign over HTTP (docs/authentication.md "Approving an order"): an order
// that policy marks (@approval) is approved on the consent page with a passkey whose challenge
// commits to exactly its authorization_details; the token carries the digest and the audit log
// the evidence, which verifies offline.


/** An order of `amount` (the fixture's bond order otherwise). */
const order = (amount: string) => ({ ...orderDetail, max_notional: { amount, currency: 'USD' } });

interface Harness {
  f: CodeFlowFixture;
  browser: Browser;
  authenticator: SoftwareAuthenticator;
  /** /authorize for `detail` in the browser, to the page it lands on: the interaction's id and that page. */
  start(detail: Record<string, unknown>): Promise<{ id: string; page: string; csrf: string; verifier: string }>;
  /** What the consent page's script does: the options, then the authenticator's answer. */
  sign(id: string, csrf: string): Promise<{ options: Record<string, unknown>; credential: string }>;
}

async function harness(t: TestContext): Promise<Harness> {
  const f = await codeFlowFixture(t);
  await f.apply({ policies: [{ version: 'v1', text: policies, change_ref: 'CHG-14', author: 'alice.author', approver: 'bob.approver', active: true }] });
  const alice = await f.signIn('alice');
  const browser = new Browser(f, alice.cookie);
  const authenticator = new SoftwareAuthenticator({ origin: f.issuer });
  // Alice adds a passkey on /account (her first: a password session may).
  const account = await browser.get('/account');
  const csrf = csrfOf(account.body);
  const options = await browser.post('/account/passkeys/options', { csrf_token: csrf });
  const added = await browser.post('/account/passkeys', { csrf_token: csrf, name: 'Laptop', credential: JSON.stringify(authenticator.register(options.json())) });
  assert.equal(added.statusCode, 303, added.body);
  return {
    f,
    browser,
    authenticator,
    async start(detail) {
      const challenge = pkce();
      const query = f.request('web-app', { scope: 'openid order:create', resource: ordersApi, authorization_details: JSON.stringify([detail]), code_challenge: challenge.challenge });
      const started = await browser.get(`/authorize?${new URLSearchParams(query as Record<string, string>)}`);
      assert.equal(started.statusCode, 303, started.body);
      const location = String(started.headers.location);
      const id = location.slice(location.lastIndexOf('/') + 1);
      const page = await browser.get(location);
      assert.equal(page.statusCode, 200, page.body);
      return { id, page: page.body, csrf: csrfOf(page.body), verifier: challenge.verifier };
    },
    async sign(id, csrf) {
      const response = await browser.post(`/interaction/${id}/approval/options`, { csrf_token: csrf });
      assert.equal(response.statusCode, 200, response.body);
      assert.equal(response.headers['cache-control'], 'no-store');
      const options = response.json() as Record<string, unknown>;
      return { options, credential: JSON.stringify(authenticator.assert(options as never)) };
    },
  };
}

/** The code in the client's redirect after the consent POST. */
async function codeAfter(h: Harness, consent: { statusCode: number; headers: Record<string, unknown>; body: string }): Promise<string> {
  assert.equal(consent.statusCode, 303, consent.body);
  const resumed = await h.browser.get(String(consent.headers.location));
  assert.equal(resumed.statusCode, 303, resumed.body);
  const code = new URL(String(resumed.headers.location)).searchParams.get('code');
  assert.ok(code, String(resumed.headers.location));
  return code;
}

describe('approving an order with a passkey (what-you-see-is-what-you-sign)', () => {
  test('shows exactly the order in plain words, signs its digest, and the token carries it; the evidence verifies offline', async (t) => {
    const h = await harness(t);
    const detail = order('2500000');
    const { id, page, csrf, verifier } = await h.start(detail);
    assert.match(page, /Approve with your passkey/);
    assert.match(page, /data-passkey="approve"/);
    assert.doesNotMatch(page, /name="decision" value="approve">Approve<\/button>/, 'no approval without the passkey');
    const { options, credential } = await h.sign(id, csrf);
    // The challenge commits to exactly the entries approved.
    assert.equal(parseApprovalChallenge(String(options.challenge))?.digest, approvalDigest([detail]));
    assert.equal(options.userVerification, 'required');
    const code = await codeAfter(h, await h.browser.post(`/interaction/${id}/consent`, { csrf_token: csrf, decision: 'approve', credential }));
    const tokens = await h.f.redeem('web-app', code, verifier);
    assert.equal(tokens.statusCode, 200, tokens.body);
    const claims = decodeJwt(tokens.json().access_token);
    assert.equal(claims.authorization_details_digest, approvalDigest([detail]));

    const events = await h.f.ctx.storage.db.selectFrom('audit_events').select(['type', 'event']).where('type', 'in', ['approval.given', 'token.issued']).orderBy('seq').execute();
    const given = JSON.parse(events.find((e) => e.type === 'approval.given')!.event);
    const issued = JSON.parse(events.find((e) => e.type === 'token.issued')!.event);
    assert.deepEqual(verifyApprovalEvidence(given.details.evidence as ApprovalEvidence), []);
    assert.deepEqual(given.details.evidence.authorization_details, [detail]);
    assert.equal(issued.details.approval_id, given.details.approval_id);
    // One transaction from the approval on: the token, its token.issued and approval.given share it.
    assert.equal(claims.txn, given.details.approval_id);
    assert.equal(given.txn, claims.txn);

    // `clearance audit export --txn` of that transaction holds the evidence, and the bundle verifies offline.
    const ctx = h.f.ctx;
    await createSealer(ctx, resolveMasterKey(ctx.config).key).sealOnce();
    const key = await new AuditKeys(ctx.storage.db, resolveMasterKey(ctx.config).key, ctx.clock).signingKey(auditOrigin(ctx.config.issuer));
    const exported = await exportBundle(ctx.storage.db, { query: { txn: String(claims.txn) }, key, jwksInForce: (from, to) => ctx.keys.jwksInForce(from, to), now: ctx.clock.now() });
    assert.deepEqual(exported.bundle.events.map((e) => e.event.type).sort(), ['approval.given', 'token.issued']);
    const report = verifyBundle(exported.text);
    assert.deepEqual(report.problems, []);
    assert.equal(report.approvals, 1);
    // An approval whose signature does not verify is a problem of the bundle, whoever signed the file.
    const forged = structuredClone(exported.bundle);
    const evidence = forged.events.find((e) => e.event.type === 'approval.given')!.event.details!.evidence as ApprovalEvidence;
    evidence.signature = Buffer.from('forged').toString('base64url');
    assert.ok(verifyBundle(canonicalize(forged) + '\n').problems.some((p) => /approval evidence: the signature does not verify/.test(p)));
  });

  test('an order below the threshold is consented to as before, without a passkey, and its token carries no digest', async (t) => {
    const h = await harness(t);
    const { id, page, csrf, verifier } = await h.start(order('500000'));
    assert.doesNotMatch(page, /Approve with your passkey/);
    const code = await codeAfter(h, await h.browser.post(`/interaction/${id}/consent`, { csrf_token: csrf, decision: 'approve' }));
    const tokens = await h.f.redeem('web-app', code, verifier);
    assert.equal(decodeJwt(tokens.json().access_token).authorization_details_digest, undefined);
  });

  test('refuses an approval without the passkey, and one signed for another order, and approves nothing', async (t) => {
    const h = await harness(t);
    const first = await h.start(order('2500000'));
    const missing = await h.browser.post(`/interaction/${first.id}/consent`, { csrf_token: first.csrf, decision: 'approve' });
    assert.equal(missing.statusCode, 400);
    assert.match(missing.body, /Approve with your passkey/);
    // The person is shown a 2.5 million order; an assertion made for a 9 million order is swapped in.
    const { credential: forOther } = await (async () => {
      const other = await h.start(order('9000000'));
      return h.sign(other.id, other.csrf);
    })();
    await h.sign(first.id, first.csrf);
    const swapped = await h.browser.post(`/interaction/${first.id}/consent`, { csrf_token: first.csrf, decision: 'approve', credential: forOther });
    assert.equal(swapped.statusCode, 400, swapped.body);
    assert.match(swapped.body, /could not be verified/);
    const refused = await h.f.ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', 'approval.refused').execute();
    assert.ok(refused.some((r) => JSON.parse(r.event).decision.reasons.includes('wrong_challenge')), JSON.stringify(refused));
    assert.equal((await h.f.ctx.storage.db.selectFrom('audit_events').select('seq').where('type', '=', 'approval.given').execute()).length, 0);
  });

  test('refuses a replayed approval: one answer per ceremony', async (t) => {
    const h = await harness(t);
    const { id, csrf, verifier } = await h.start(order('2500000'));
    const { credential } = await h.sign(id, csrf);
    const code = await codeAfter(h, await h.browser.post(`/interaction/${id}/consent`, { csrf_token: csrf, decision: 'approve', credential }));
    assert.equal((await h.f.redeem('web-app', code, verifier)).statusCode, 200);
    // The same order again: a new ceremony; the earlier signature does not answer it.
    const again = await h.start(order('2500000'));
    await h.sign(again.id, again.csrf);
    const replayed = await h.browser.post(`/interaction/${again.id}/consent`, { csrf_token: again.csrf, decision: 'approve', credential });
    assert.equal(replayed.statusCode, 400, replayed.body);
  });

  test('any change to the order after the approval fails: a code whose details were altered gets no token', async (t) => {
    const h = await harness(t);
    const { id, csrf, verifier } = await h.start(order('2500000'));
    const { credential } = await h.sign(id, csrf);
    const code = await codeAfter(h, await h.browser.post(`/interaction/${id}/consent`, { csrf_token: csrf, decision: 'approve', credential }));
    // Someone with write access to the database raises the order after the person approved it.
    const db = h.f.ctx.storage.db;
    const stored = await db.selectFrom('authorization_codes').select(['id', 'payload']).executeTakeFirstOrThrow();
    const payload = JSON.parse(stored.payload);
    payload.authorizationDetails = [order('25000000')];
    await db.updateTable('authorization_codes').set({ payload: JSON.stringify(payload) }).where('id', '=', stored.id).execute();
    const refused = await h.f.redeem('web-app', code, verifier);
    assert.equal(refused.statusCode, 400, refused.body);
    assert.equal(refused.json().error, 'invalid_grant');
    assert.match(refused.json().error_description, /differ from those the person approved/);
  });

  test('denying needs no passkey', async (t) => {
    const h = await harness(t);
    const { id, csrf } = await h.start(order('2500000'));
    const denied = await h.browser.post(`/interaction/${id}/consent`, { csrf_token: csrf, decision: 'deny' });
    assert.equal(denied.statusCode, 303);
    const resumed = await h.browser.get(String(denied.headers.location));
    assert.equal(new URL(String(resumed.headers.location)).searchParams.get('error'), 'access_denied');
  });
});
