import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Approver } from '../../src/approvals/independence.ts';
import { actChainSubjects, independenceProblem } from '../../src/approvals/independence.ts';
import type { ApprovalKind } from '../../src/approvals/kinds.ts';
import { approvalsClaim } from '../../src/approvals/claims.ts';
import {
  consumeApprovalRequest,
  decideApprovalRequest,
  decisionsOf,
  effectiveStatus,
  expireApprovalRequests,
  findApprovalRequest,
  listPendingApprovalRequests,
  openApprovalRequest,
  type ApproverProof,
  type NewApprovalRequest,
} from '../../src/approvals/requests.ts';
import { acr } from '../../src/identity/acr.ts';
import { testDialects } from '../helpers/storage.ts';
import { peopleFixture, type PeopleFixture } from '../identity/fixture.ts';

const person = (userId: string, desks: string[] = []): Approver => ({ userId, username: userId, roles: [], desks });
const strong: ApproverProof = { method: 'token', acr: acr.phishingResistant, amr: ['hwk', 'user'], authTime: 0, jti: 'jti-1', clientId: 'approvals-app' };
const weak: ApproverProof = { ...strong, acr: acr.password, amr: ['pwd'] };

/** A kind for the rule's own tests: approvers need phr, anyone but `mallory` is eligible. */
function testKind(overrides: Partial<ApprovalKind> = {}): ApprovalKind {
  return {
    name: 'ciba',
    approverAcr: acr.phishingResistant,
    subjectAcr: acr.password,
    async eligible(_ctx, _request, approver) {
      return approver.userId === 'mallory' ? 'not an approver' : undefined;
    },
    describe: () => ({ title: 'test', lines: [] }),
    ...overrides,
  };
}

const order = { type: 'ciba', authorization_details: [{ type: 'order', instrument: { symbol: 'XS1' }, max_notional: { amount: 5_000_000, currency: 'EUR' } }] };

function open(f: PeopleFixture, input: Partial<NewApprovalRequest> = {}) {
  return openApprovalRequest(f.ctx, {
    kind: 'ciba',
    requester: 'desk-app',
    requesterType: 'client',
    subject: 'trader',
    clientId: 'desk-app',
    content: order,
    requiredApprovals: 1,
    subjectMustApprove: false,
    ttlMs: 600_000,
    ...input,
  });
}

describe('the independence rule', () => {
  const parties = { requester: 'alice', requesterType: 'user' as const, subject: 'bob', actors: ['algo-7', 'carol'] };
  test('refuses the requester, the subject and every actor in the chain', () => {
    assert.equal(independenceProblem(person('alice'), parties), 'approver_is_requester');
    assert.equal(independenceProblem(person('bob'), parties), 'approver_is_subject');
    assert.equal(independenceProblem(person('carol'), parties), 'approver_in_act_chain');
    assert.equal(independenceProblem(person('dave'), parties), undefined);
  });
  test('refuses someone on a party’s desk only when the kind asks for distinct desks', () => {
    assert.equal(independenceProblem(person('dave', ['rates']), parties, { partyDesks: ['rates'] }), undefined);
    assert.equal(independenceProblem(person('dave', ['rates']), parties, { distinctDesks: true, partyDesks: ['rates'] }), 'approver_on_requesters_desk');
  });
  test('a client requester is never confused with a person of the same name', () => {
    assert.equal(independenceProblem(person('desk-app'), { ...parties, requester: 'desk-app', requesterType: 'client' }), undefined);
  });
  test('reads an act chain outermost first', () => {
    assert.deepEqual(actChainSubjects({ sub: 'b', act: { sub: 'a', act: { sub: 'z' } } }), ['b', 'a', 'z']);
    assert.deepEqual(actChainSubjects(undefined), []);
  });
});

/** Applies active people with these usernames; their ids. */
async function activePeople(f: PeopleFixture, ...usernames: string[]): Promise<string[]> {
  await f.apply({ users: usernames.map((username) => ({ username })) });
  const rows = await f.ctx.storage.db.selectFrom('users').select(['id', 'username']).where('username', 'in', usernames).execute();
  return usernames.map((username) => rows.find((r) => r.username === username)!.id);
}

for (const dialect of testDialects()) {
  describe(`approval requests on ${dialect.name}`, () => {
    test('settle approved at the required count of independent approvals, and are consumed once', async (t) => {
      const f = await peopleFixture(t, { dialect });
      // Approvals count only while their approvers are active people (src/approvals/standing.ts).
      const [sup1, sup2] = await activePeople(f, 'sup-1', 'sup-2');
      const request = await open(f, { requiredApprovals: 2 });
      assert.equal(request.status, 'pending');
      assert.equal((await listPendingApprovalRequests(f.ctx)).length, 1);
      const first = await decideApprovalRequest(f.ctx, testKind(), { requestId: request.id, approver: person(sup1!), proof: strong, decision: 'approve' });
      assert.ok(first.ok);
      assert.equal(first.request.status, 'pending');
      assert.equal(first.settled, undefined);
      const again = await decideApprovalRequest(f.ctx, testKind(), { requestId: request.id, approver: person(sup1!), proof: strong, decision: 'approve' });
      assert.deepEqual(again, { ok: false, refusal: 'already_decided' });
      f.clock.advance(1_000);
      const second = await decideApprovalRequest(f.ctx, testKind(), { requestId: request.id, approver: person(sup2!), proof: strong, decision: 'approve' });
      assert.ok(second.ok);
      assert.equal(second.settled, 'approved');
      assert.equal(second.request.approvals, 2);
      const claim = approvalsClaim(await decisionsOf(f.ctx.storage.db, request.id));
      assert.deepEqual(claim.map((c) => c.sub), [sup1, sup2]);
      assert.match(claim[0]!.evidence_digest, /^[A-Za-z0-9_-]{43}$/);
      assert.equal(await consumeApprovalRequest(f.ctx.storage.db, request.id, f.clock.now()), true);
      assert.equal(await consumeApprovalRequest(f.ctx.storage.db, request.id, f.clock.now()), false, 'single use');
      const events = await f.events('approval.given');
      assert.equal(events.length, 2);
      assert.ok(events.every((e) => e.txn === request.id));
      assert.equal((await f.events('approval.completed')).length, 1);
    });

    test('wait for the subject’s own approval when the subject must approve too', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const [sup1] = await activePeople(f, 'sup-1');
      const request = await open(f, { requiredApprovals: 1, subjectMustApprove: true });
      const supervisor = await decideApprovalRequest(f.ctx, testKind(), { requestId: request.id, approver: person(sup1!), proof: strong, decision: 'approve' });
      assert.ok(supervisor.ok);
      assert.equal(supervisor.request.status, 'pending', 'the trader has not approved yet');
      const trader = await decideApprovalRequest(f.ctx, testKind(), { requestId: request.id, approver: person('trader'), proof: weak, decision: 'approve' });
      assert.ok(trader.ok);
      assert.equal(trader.settled, 'approved');
      const decisions = await decisionsOf(f.ctx.storage.db, request.id);
      assert.deepEqual(decisions.map((d) => d.role).sort(), ['approver', 'subject']);
      assert.deepEqual(approvalsClaim(decisions).map((c) => c.sub), [sup1], 'the subject is the token’s sub, not an approval');
      const twice = await decideApprovalRequest(f.ctx, testKind(), { requestId: request.id, approver: person('trader'), proof: weak, decision: 'approve' });
      assert.deepEqual(twice, { ok: false, refusal: 'not_pending' });
    });

    test('the subject of a kind asking for their passkey approves only with one, and denies with any proof of their level', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const kind = testKind({ subjectProof: 'passkey' });
      const request = await open(f, { requiredApprovals: 0, subjectMustApprove: true });
      const decide = (proof: ApproverProof, decision: 'approve' | 'deny') => decideApprovalRequest(f.ctx, kind, { requestId: request.id, approver: person('trader'), proof, decision, reason: 'not me' });
      assert.deepEqual(await decide(strong, 'approve'), { ok: false, refusal: 'subject_passkey_required' }, 'a token, however strong');
      assert.deepEqual(await decide({ method: 'session', acr: acr.phishingResistant, amr: ['hwk'], authTime: 0 }, 'approve'), { ok: false, refusal: 'insufficient_authentication' });
      const [refused] = await f.events('approval.refused');
      assert.deepEqual(refused!.decision?.reasons, ['subject_passkey_required']);
      const passkey: ApproverProof = { method: 'passkey', acr: acr.phishingResistant, amr: ['hwk', 'user'], evidence: { format: 'test' } };
      const approved = await decide(passkey, 'approve');
      assert.ok(approved.ok && approved.settled === 'approved', JSON.stringify(approved));
      const other = await open(f, { requiredApprovals: 0, subjectMustApprove: true });
      const denied = await decideApprovalRequest(f.ctx, kind, { requestId: other.id, approver: person('trader'), proof: strong, decision: 'deny', reason: 'not me' });
      assert.ok(denied.ok && denied.settled === 'denied', 'a denial only stops something');
    });

    test('name their own id in the content, so two requests with the same words have different digests', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const [a, b] = [await open(f), await open(f)];
      assert.deepEqual(a.content, { ...order, request_id: a.id });
      assert.deepEqual((await findApprovalRequest(f.ctx.storage.db, b.id))!.content, { ...order, request_id: b.id });
      assert.notEqual(a.digest, b.digest);
      const [requested] = await f.events('approval.requested');
      assert.equal((requested!.details?.content as { request_id?: string }).request_id, a.id);
    });

    test('refuse dependent, weak, ineligible and unexplained decisions, each on the record', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const request = await open(f, { requester: 'alice', requesterType: 'user', actors: ['carol'] });
      const decide = (approver: Approver, proof: ApproverProof, decision: 'approve' | 'deny' = 'approve', reason?: string) =>
        decideApprovalRequest(f.ctx, testKind(), { requestId: request.id, approver, proof, decision, ...(reason !== undefined ? { reason } : {}) });
      assert.deepEqual(await decide(person('alice'), strong), { ok: false, refusal: 'approver_is_requester' });
      assert.deepEqual(await decide(person('trader'), strong), { ok: false, refusal: 'approver_is_subject' });
      assert.deepEqual(await decide(person('carol'), strong), { ok: false, refusal: 'approver_in_act_chain' });
      assert.deepEqual(await decide(person('dave'), weak), { ok: false, refusal: 'insufficient_authentication' });
      assert.deepEqual(await decide(person('mallory'), strong), { ok: false, refusal: 'not_eligible: not an approver' });
      assert.deepEqual(await decide(person('dave'), strong, 'deny', '  '), { ok: false, refusal: 'reason_required' });
      const failing = testKind({ eligible: async () => { throw new Error('policy store down'); } });
      assert.deepEqual(await decideApprovalRequest(f.ctx, failing, { requestId: request.id, approver: person('dave'), proof: strong, decision: 'approve' }), {
        ok: false,
        refusal: 'not_eligible: eligibility could not be decided',
      });
      assert.deepEqual(await decideApprovalRequest(f.ctx, testKind({ name: 'recovery' }), { requestId: request.id, approver: person('dave'), proof: strong, decision: 'approve' }), {
        ok: false,
        refusal: 'wrong_kind',
      });
      assert.equal((await f.events('approval.refused')).length, 8);
      assert.equal((await findApprovalRequest(f.ctx.storage.db, request.id))!.approvals, 0);
      assert.equal((await decisionsOf(f.ctx.storage.db, request.id)).length, 0);
    });

    test('one denial settles a request denied, with the reason, and the kind writes in that transaction', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const settledWith: string[] = [];
      const kind = testKind({
        async onSettled(_ctx, trx, settled, outcome) {
          settledWith.push(`${settled.id}:${outcome}`);
          assert.equal((await trx.selectFrom('approval_requests').select('status').where('id', '=', settled.id).executeTakeFirstOrThrow()).status, 'denied');
          return [];
        },
      });
      const request = await open(f, { requiredApprovals: 2 });
      assert.ok((await decideApprovalRequest(f.ctx, kind, { requestId: request.id, approver: person('sup-1'), proof: strong, decision: 'approve' })).ok);
      const denied = await decideApprovalRequest(f.ctx, kind, { requestId: request.id, approver: person('sup-2'), proof: strong, decision: 'deny', reason: 'above the desk’s limit' });
      assert.ok(denied.ok);
      assert.equal(denied.settled, 'denied');
      assert.deepEqual(settledWith, [`${request.id}:denied`]);
      const [event] = await f.events('approval.denied');
      assert.deepEqual(event!.decision?.reasons, ['above the desk’s limit']);
      assert.equal(await consumeApprovalRequest(f.ctx.storage.db, request.id, f.clock.now()), false);
    });

    test('expire unanswered: no decision after the deadline, and the expiry is recorded', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const request = await open(f, { ttlMs: 60_000 });
      f.clock.advance(60_000);
      assert.equal(effectiveStatus(request, f.clock.now()), 'expired');
      assert.deepEqual(await decideApprovalRequest(f.ctx, testKind(), { requestId: request.id, approver: person('sup-1'), proof: strong, decision: 'approve' }), { ok: false, refusal: 'expired' });
      assert.deepEqual((await listPendingApprovalRequests(f.ctx)).length, 0);
      const expired = await expireApprovalRequests(f.ctx);
      assert.deepEqual(expired.map((r) => r.id), [request.id]);
      assert.equal((await f.events('approval.expired')).length, 1);
      assert.equal((await expireApprovalRequests(f.ctx)).length, 0);
    });

    test('a session proof only denies, at the kind’s level, and a used-up proof refuses the decision and leaves nothing', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const request = await open(f, { requiredApprovals: 1 });
      const session: ApproverProof = { method: 'session', acr: acr.phishingResistant, amr: ['hwk', 'user'], authTime: 0 };
      const weakSession: ApproverProof = { ...session, acr: acr.password, amr: ['pwd'] };
      const decide = (proof: ApproverProof, decision: 'approve' | 'deny', extra: { consume?: () => Promise<boolean> } = {}) =>
        decideApprovalRequest(f.ctx, testKind(), { requestId: request.id, approver: person('sup-1'), proof, decision, reason: 'not today', ...extra });
      assert.deepEqual(await decide(session, 'approve'), { ok: false, refusal: 'insufficient_authentication' });
      assert.deepEqual(await decide(weakSession, 'deny'), { ok: false, refusal: 'insufficient_authentication' });
      assert.deepEqual(await decide(strong, 'approve', { consume: async () => false }), { ok: false, refusal: 'proof_used' });
      assert.equal((await decisionsOf(f.ctx.storage.db, request.id)).length, 0, 'the used-up proof left no decision');
      const denied = await decide(session, 'deny', { consume: async () => true });
      assert.ok(denied.ok);
      assert.equal(denied.settled, 'denied');
      const [event] = await f.events('approval.denied');
      assert.deepEqual(event!.details?.evidence, { method: 'session', acr: acr.phishingResistant, amr: ['hwk', 'user'], auth_time: 0 });
    });

    test('two approvers at once complete a one-approval request once, and count both when two are needed', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const one = await open(f, { requiredApprovals: 1 });
      const both = await Promise.all(['sup-1', 'sup-2'].map((id) => decideApprovalRequest(f.ctx, testKind(), { requestId: one.id, approver: person(id), proof: strong, decision: 'approve' })));
      assert.equal(both.filter((o) => o.ok).length, 1, JSON.stringify(both));
      assert.equal(both.filter((o) => !o.ok && o.refusal === 'not_pending').length, 1);
      assert.equal((await f.events('approval.completed')).length, 1);
      assert.equal((await decisionsOf(f.ctx.storage.db, one.id)).length, 1, 'the losing decision left nothing');
      const two = await open(f, { requiredApprovals: 2 });
      const counted = await Promise.all(['sup-1', 'sup-2'].map((id) => decideApprovalRequest(f.ctx, testKind(), { requestId: two.id, approver: person(id), proof: strong, decision: 'approve' })));
      assert.ok(counted.every((o) => o.ok), JSON.stringify(counted));
      const after = await findApprovalRequest(f.ctx.storage.db, two.id);
      assert.equal(after!.status, 'approved');
      assert.equal(after!.approvals, 2);
    });
  });
}
