import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import type { StoredAuditEvent } from '../../src/audit/events.ts';
import { checkBundledApprovals } from '../../src/audit/bundle-approvals.ts';
import { canonicalize } from '../../src/jose/canonical-json.ts';
import { cibaKind } from '../../src/approvals/kinds/ciba.ts';
import { decideApprovalRequest } from '../../src/approvals/requests.ts';
import { cibaFixture, ordersApi, subjectDecides, tokenProof } from '../ciba/fixture.ts';
import { fourEyesPolicy, largeOrder } from '../ciba/four-eyes.ts';

// verify-bundle's approval checks on events as the decision rule writes them (src/approvals/requests.ts).

const cibaGrant = 'urn:openid:params:grant-type:ciba';
const digest = (value: unknown) => createHash('sha256').update(canonicalize(value), 'utf8').digest('base64url');
const tokenEvidence = { method: 'token', acr: 'urn:clearance:acr:phr', amr: ['hwk'], auth_time: 1, jti: 'j-1', client_id: 'approvals-app' };

function given(overrides: Record<string, unknown> = {}, evidence: Record<string, unknown> = tokenEvidence): { leafIndex: number; event: StoredAuditEvent } {
  return {
    leafIndex: 3,
    event: {
      v: 1,
      id: 'e-1',
      time: 1_700_000_000_000,
      node: 'n',
      type: 'approval.given',
      txn: 'req-1',
      actor: 'sup-1',
      subject: 'alice',
      details: { request_id: 'req-1', kind: 'ciba', role: 'approver', method: 'token', acr: 'urn:clearance:acr:phr', amr: ['hwk'], digest: 'd', evidence_digest: digest(evidence), evidence, ...overrides },
    },
  };
}

/** `token.issued` as the CIBA grant writes it (src/grants/ciba.ts): the request, and every approval it was issued on. */
function issued(evidenceDigests: unknown): { leafIndex: number; event: StoredAuditEvent } {
  return {
    leafIndex: 4,
    event: {
      v: 1, id: 'e-2', time: 1_700_000_000_500, node: 'n', type: 'token.issued', txn: 'req-1', subject: 'alice',
      details: { grant_type: cibaGrant, approval_request_id: 'req-1', evidence_digests: evidenceDigests },
    },
  };
}

describe('approvals in an evidence bundle', () => {
  test('an approval with a fresh token names who, what and how, and backs the token that lists it', () => {
    const entry = { sub: 'sup-1', role: 'approver', evidence_digest: digest(tokenEvidence) };
    const { problems, approvals } = checkBundledApprovals([given(), issued([entry])]);
    assert.deepEqual(problems, []);
    assert.deepEqual(approvals.map((a) => [a.approver, a.requestId, a.method, a.signatureVerified]), [['sup-1', 'req-1', 'token', false]]);
  });

  test('names evidence that is not the one its digest names, an approval outside its request’s transaction, and a token approval nobody gave', () => {
    const altered = given({ evidence: { ...tokenEvidence, acr: 'urn:clearance:acr:phrh' } });
    const elsewhere = given();
    elsewhere.event.txn = 'other';
    const { problems } = checkBundledApprovals([altered, elsewhere, issued([{ sub: 'sup-9', role: 'approver', evidence_digest: digest(tokenEvidence) }])]);
    assert.equal(problems.length, 3, problems.join('\n'));
    assert.match(problems[0]!, /the evidence digest is not that of the evidence in the event/);
    assert.match(problems[1]!, /recorded in another transaction/);
    assert.match(problems[2]!, /token.issued evidence_digests\[0\] \(sup-9\) has no matching approval.given/);
  });

  test('names a token whose listed approval nobody gave: another person, digest, role or request, or no list at all', () => {
    const entry = { sub: 'sup-1', role: 'approver', evidence_digest: digest(tokenEvidence) };
    for (const forged of [{ ...entry, sub: 'nobody' }, { ...entry, evidence_digest: 'forged' }, { ...entry, role: 'subject' }]) {
      const { problems } = checkBundledApprovals([given(), issued([forged])]);
      assert.equal(problems.length, 1, JSON.stringify(forged));
      assert.match(problems[0]!, /token.issued evidence_digests\[0\] .* has no matching approval.given/);
    }
    const elsewhere = given({ request_id: 'req-2' });
    elsewhere.event.txn = 'req-2';
    assert.equal(checkBundledApprovals([elsewhere, issued([entry])]).problems.length, 1, 'an approval of another request');
    assert.match(checkBundledApprovals([given(), issued('not a list')]).problems[0]!, /is not a list of approvals/);
  });

  test('checks passkey evidence of a request against the event: its request, its content digest', () => {
    const evidence = { format: 'clearance-approval-request/1', request_id: 'req-2', kind: 'ciba', content: {}, digest: 'd' };
    const { problems } = checkBundledApprovals([given({ method: 'passkey', evidence_digest: digest(evidence) }, evidence)]);
    assert.ok(problems.some((p) => /it names another request/.test(p)), problems.join('\n'));
    assert.ok(problems.some((p) => /approval evidence: the digest is not that of the approved content/.test(p)), problems.join('\n'));
  });
});

describe('approvals in an evidence bundle, as a CIBA issuance writes them', () => {
  test('back a real CIBA token’s subject and second person, and name a tampered token.issued', async (t) => {
    const f = await cibaFixture(t);
    await f.apply({ instrument_classes: [{ id: 'fx' }], users: [{ username: 'sup', name: 'Sam Supervisor', roles: ['approver'] }] });
    await f.apply({ policies: [{ version: 'v1', text: fourEyesPolicy, change_ref: 'CHG-1', author: 'alice.author', approver: 'bob.approver', active: true }] });
    const asked = await f.bcAuthorize({ scope: 'openid order:create', resource: ordersApi, login_hint: 'trader', authorization_details: JSON.stringify([largeOrder]) });
    assert.equal(asked.statusCode, 200, asked.body);
    const request = await f.pending();
    await subjectDecides(f.ctx, request);
    const sup = (await f.ctx.storage.db.selectFrom('users').select('id').where('username', '=', 'sup').executeTakeFirstOrThrow()).id;
    assert.ok((await decideApprovalRequest(f.ctx, cibaKind, { requestId: request.id, approver: { userId: sup, username: 'sup', roles: ['approver'], desks: [] }, proof: tokenProof(), decision: 'approve' })).ok);
    assert.equal((await f.poll(String(asked.json().auth_req_id))).statusCode, 200);
    const events = (await f.auditEvents()).filter((e) => e.txn === request.id).map((event, leafIndex) => ({ leafIndex, event }));
    const token = events.find((e) => e.event.type === 'token.issued')!;
    assert.deepEqual((token.event.details?.evidence_digests as { sub: string; role: string }[]).map((e) => [e.sub, e.role]), [[f.traderId, 'subject'], [sup, 'approver']]);
    const { problems, approvals } = checkBundledApprovals(events);
    assert.deepEqual(problems, []);
    assert.deepEqual(approvals.map((a) => [a.approver, a.role, a.method, a.signatureVerified]), [[f.traderId, 'subject', 'passkey', true], [sup, 'approver', 'token', false]]);

    const tampered = structuredClone(events);
    const listed = tampered.find((e) => e.event.type === 'token.issued')!.event.details!.evidence_digests as { sub: string }[];
    listed[1]!.sub = 'someone-else';
    const found = checkBundledApprovals(tampered).problems;
    assert.equal(found.length, 1, found.join('\n'));
    assert.match(found[0]!, /token.issued evidence_digests\[1\] \(someone-else\) has no matching approval.given/);
  });
});
