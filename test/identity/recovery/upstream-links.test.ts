import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as client from 'openid-client';
import { recoveryKind } from '../../../src/approvals/kinds/recovery.ts';
import { decideApprovalRequest } from '../../../src/approvals/requests.ts';
import type { StoredAuditEvent } from '../../../src/audit/events.ts';
import { decryptEventsUnaudited } from '../../../src/audit/subject-keys.ts';
import { linkIdentity } from '../../../src/federation/upstream/linking.ts';
import { findProvider } from '../../../src/federation/upstream/providers.ts';
import { openRecoveryByHelpDesk } from '../../../src/identity/recovery/requests.ts';
import { resolveMasterKey } from '../../../src/keys/master-key.ts';
import { HttpBrowser } from '../../helpers/http-browser.ts';
import { approve, authorizationRequest, signInThroughOrganisation, startBrokering, upstreamAcr, type BrokeringHarness } from '../../federation/upstream/fixture.ts';
import { approverOf, person, recoveryPeople, storedPasskey, strongProof } from './fixture.ts';

// A recovery follows a suspected takeover. Whoever held the account could have linked an upstream
// identity of their own to it (an administrator talked into `users link`, or their own sign-in
// joining the two): the approved recovery ends every upstream link of the person, so that identity
// no longer signs in as them (docs/recovery.md "What approval does"). Over HTTP, against the
// fund's OpenID Provider (node-oidc-provider).

/** The sub the desk application gets from an upstream sign-in of `upstreamSubject`, or the page Clearance stopped at. */
async function upstreamSignIn(h: BrokeringHarness, upstreamSubject: string): Promise<{ sub: string } | { status: number; body: string }> {
  h.upstream.nextSignIn = { sub: upstreamSubject, claims: { name: 'Mallory', email: 'alice@fund-a.example' }, acr: upstreamAcr.mfa, amr: ['pwd', 'otp', 'mfa'] };
  const browser = new HttpBrowser();
  const request = authorizationRequest(h);
  const at = await signInThroughOrganisation(h, browser, await request.url(), 'alice@fund-a.example');
  const consent = at.response.status === 200 ? await at.response.clone().text() : '';
  if (at.response.status !== 303 && !/Approve/.test(consent)) return { status: at.response.status, body: await at.response.text() };
  const callback = await approve(browser, at);
  const tokens = await client.authorizationCodeGrant(h.config, callback, { pkceCodeVerifier: request.verifier, expectedState: request.state, expectedNonce: request.nonce });
  return { sub: tokens.claims()!.sub };
}

async function eventsOf(h: BrokeringHarness, type: string) {
  const ctx = h.server.running.ctx;
  const rows = await ctx.storage.db.selectFrom('audit_events').select(['event']).where('type', '=', type).orderBy('seq').execute();
  return decryptEventsUnaudited(ctx.storage.db, resolveMasterKey(ctx.config).key, rows.map((row) => JSON.parse(row.event) as StoredAuditEvent));
}

test('an upstream identity linked to the person no longer signs in as them once a recovery of theirs is approved: it is asked to link anew', async (t) => {
  const h = await startBrokering(t);
  const ctx = h.server.running.ctx;
  await h.server.apply({ users: recoveryPeople });
  await ctx.storage.db.updateTable('users').set({ email: 'alice@fund-a.example' }).where('id', '=', h.aliceId).execute();
  // Alice keeps a passkey (she lost her authenticator): nothing holds her credentials after the approval.
  await storedPasskey(ctx, h.aliceId, 'cred-kept');
  const provider = (await findProvider(ctx.storage.db, 'fund-a'))!.provider;
  assert.deepEqual(await linkIdentity(ctx, { userId: h.aliceId, provider, subject: 'intruder-7', actor: 'admin-talked-round' }), { ok: true });
  assert.deepEqual(await upstreamSignIn(h, 'intruder-7'), { sub: h.aliceId }, 'before the recovery, the linked identity signs in as alice');

  const opened = await openRecoveryByHelpDesk(ctx, { helpDesk: await person(ctx, 'helen'), subject: await person(ctx, 'alice'), verificationMethod: 'in_person_id_check', evidenceRef: 'HD-77', lost: ['authenticator'] });
  assert.ok(opened.ok);
  const approved = await decideApprovalRequest(ctx, recoveryKind, { requestId: opened.request.id, approver: await approverOf(ctx, 'rita'), proof: strongProof, decision: 'approve' });
  assert.ok(approved.ok && approved.settled === 'approved');

  const after = await upstreamSignIn(h, 'intruder-7');
  assert.ok('status' in after, `signed in as ${JSON.stringify(after)} after the recovery`);
  assert.equal(after.status, 409);
  assert.match(after.body, /sign in with it above: the two will be joined/, 'the person re-links by signing in with their own factor');
  assert.equal(await ctx.storage.db.selectFrom('user_links').select('subject').where('user_id', '=', h.aliceId).executeTakeFirst(), undefined);

  // On the record, in the recovery's evidence: which link ended, who had made it and when.
  const [disabled] = await eventsOf(h, 'recovery.factors_disabled');
  assert.equal(disabled!.txn, opened.request.id);
  const ended = disabled!.details!.upstream_links_ended as Record<string, unknown>[];
  assert.deepEqual(
    ended.map((l) => [l.provider, l.issuer, l.upstream_subject, l.linked_by]),
    [['fund-a', h.upstream.issuer, 'intruder-7', 'admin']],
  );
  assert.equal(typeof ended[0]!.linked_at, 'number');
  const alert = await ctx.storage.db.selectFrom('alerts').select('data').where('type', '=', 'recovery.approved').executeTakeFirstOrThrow();
  assert.equal(JSON.parse(alert.data).upstream_links_ended, 1);
});
