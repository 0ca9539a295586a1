import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';
import { certificateIssueKind } from '../../src/approvals/kinds/certificate-issue.ts';
import { decideApprovalRequest } from '../../src/approvals/requests.ts';
import { acr } from '../../src/identity/acr.ts';
import { findUserByUsername } from '../../src/identity/users.ts';
import { requestCertificate, type PendingIssuance } from '../../src/pki/issuance.ts';
import { testContext, testDialects } from '../helpers/storage.ts';
import { applyDocument, initTestCa, opensslCsr, scratch, tradingAgentProfile } from './fixture.ts';

// An approved issuance is signed inside the decision's transaction: what it reads (the profile, the
// issuing CA and its key) it reads through that transaction, also when this node's caches are stale
// — on SQLite a read through the store itself would wait for the transaction it is in.

for (const dialect of testDialects()) {
  test(`[${dialect.name}] approving a waiting issuance signs it in the decision's transaction, with this node's caches stale`, async (t) => {
    const { ctx, clock } = await testContext({ t, dialect, risk: 'off' });
    await initTestCa(ctx);
    await applyDocument(ctx, {
      certificate_profiles: [{ ...tradingAgentProfile, approval: 'required' }],
      users: [{ username: 'pat', password: 'correct horse battery staple 7', roles: ['pki-approver'] }],
    });
    const pending = (await requestCertificate(ctx, { profile: 'trading-agent', csr: opensslCsr(scratch(t), 'algo-7').csrPem, holder: 'algo-7', requestedBy: 'pipeline', requesterType: 'client' })) as PendingIssuance;
    assert.equal(pending.status, 'pending_approval');
    // Past every cache's check interval: the profiles and authorities would be read again.
    clock.advance(5000);
    const pat = (await findUserByUsername(ctx, 'pat'))!;
    let timer: NodeJS.Timeout | undefined;
    const decided = await Promise.race([
      decideApprovalRequest(ctx, certificateIssueKind, {
        requestId: pending.approvalRequest,
        approver: { userId: pat.id, username: 'pat', roles: pat.roles, desks: pat.desks },
        proof: { method: 'token', acr: acr.phishingResistant, amr: ['hwk', 'user', 'mfa'], authTime: Math.floor(clock.now() / 1000), jti: randomUUID(), clientId: 'approvals-app' },
        decision: 'approve',
      }),
      // A decision waiting on a promise that never settles is named here; before the fix the file
      // hung until the runner cancelled it.
      new Promise<'stuck'>((resolve) => (timer = setTimeout(() => resolve('stuck'), 10_000))),
    ]);
    clearTimeout(timer);
    assert.notEqual(decided, 'stuck', 'the decision finished');
    assert.ok(decided !== 'stuck' && decided.ok && decided.settled === 'approved', JSON.stringify(decided));
    const row = await ctx.storage.db.selectFrom('pki_requests').select(['status', 'serial']).where('id', '=', pending.requestId).executeTakeFirstOrThrow();
    assert.equal(row.status, 'issued');
    assert.ok(row.serial);
  });
}
