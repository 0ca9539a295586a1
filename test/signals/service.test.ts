import assert from 'node:assert/strict';
import { test } from 'node:test';
import { findApprovalRequest, openApprovalRequest } from '../../src/approvals/requests.ts';
import { startSignalService } from '../../src/signals/service.ts';
import { testContext } from '../helpers/storage.ts';

test('each pass of the signal service marks approval requests that expired unanswered, once', async (t) => {
  const { ctx, clock } = await testContext({ t });
  const service = startSignalService(ctx, { intervalMs: 3_600_000 });
  t.after(() => service.stop());
  const request = await openApprovalRequest(ctx, {
    kind: 'recovery',
    requester: 'helen',
    requesterType: 'user',
    subject: 'alice',
    content: { type: 'recovery' },
    requiredApprovals: 1,
    subjectMustApprove: false,
    ttlMs: 60_000,
  });
  const expiredEvents = async () => (await ctx.storage.db.selectFrom('audit_events').select('txn').where('type', '=', 'approval.expired').execute()).map((e) => e.txn);
  await service.runOnce();
  assert.equal((await findApprovalRequest(ctx.storage.db, request.id))!.status, 'pending', 'not yet expired');
  clock.advance(60_000);
  await service.runOnce();
  await service.runOnce();
  assert.equal((await findApprovalRequest(ctx.storage.db, request.id))!.status, 'expired');
  assert.deepEqual(await expiredEvents(), [request.id]);
});
