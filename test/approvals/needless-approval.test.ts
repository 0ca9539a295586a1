import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { decodeJwt } from 'jose';
import { decidableRequests, deciderRole } from '../../src/approvals/deciders.ts';
import { cibaKind } from '../../src/approvals/kinds/ciba.ts';
import { decideApprovalRequest, decisionsOf, findApprovalRequest } from '../../src/approvals/requests.ts';
import { findUserByUsername } from '../../src/identity/users.ts';
import { testDialects } from '../helpers/storage.ts';
import { fourEyesPolicy } from '../ciba/four-eyes.ts';
import { cibaFixture, cibaGrant, subjectDecides, tokenProof, type CibaFixture } from '../ciba/fixture.ts';

type Json = Record<string, unknown>;

/**
 * A supervisor the four-eyes policy would let approve, and a CIBA request the policy asks no second
 * person for (no order above the threshold): only the person themselves approves it.
 */
async function needlessRequest(f: CibaFixture) {
  await f.apply({ instrument_classes: [{ id: 'fx' }], users: [{ username: 'sup', name: 'Sam Supervisor', roles: ['approver'] }] });
  await f.apply({ policies: [{ version: 'v1', text: fourEyesPolicy, change_ref: 'CHG-1', author: 'alice.author', approver: 'bob.approver', active: true }] });
  const started = await f.bcAuthorize({ scope: 'openid order:create', login_hint: 'trader', binding_message: 'Order 4711' });
  assert.equal(started.statusCode, 200, started.body);
  const request = await f.pending();
  assert.equal(request.requiredApprovals, 0, 'the policy asks no second person');
  const sup = (await findUserByUsername(f.ctx, 'sup'))!;
  const approver = { userId: sup.id, username: 'sup', roles: sup.roles, desks: sup.desks };
  return { authReqId: String((started.json() as Json).auth_req_id), request, approver };
}

for (const dialect of testDialects()) {
  describe(`a request that needs no second person, on ${dialect.name}`, () => {
    test('is never put in a second person’s hands: not shown to them, and their approval or denial is refused and audited', async (t) => {
      const f = await cibaFixture(t, { dialect });
      const { request, approver } = await needlessRequest(f);
      assert.equal(await deciderRole(f.ctx, request, approver, tokenProof()), undefined, 'not theirs to decide');
      assert.deepEqual(await decidableRequests(f.ctx, approver, tokenProof()), [], 'not listed for them');
      for (const decision of ['approve', 'deny'] as const) {
        const outcome = await decideApprovalRequest(f.ctx, cibaKind, { requestId: request.id, approver, proof: tokenProof(), decision, reason: 'looks wrong' });
        assert.deepEqual(outcome, { ok: false, refusal: 'approver_not_asked' }, decision);
      }
      const refused = await f.auditEvents('approval.refused');
      assert.deepEqual(
        refused.map((e) => [e.txn, e.actor, e.decision?.reasons]),
        [
          [request.id, approver.userId, ['approver_not_asked']],
          [request.id, approver.userId, ['approver_not_asked']],
        ],
      );
      const after = (await findApprovalRequest(f.ctx.storage.db, request.id))!;
      assert.equal(after.status, 'pending');
      assert.equal(after.approvals, 0);
      assert.deepEqual(await decisionsOf(f.ctx.storage.db, request.id), []);
    });

    test('costs the client nothing when a second person tries to approve it: the token has its refresh token and no approvals claim', async (t) => {
      const f = await cibaFixture(t, { dialect });
      const { authReqId, request, approver } = await needlessRequest(f);
      await decideApprovalRequest(f.ctx, cibaKind, { requestId: request.id, approver, proof: tokenProof(), decision: 'approve' });
      await subjectDecides(f.ctx, request);
      const response = await f.poll(authReqId);
      assert.equal(response.statusCode, 200, response.body);
      const tokens = response.json() as Json;
      assert.ok(tokens.refresh_token, 'desk-ciba is registered for refresh_token and nobody else was asked');
      assert.equal(decodeJwt(String(tokens.access_token)).approvals, undefined);
    });

    test('ignores at redemption a second person’s approval recorded on it before this rule: the token has its refresh token, and token.issued names only the person', async (t) => {
      const f = await cibaFixture(t, { dialect });
      const { authReqId, request, approver } = await needlessRequest(f);
      // What the decision rule wrote for such an approval before it refused them.
      await f.ctx.storage.db
        .insertInto('approval_decisions')
        .values({ request_id: request.id, approver: approver.userId, role: 'approver', decision: 'approve', reason: null, method: 'token', acr: 'urn:clearance:acr:phr', amr: '["hwk","user"]', evidence_digest: 'legacy', at: f.clock.now() })
        .execute();
      await f.ctx.storage.db.updateTable('approval_requests').set({ approvals: 1 }).where('id', '=', request.id).execute();
      await subjectDecides(f.ctx, request);
      const response = await f.poll(authReqId);
      assert.equal(response.statusCode, 200, response.body);
      const tokens = response.json() as Json;
      assert.ok(tokens.refresh_token, 'an approval nobody asked for withholds nothing');
      assert.equal(decodeJwt(String(tokens.access_token)).approvals, undefined);
      const [issued] = (await f.auditEvents('token.issued')).filter((e) => e.details?.grant_type === cibaGrant);
      assert.deepEqual((issued!.details?.evidence_digests as Json[]).map((d) => d.role), ['subject']);
    });
  });
}
