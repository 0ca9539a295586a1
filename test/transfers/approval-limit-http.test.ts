import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { decodeJwt } from 'jose';
import { adminAudience } from '../../src/admin/authorize.ts';
import { findApprovalRequest, listPendingApprovalRequests } from '../../src/approvals/requests.ts';
import { acr } from '../../src/identity/acr.ts';
import { codeFlowFixture, webRedirect, type CodeFlowFixture } from '../authorization/fixture.ts';
import { cibaGrant, subjectDecides } from '../ciba/fixture.ts';
import { assertOAuthError } from '../endpoints/fixture.ts';
import { controls, custodyApi, iban, seedDestination, transfer, transferEntities } from './enforcement-fixture.ts';

// A transfer reaches the second person's approve decision with its amount (docs/transfers.md
// "Thresholds and approvals"; commit 46ebc85), so that a policy's `approval_limit` holds for
// transfers as for orders — end to end: /bc-authorize, the person on their device, the supervisor
// deciding through the approvals admin API, the token at /token.

type Json = Record<string, unknown>;
const password = 'correct horse battery staple 7';
const ibanDestination = { kind: 'iban' as const, iban, bic: 'COBADEFFXXX' };

/** Supervisors approve within their approval limit (whole units), as examples/policies/four-eyes.cedar says. */
const policy = `
@id("all") permit (principal, action, resource);
@id("approvers-within-their-limit")
permit (principal is User, action == Action::"approve", resource is User)
when {
  principal has roles && principal.roles.contains("approver") &&
  (if context has notional then principal has approval_limit && context.notional <= principal.approval_limit else true)
};`;

async function harness(t: TestContext): Promise<CodeFlowFixture> {
  const f = await codeFlowFixture(t, { risk: 'off' });
  for (const username of ['trader', 'sup']) await f.user(username);
  await f.apply({
    ...transferEntities,
    users: [
      { username: 'trader', password, name: 'Tina Trader', desks: ['treasury'], roles: ['trader'] },
      { username: 'sup', password, name: 'Sam Supervisor', desks: ['treasury'], roles: ['approver'], attributes: { approval_limit: 1200000 } },
    ],
    resource_servers: [{ identifier: custodyApi, scopes: ['transfer:withdrawal'] }],
    clients: [
      { client_id: 'treasury-ciba', kind: 'app', token_endpoint_auth_method: 'client_secret_basic', grant_types: [cibaGrant], backchannel_token_delivery_mode: 'poll', scope: 'openid transfer:withdrawal' },
      { client_id: 'approvals-app', client_name: 'Approvals', kind: 'app', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['authorization_code'], redirect_uris: [webRedirect], scope: 'approvals:decide' },
    ],
    transfer_controls: controls,
    policies: [{ version: 'v1', text: policy, change_ref: 'CHG-1', author: 'alice.author', approver: 'bob.approver', active: true }],
  });
  await seedDestination(f.ctx, { destination: ibanDestination, state: 'usable' });
  f.clock.advance(2000);
  return f;
}

/** The supervisor's token for the approvals admin API, signed in with a passkey just now. */
async function supervisorToken(f: CodeFlowFixture): Promise<string> {
  const person = await f.signIn('sup', { acr: acr.phishingResistant, amr: ['hwk', 'user', 'mfa'] });
  const { code, pkce } = await f.authorizeAndApprove({ client: 'approvals-app', person, query: { scope: 'approvals:decide', resource: adminAudience(f.issuer) } });
  const redeemed = await f.redeem('approvals-app', code, pkce.verifier);
  assert.equal(redeemed.statusCode, 200, redeemed.body);
  return redeemed.json().access_token as string;
}

/** A CIBA request for a withdrawal of `amount` USD (above the 1,000,000 threshold: one second person), approved by the trader on their device. */
async function asked(f: CodeFlowFixture, amount: string): Promise<{ authReqId: string; requestId: string }> {
  const started = await f.post('/bc-authorize', {
    auth: f.basic('treasury-ciba'),
    form: { scope: 'openid transfer:withdrawal', login_hint: 'trader', binding_message: 'Withdrawal W-1', resource: custodyApi, authorization_details: JSON.stringify([transfer({ amount })]) },
  });
  assert.equal(started.statusCode, 200, started.body);
  const [request] = (await listPendingApprovalRequests(f.ctx, { subject: await f.user('trader') })).slice(-1);
  assert.equal(request!.requiredApprovals, 1, 'the threshold asks one second person');
  await subjectDecides(f.ctx, request!);
  return { authReqId: String((started.json() as Json).auth_req_id), requestId: request!.id };
}

const decide = (f: CodeFlowFixture, token: string, requestId: string) =>
  f.inject({ method: 'POST', url: `/admin/approvals/${requestId}/decision`, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, payload: JSON.stringify({ decision: 'approve' }) });
const poll = (f: CodeFlowFixture, authReqId: string) => f.token({ auth: f.basic('treasury-ciba'), form: { grant_type: cibaGrant, auth_req_id: authReqId } });

describe("a transfer's second person within their approval limit, over HTTP", () => {
  test('a supervisor cannot approve a transfer above their approval_limit: not offered it, refused (403, audited), and no token is issued', async (t) => {
    const f = await harness(t);
    const { authReqId, requestId } = await asked(f, '1500000');
    const token = await supervisorToken(f);
    const listed = await f.inject({ method: 'GET', url: '/admin/approvals', headers: { authorization: `Bearer ${token}` } });
    assert.deepEqual((listed.json() as { approvals: Json[] }).approvals.map((a) => a.id), [], 'not offered to them');
    assertOAuthError(await decide(f, token, requestId), 403, 'access_denied');
    const refused = (await f.auditEvents('approval.refused')).filter((e) => e.txn === requestId);
    assert.equal(refused.length, 1, 'the refusal is audited');
    const request = (await findApprovalRequest(f.ctx.storage.db, requestId))!;
    assert.deepEqual([request.status, request.approvals], ['pending', 0]);
    f.clock.advance(5_000);
    assertOAuthError(await poll(f, authReqId), 400, 'authorization_pending');
  });

  test('the same supervisor approves a transfer within their approval_limit, and the token is issued with the approval', async (t) => {
    const f = await harness(t);
    const { authReqId, requestId } = await asked(f, '1100000');
    const token = await supervisorToken(f);
    const listed = await f.inject({ method: 'GET', url: '/admin/approvals', headers: { authorization: `Bearer ${token}` } });
    assert.deepEqual((listed.json() as { approvals: Json[] }).approvals.map((a) => a.id), [requestId]);
    const decided = await decide(f, token, requestId);
    assert.equal(decided.statusCode, 200, decided.body);
    assert.equal((decided.json() as Json).settled, 'approved');
    f.clock.advance(5_000);
    const response = await poll(f, authReqId);
    assert.equal(response.statusCode, 200, response.body);
    assert.equal((decodeJwt(String((response.json() as Json).access_token)).approvals as unknown[]).length, 1);
  });
});
