import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { fourEyesEligible, fourEyesRequirement } from '../../src/approvals/four-eyes.ts';
import { openApprovalRequest, type ApproverProof } from '../../src/approvals/requests.ts';
import { acr } from '../../src/identity/acr.ts';
import type { OAuthError } from '../../src/oauth-error.ts';
import { limitUnits, wholeUnits } from '../../src/policy/issuance.ts';
import { testContext } from '../helpers/storage.ts';
import { applyDocument, exampleEntities, examplePolicyText, fxOrder, ordersApi, peopleAndClients, userId } from './fixture.ts';

// Cedar compares whole units: a requested amount is rounded UP (src/policy/issuance.ts
// `wholeUnits`), so a fraction never slips under a threshold or a limit of the example policies
// (examples/policies: four-eyes.cedar, limits.cedar).

const order = (amount: string) => fxOrder(amount, 'ACC-FX-1');

/** The example entities, people and policies (with four-eyes), and grace: a supervisor of fx-spot who may approve up to 45 million. */
async function examples(t: Pick<TestContext, 'after'>) {
  const { ctx } = await testContext({ t });
  await applyDocument(ctx, {
    ...exampleEntities(),
    ...peopleAndClients,
    clients: [...peopleAndClients.clients, { client_id: 'desk-app', kind: 'app', grant_types: ['client_credentials'], scope: 'order:create' }],
    users: [...peopleAndClients.users, { username: 'grace', desks: ['fx-spot'], roles: ['approver'], attributes: { kyc_status: 'verified', supervises: ['fx-spot'], approval_limit: 45_000_000 } }],
  });
  await applyDocument(ctx, {
    policies: [{ version: 'v1', text: examplePolicyText({ approval: true, fourEyes: true }), change_ref: 'CHG-1', author: 'alice.author', approver: 'bob.approver', active: true }],
  });
  const alice = (await userId(ctx, 'alice'))!;
  const grace = (await userId(ctx, 'grace'))!;
  const question = (amount: string) => ({ userId: alice, clientId: 'desk-app', audience: ordersApi, scopes: ['order:create'], authorizationDetails: [order(amount)], requestId: 'r-1' });
  return { ctx, alice, grace, question };
}

describe('fractional amounts against thresholds and limits', () => {
  test('an order of 30,000,000.99 needs the second person a ">30M" four-eyes policy asks for; 30,000,000.00 does not', async (t) => {
    const { ctx, question } = await examples(t);
    assert.deepEqual(await fourEyesRequirement(ctx, question('30000000.99')), { approvals: 1, policies: ['four-eyes-large-orders'] });
    assert.deepEqual(await fourEyesRequirement(ctx, question('30000000.000000001')), { approvals: 1, policies: ['four-eyes-large-orders'] });
    assert.deepEqual(await fourEyesRequirement(ctx, question('30000000.00')), { approvals: 0, policies: [] });
  });

  test('an order of 45,000,000.99 is beyond an approval_limit of 45,000,000: the supervisor may not approve it', async (t) => {
    const { ctx, alice, grace, question } = await examples(t);
    const open = (amount: string) =>
      openApprovalRequest(ctx, {
        kind: 'ciba',
        requester: 'desk-app',
        requesterType: 'client',
        subject: alice,
        clientId: 'desk-app',
        content: { type: 'ciba', authorization_details: [order(amount)] },
        requiredApprovals: 2,
        subjectMustApprove: true,
        ttlMs: 600_000,
      });
    const passkey: ApproverProof = { method: 'token', acr: acr.phishingResistant, amr: ['hwk', 'user'], authTime: Math.floor(ctx.clock.now() / 1000), jti: 'j', clientId: 'approvals-app' };
    const approver = { userId: grace, username: 'grace', roles: ['approver'], desks: ['fx-spot'] };
    assert.deepEqual(await fourEyesRequirement(ctx, question('45000000.99')), { approvals: 2, policies: ['four-eyes-large-orders', 'four-eyes-largest-orders'] });
    assert.match((await fourEyesEligible(ctx, await open('45000000.99'), approver, passkey))!, /no policy/, 'above the approval limit by a fraction');
    assert.equal(await fourEyesEligible(ctx, await open('45000000'), approver, passkey), undefined, 'at the limit');
  });

  test("an order of 50,000,000.5 is above the fx-spot desk's 50,000,000 limit: refused whatever the approvals", async (t) => {
    const { ctx, question } = await examples(t);
    await assert.rejects(fourEyesRequirement(ctx, question('50000000.5')), (error: OAuthError) => {
      assert.equal(error.error, 'invalid_authorization_details');
      assert.match(error.description!, /limit-fx-spot-desk-fx/);
      return true;
    });
  });

  test('a requested amount rounds up, a limit down', () => {
    assert.deepEqual(['30000000.99', '30000000.000000001', '30000000', '30000000.000', 30000000.5, 7].map(wholeUnits), [30000001, 30000001, 30000000, 30000000, 30000001, 7]);
    assert.equal(wholeUnits('1e400'), Number.MAX_SAFE_INTEGER);
    assert.equal(wholeUnits('99999999999999999999'), Number.MAX_SAFE_INTEGER);
    assert.deepEqual(['1000000.9', 1000000.9, '1000000'].map(limitUnits), [1000000, 1000000, 1000000]);
  });
});
