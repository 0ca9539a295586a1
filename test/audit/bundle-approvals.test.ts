import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import type { StoredAuditEvent } from '../../src/audit/events.ts';
import { checkBundledApprovals } from '../../src/audit/bundle-approvals.ts';
import { canonicalize } from '../../src/jose/canonical-json.ts';

// verify-bundle's approval checks on events as the decision rule writes them (src/approvals/requests.ts).

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

function issued(approvals: unknown[]): { leafIndex: number; event: StoredAuditEvent } {
  return { leafIndex: 4, event: { v: 1, id: 'e-2', time: 1_700_000_000_500, node: 'n', type: 'token.issued', txn: 'req-1', subject: 'alice', details: { approvals } } };
}

describe('approvals in an evidence bundle', () => {
  test('an approval with a fresh token names who, what and how, and backs the token that lists it', () => {
    const entry = { sub: 'sup-1', acr: 'urn:clearance:acr:phr', time: 1_700_000_000, evidence_digest: digest(tokenEvidence) };
    const { problems, approvals } = checkBundledApprovals([given(), issued([entry])]);
    assert.deepEqual(problems, []);
    assert.deepEqual(approvals.map((a) => [a.approver, a.requestId, a.method, a.signatureVerified]), [['sup-1', 'req-1', 'token', false]]);
  });

  test('names evidence that is not the one its digest names, an approval outside its request’s transaction, and a token approval nobody gave', () => {
    const altered = given({ evidence: { ...tokenEvidence, acr: 'urn:clearance:acr:phrh' } });
    const elsewhere = given();
    elsewhere.event.txn = 'other';
    const { problems } = checkBundledApprovals([altered, elsewhere, issued([{ sub: 'sup-9', acr: 'urn:clearance:acr:phr', time: 1, evidence_digest: digest(tokenEvidence) }])]);
    assert.equal(problems.length, 3, problems.join('\n'));
    assert.match(problems[0]!, /the evidence digest is not that of the evidence in the event/);
    assert.match(problems[1]!, /recorded in another transaction/);
    assert.match(problems[2]!, /token.issued approvals\[0\] \(sup-9\) has no matching approval.given/);
  });

  test('checks passkey evidence of a request against the event: its request, its content digest', () => {
    const evidence = { format: 'clearance-approval-request/1', request_id: 'req-2', kind: 'ciba', content: {}, digest: 'd' };
    const { problems } = checkBundledApprovals([given({ method: 'passkey', evidence_digest: digest(evidence) }, evidence)]);
    assert.ok(problems.some((p) => /it names another request/.test(p)), problems.join('\n'));
    assert.ok(problems.some((p) => /approval evidence: the digest is not that of the approved content/.test(p)), problems.join('\n'));
  });
});
