import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test, type TestContext } from 'node:test';
import type { AuthorizationDetail } from '../../src/authorization/authorization-details.ts';
import type { Context } from '../../src/context.ts';
import { OAuthError } from '../../src/oauth-error.ts';
import { authorizeIssuance, type Issuance } from '../../src/policy/issuance.ts';
import { applyDocument, userId } from '../policy/fixture.ts';
import { buildApp } from '../../src/http/app.ts';
import { readContext } from '../../src/endpoints/access/authzen.ts';
import { Validator } from '../../src/validation.ts';
import { basicAuthorization } from '../endpoints/fixture.ts';
import { brokerLei, custodyApi, ether, etherAddress, iban, seedDestination, transfer, transferContext } from './enforcement-fixture.ts';

/** The example policies exactly as docs/transfers.md shows them: the first cedar block of "Enforcement at issuance" › "Example policies". */
function documentedPolicies(): string {
  const doc = readFileSync(new URL('../../docs/transfers.md', import.meta.url), 'utf8');
  const enforcement = doc.slice(doc.indexOf('## Enforcement at issuance'));
  const section = enforcement.slice(enforcement.indexOf('### Example policies'));
  const block = /```cedar\n([\s\S]*?)```/.exec(section);
  assert.ok(block, 'docs/transfers.md has the example policies');
  return block[1]!;
}

const ibanDestination = { kind: 'iban' as const, iban, bic: 'COBADEFFXXX' };
let requests = 0;

async function policyServer(t: TestContext) {
  const base = await transferContext(t);
  const { ctx } = base;
  const more = await applyDocument(ctx, {
    users: [
      { username: 'tina', desks: ['treasury'] },
      { username: 'chris', desks: ['crypto'] },
    ],
    clients: [
      { client_id: 'algo-treasury', kind: 'agent', owner_lei: brokerLei, grant_types: ['client_credentials'], scope: 'transfer:withdrawal' },
      // The custodian's gateway asks the decision point again when it executes a transfer (AuthZEN).
      { client_id: 'custody-gateway', kind: 'service', owner_lei: brokerLei, grant_types: ['client_credentials'], scope: 'access:evaluate' },
    ],
  });
  await applyDocument(ctx, { policies: [{ version: 'v1', text: documentedPolicies(), change_ref: 'CHG-7', author: 'alice.author', approver: 'bob.approver', active: true }] });
  for (const account of ['TRE-001', 'CRY-001']) await seedDestination(ctx, { account, destination: ibanDestination, state: 'usable' });
  await seedDestination(ctx, { destination: { kind: 'blockchain', account: etherAddress }, state: 'usable' });
  return { ...base, secrets: { ...base.secrets, ...more } };
}

function issuance(subject: Issuance['subject'], details: Record<string, unknown>[]): Issuance {
  return {
    subject,
    clientId: subject.type === 'Client' ? subject.id : 'treasury-app',
    audience: custodyApi,
    scopes: [],
    authorizationDetails: details as unknown as AuthorizationDetail[],
    requestId: `policy-${++requests}`,
    grantType: 'client_credentials',
  };
}

async function refusedBy(ctx: Context, request: Issuance): Promise<string> {
  try {
    await authorizeIssuance(ctx, request);
  } catch (error) {
    assert.ok(error instanceof OAuthError, String(error));
    assert.equal(error.error, 'invalid_authorization_details', error.description);
    return error.description!;
  }
  assert.fail('allowed');
}

const service = { type: 'Client' as const, id: 'treasury-app' };

describe('the example transfer policies of docs/transfers.md', () => {
  test('let withdrawals leave only from a treasury account', async (t) => {
    const { ctx } = await policyServer(t);
    await authorizeIssuance(ctx, issuance(service, [transfer()]));
    assert.match(await refusedBy(ctx, issuance(service, [transfer({ source_account: 'CRY-001' })])), /transfer:withdrawal on CRY-001\) is refused by policy: withdrawals-from-treasury-accounts-only/);
    // An internal transfer between the firm's own accounts is not a withdrawal.
    await authorizeIssuance(ctx, issuance(service, [transfer({ source_account: 'CRY-001', transfer_type: 'internal', destination: { kind: 'internal', account: 'TRE-002' } })]));
  });

  test('let only people of the treasury desk withdraw', async (t) => {
    const { ctx } = await policyServer(t);
    await authorizeIssuance(ctx, issuance({ type: 'User', id: await userId(ctx, 'tina') }, [transfer()]));
    assert.match(await refusedBy(ctx, issuance({ type: 'User', id: await userId(ctx, 'chris') }, [transfer()])), /refused by policy: withdrawals-by-treasury-people-only/);
  });

  test('forbid an algorithm a crypto withdrawal above 10 units', async (t) => {
    const { ctx } = await policyServer(t);
    const crypto = (amount: string) => transfer({ asset: ether, amount, destination: { kind: 'blockchain', account: etherAddress } });
    const agent = { type: 'Client' as const, id: 'algo-treasury' };
    await authorizeIssuance(ctx, issuance(agent, [crypto('10')]));
    assert.match(await refusedBy(ctx, issuance(agent, [crypto('11')])), /refused by policy: no-large-crypto-withdrawals-by-agents/);
    // A service (not an algorithm) may.
    await authorizeIssuance(ctx, issuance(service, [crypto('12')]));
  });

  test('ask a large withdrawal for its purpose', async (t) => {
    const { ctx } = await policyServer(t);
    assert.match(await refusedBy(ctx, issuance(service, [transfer({ amount: '100000' })])), /refused by policy: large-withdrawals-state-a-purpose/);
    await authorizeIssuance(ctx, issuance(service, [transfer({ amount: '100000', purpose: 'Quarterly dividend' })]));
    await authorizeIssuance(ctx, issuance(service, [transfer({ amount: '99999' })]));
    // Whole units, rounded up (the strict side): 99,999.99 is decided as 100,000.
    assert.match(await refusedBy(ctx, issuance(service, [transfer({ amount: '99999.99' })])), /refused by policy: large-withdrawals-state-a-purpose/);
  });

  test('are the same decisions at the AuthZEN API, when the custodian executing a transfer sends its fields in the context', async (t) => {
    const { ctx, secrets } = await policyServer(t);
    const app = buildApp(ctx);
    t.after(() => app.close());
    const evaluate = async (amount: number) => {
      const response = await app.inject({
        method: 'POST',
        url: '/access/v1/evaluation',
        headers: { 'content-type': 'application/json', authorization: basicAuthorization('custody-gateway', secrets['custody-gateway']!) },
        payload: JSON.stringify({
          subject: { type: 'agent', id: 'algo-treasury' },
          action: { name: 'transfer:withdrawal' },
          resource: { type: 'account', id: 'TRE-001' },
          context: { transfer_type: 'withdrawal', asset: ether, amount, chain: 'eip155:1', destination_kind: 'blockchain', destination: `caip10:${etherAddress.toLowerCase()}` },
        }),
      });
      assert.equal(response.statusCode, 200, response.body);
      return response.json() as { decision: boolean; context: { reasons: string[] } };
    };
    assert.equal((await evaluate(10)).decision, true);
    const refused = await evaluate(11);
    assert.equal(refused.decision, false);
    assert.deepEqual(refused.context.reasons, ['no-large-crypto-withdrawals-by-agents']);
    // A field the schema does not know is still refused, whole.
    const unknown = await app.inject({
      method: 'POST',
      url: '/access/v1/evaluation',
      headers: { 'content-type': 'application/json', authorization: basicAuthorization('custody-gateway', secrets['custody-gateway']!) },
      payload: JSON.stringify({ subject: { type: 'agent', id: 'algo-treasury' }, action: { name: 'transfer:withdrawal' }, resource: { type: 'account', id: 'TRE-001' }, context: { beneficiary_name: 'x' } }),
    });
    assert.equal(unknown.statusCode, 400, unknown.body);
  });

  test('read the AuthZEN context in the spelling issuance uses: an ERC-20 contract and a CAIP-10 address lower-cased, an IBAN upper-cased', () => {
    const v = new Validator();
    const context = readContext(v, 'context', {
      asset: 'eip155:1/erc20:0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48',
      destination: 'caip10:eip155:1:0xAb5801a7D398351b8bE11C439e05C5B3259aeC9B',
    });
    assert.deepEqual(v.problems, []);
    assert.equal(context?.asset, 'eip155:1/erc20:0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48');
    assert.equal(context?.destination, 'caip10:eip155:1:0xab5801a7d398351b8be11c439e05c5b3259aec9b');
    assert.equal(readContext(v, 'context', { destination: 'iban:de89370400440532013000' })?.destination, 'iban:DE89370400440532013000');
  });
});
