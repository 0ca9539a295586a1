import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { fourEyesEligible, fourEyesRequirement } from '../../src/approvals/four-eyes.ts';
import type { Approver } from '../../src/approvals/independence.ts';
import { openApprovalRequest, type ApproverProof } from '../../src/approvals/requests.ts';
import { acr } from '../../src/identity/acr.ts';
import type { OAuthError } from '../../src/oauth-error.ts';
import { compilePolicySet } from '../../src/policy/engine.ts';
import { authorizeIssuance } from '../../src/policy/issuance.ts';
import { applyDocument, exampleEntities, examplePolicyText, ordersApi, peopleAndClients, userId } from '../policy/fixture.ts';
import { testContext } from '../helpers/storage.ts';
import type { TestContext } from 'node:test';

const order = (amount: number) => ({
  type: 'order',
  instrument: { class: 'fx', symbol: 'EURUSD' },
  side: 'buy',
  max_notional: { amount: String(amount), currency: 'USD' },
  venue: 'XLON',
  account: 'ACC-FX-1',
});

/** The example entities and people, a supervisor of fx-spot, and the example policies with four-eyes. */
async function fourEyesContext(t: Pick<TestContext, 'after'>) {
  const { ctx, clock } = await testContext({ t });
  await applyDocument(ctx, {
    ...exampleEntities(),
    ...peopleAndClients,
    clients: [...peopleAndClients.clients, { client_id: 'desk-app', kind: 'app', grant_types: ['client_credentials'], scope: 'order:create' }],
    users: [
      ...peopleAndClients.users,
      { username: 'grace', desks: ['fx-spot'], roles: ['approver'], attributes: { kyc_status: 'verified', supervises: ['fx-spot'], approval_limit: 45_000_000 } },
      { username: 'heidi', desks: ['fx-spot'], roles: ['trader'], attributes: { kyc_status: 'verified', supervises: ['fx-spot'], approval_limit: 45_000_000 } },
    ],
  });
  await applyDocument(ctx, {
    policies: [{ version: 'v1', text: examplePolicyText({ approval: true, fourEyes: true }), change_ref: 'CHG-1', author: 'alice.author', approver: 'bob.approver', active: true }],
  });
  const id = (name: string) => userId(ctx, name);
  return { ctx, clock, id };
}

const question = (userIdValue: string, amount: number) => ({
  userId: userIdValue,
  clientId: 'desk-app',
  audience: ordersApi,
  scopes: ['order:create'],
  authorizationDetails: [order(amount)],
  requestId: 'r-1',
});

describe('four-eyes policies', () => {
  test('ask as many second persons as the policies say: none, one above 30 million, two above 40 million', async (t) => {
    const { ctx, id } = await fourEyesContext(t);
    const alice = await id('alice');
    assert.deepEqual(await fourEyesRequirement(ctx, question(alice, 2_000_000)), { approvals: 0, policies: [] });
    assert.deepEqual(await fourEyesRequirement(ctx, question(alice, 35_000_000)), { approvals: 1, policies: ['four-eyes-large-orders'] });
    assert.deepEqual(await fourEyesRequirement(ctx, question(alice, 45_000_000)), { approvals: 2, policies: ['four-eyes-large-orders', 'four-eyes-largest-orders'] });
  });

  test('are a plain refusal outside a decoupled request: no sign-in or passkey of the person lifts them', async (t) => {
    const { ctx, id } = await fourEyesContext(t);
    const issuance = {
      subject: { type: 'User' as const, id: (await id('alice'))! },
      clientId: 'desk-app',
      audience: ordersApi,
      scopes: ['order:create'],
      authorizationDetails: [order(35_000_000)],
      acr: acr.phishingResistantHardware,
      authTime: Math.floor(ctx.clock.now() / 1000),
      approved: true,
      requestId: 'r-2',
      grantType: 'authorization_code',
    };
    await assert.rejects(authorizeIssuance(ctx, issuance), (error: OAuthError) => {
      assert.equal(error.error, 'invalid_authorization_details', 'not insufficient_user_authentication: signing in again would not help');
      assert.match(error.description!, /four-eyes-large-orders/);
      return true;
    });
    assert.ok(await authorizeIssuance(ctx, { ...issuance, approvals: 1 }));
  });

  test('refuse at once what no number of approvals would let through, with the decisions recorded', async (t) => {
    const { ctx, id } = await fourEyesContext(t);
    await assert.rejects(fourEyesRequirement(ctx, question(await id('alice'), 60_000_000)), (error: OAuthError) => {
      assert.equal(error.error, 'invalid_authorization_details');
      assert.match(error.description!, /limit-fx-spot-desk-fx/);
      return true;
    });
    const denied = await ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', 'policy.denied').execute();
    assert.ok(denied.length > 0);
  });

  test('let a supervisor of the person’s desk approve, with a passkey, within their limit — and nobody else', async (t) => {
    const { ctx, id } = await fourEyesContext(t);
    const [alice, grace, heidi, carol] = await Promise.all(['alice', 'grace', 'heidi', 'carol'].map(id));
    const open = (amount: number, subject = alice!) =>
      openApprovalRequest(ctx, {
        kind: 'ciba',
        requester: 'desk-app',
        requesterType: 'client',
        subject,
        clientId: 'desk-app',
        content: { type: 'ciba', authorization_details: [order(amount)] },
        requiredApprovals: 1,
        subjectMustApprove: true,
        ttlMs: 600_000,
      });
    const approver = (userIdValue: string, username: string, roles: string[]): Approver => ({ userId: userIdValue, username, roles, desks: ['fx-spot'] });
    const passkey: ApproverProof = { method: 'token', acr: acr.phishingResistant, amr: ['hwk', 'user'], authTime: Math.floor(ctx.clock.now() / 1000), jti: 'j', clientId: 'approvals-app' };
    const password: ApproverProof = { ...passkey, acr: acr.password, amr: ['pwd'] };

    const within = await open(35_000_000);
    assert.equal(await fourEyesEligible(ctx, within, approver(grace!, 'grace', ['approver']), passkey), undefined);
    assert.match((await fourEyesEligible(ctx, within, approver(grace!, 'grace', ['approver']), password))!, /no policy lets this person approve it/);
    assert.match((await fourEyesEligible(ctx, within, approver(heidi!, 'heidi', ['trader']), passkey))!, /no policy/, 'a supervisor without the approver role');
    assert.match((await fourEyesEligible(ctx, await open(48_000_000), approver(grace!, 'grace', ['approver']), passkey))!, /no policy/, 'above the approval limit');
    assert.match((await fourEyesEligible(ctx, await open(1_000, carol!), approver(grace!, 'grace', ['approver']), passkey))!, /no policy/, 'a desk grace does not supervise');
    const decisions = await ctx.storage.db.selectFrom('audit_events').select(['type', 'txn']).where('txn', '=', within.id).execute();
    assert.deepEqual(decisions.map((d) => d.type).sort(), ['approval.requested', 'policy.allowed', 'policy.denied', 'policy.denied']);
  });

  test('decide a transfer with its amount, rounded up: a supervisor whose approval limit is below it is not eligible', async (t) => {
    const { ctx, id } = await fourEyesContext(t);
    const [alice, grace] = await Promise.all(['alice', 'grace'].map(id));
    // docs/transfers.md: a transfer goes through the same four-eyes approve check as an order.
    const transfer = (amount: string | number) => ({
      type: 'transfer',
      transfer_type: 'withdrawal',
      asset: 'USD',
      amount,
      source_account: 'TRE-001',
      destination: { kind: 'iban', iban: 'DE89370400440532013000', bic: 'COBADEFFXXX' },
    });
    const open = (details: unknown[]) =>
      openApprovalRequest(ctx, {
        kind: 'ciba',
        requester: 'desk-app',
        requesterType: 'client',
        subject: alice!,
        clientId: 'desk-app',
        content: { type: 'ciba', authorization_details: details },
        requiredApprovals: 1,
        subjectMustApprove: true,
        ttlMs: 600_000,
      });
    const supervisor: Approver = { userId: grace!, username: 'grace', roles: ['approver'], desks: ['fx-spot'] };
    const passkey: ApproverProof = { method: 'token', acr: acr.phishingResistant, amr: ['hwk', 'user'], authTime: Math.floor(ctx.clock.now() / 1000), jti: 'j', clientId: 'approvals-app' };

    assert.equal(await fourEyesEligible(ctx, await open([transfer('45000000')]), supervisor, passkey), undefined, 'at her limit of 45 million');
    assert.match((await fourEyesEligible(ctx, await open([transfer('60000000')]), supervisor, passkey))!, /no policy lets this person approve it/, 'above her limit');
    assert.match((await fourEyesEligible(ctx, await open([transfer('45000000.01')]), supervisor, passkey))!, /no policy/, 'a cent above her limit: rounded up, never down');
    assert.match((await fourEyesEligible(ctx, await open([transfer('1000'), transfer('50000000')]), supervisor, passkey))!, /no policy/, 'every entry is decided');
    assert.match((await fourEyesEligible(ctx, await open([transfer('lots')]), supervisor, passkey))!, /amount cannot be read/, 'fail closed');
  });

  test('a broad permit never makes anyone an approver: the permit must name the approve action', async (t) => {
    const { ctx, id } = await fourEyesContext(t);
    await applyDocument(ctx, { policies: [{ version: 'v2', text: '@id("all") permit (principal, action, resource);', change_ref: 'CHG-2', author: 'alice.author', approver: 'bob.approver', active: true }] });
    const request = await openApprovalRequest(ctx, {
      kind: 'ciba',
      requester: 'desk-app',
      requesterType: 'client',
      subject: (await id('alice'))!,
      content: { type: 'ciba', authorization_details: [] },
      requiredApprovals: 1,
      subjectMustApprove: false,
      ttlMs: 60_000,
    });
    const proof: ApproverProof = { method: 'token', acr: acr.phishingResistant, amr: ['hwk'], authTime: Math.floor(ctx.clock.now() / 1000), jti: 'j', clientId: 'c' };
    assert.match((await fourEyesEligible(ctx, request, { userId: (await id('carol'))!, username: 'carol', roles: [], desks: ['crypto'] }, proof))!, /names the approve action/);
  });

  test('compile only with @approval("passkey") or @approval("four-eyes"), and record which forbids and permits are which', () => {
    const { set } = compilePolicySet('t', [{ name: 'four-eyes.cedar', text: examplePolicyText({ approval: true, fourEyes: true }) }]);
    assert.ok(set);
    assert.deepEqual([...set.fourEyes].sort(), ['four-eyes-large-orders', 'four-eyes-largest-orders']);
    assert.deepEqual([...set.approvals], ['approve-large-orders']);
    assert.deepEqual([...set.approvePermits], ['supervisors-approve-their-desks']);
    const wrong = compilePolicySet('t', [{ name: 'x.cedar', text: '@id("x") @approval("supervisor") forbid (principal, action, resource);' }]);
    assert.match(wrong.problems.map((p) => p.message).join('\n'), /@approval must be one of: passkey, four-eyes/);
  });
});
