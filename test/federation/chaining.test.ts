import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { executeApply, planApply } from '../../src/apply/index.ts';
import type { Context } from '../../src/context.ts';
import { formatProblem } from '../../src/validation.ts';
import { testContext } from '../helpers/storage.ts';
import { partnerKey } from './fixture.ts';

// The `chaining` section of a partner's trust profile (src/federation/chaining.ts): the grants
// Clearance issues for the partner's authorization server. docs/apply.md "partners[]".

const orders = { identifier: 'https://orders.example.com', scopes: ['order:create', 'order:cancel'] };

async function partnerEntry(overrides: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
  const key = await partnerKey('acme-2025');
  return {
    id: 'acme',
    issuer: 'https://as.acme-bank.example',
    jwks: { keys: [key.jwk] },
    algorithms: ['ES256'],
    allowed_audiences: [],
    allowed_scopes: [],
    chaining: { clients: ['desk-backend'], scopes: ['order:create'] },
    ...overrides,
  };
}

const clients = [{ client_id: 'desk-backend', grant_types: ['urn:ietf:params:oauth:grant-type:token-exchange'], scope: 'order:create' }];

async function problems(ctx: Context, document: unknown): Promise<string[]> {
  return (await planApply(ctx, document)).problems.map(formatProblem);
}

describe('the chaining section of a partner profile', () => {
  test('a profile that only sends grants is stored with the defaults: pairwise subjects, act and txn, 60 seconds', async (t) => {
    const { ctx } = await testContext({ t });
    const { plan, problems: found } = await planApply(ctx, { resource_servers: [orders], clients, partners: [await partnerEntry()] });
    assert.deepEqual(found.map(formatProblem), []);
    await executeApply(ctx, plan!, { actor: 'test', via: 'cli' });
    const stored = await ctx.partners.get('acme');
    assert.deepEqual(stored!.chaining, { clients: ['desk-backend'], scopes: ['order:create'], subject: 'pairwise', claims: ['act', 'txn'], lifetime: 60 });
    assert.deepEqual(stored!.allowed_audiences, []);
  });

  test('without chaining, a profile must still accept something', async (t) => {
    const { ctx } = await testContext({ t });
    const found = await problems(ctx, { resource_servers: [orders], clients, partners: [await partnerEntry({ chaining: undefined })] });
    assert.ok(found.includes('partners[0].allowed_audiences: must not be empty'), found.join('\n'));
    assert.ok(found.includes('partners[0].allowed_scopes: must not be empty'), found.join('\n'));
  });

  test('reports every problem of the section with its path', async (t) => {
    const { ctx } = await testContext({ t });
    const found = await problems(ctx, {
      resource_servers: [orders],
      clients,
      partners: [
        await partnerEntry({
          chaining: { clients: ['desk-backend', 'ghost'], scopes: ['Order'], subject: 'email', claims: ['act', 'grant_id'], lifetime: 3600, audience: 'http://as.acme-bank.example/token', colour: 'blue' },
        }),
        await partnerEntry({ id: 'other', issuer: 'https://as.other.example', chaining: { clients: [], scopes: ['order:create'], audience: 'https://as.acme-bank.example' } }),
      ],
    });
    const expected = [
      'partners[0].chaining.colour: is not a recognised field',
      'partners[0].chaining.scopes[0]: must be a business verb scope such as order:create',
      'partners[0].chaining.subject: must be one of pairwise, linked, public',
      'partners[0].chaining.claims[1]: must be one of act, txn, mandate, acr, origin_lei',
      'partners[0].chaining.lifetime: must be from 1 to 300',
      'partners[0].chaining.audience: must be https (http only for loopback hosts)',
      'partners[1].chaining.clients: must not be empty',
    ];
    for (const problem of expected) assert.ok(found.includes(problem), `missing: ${problem}\n${found.join('\n')}`);
  });

  test('chaining clients must exist, and a chaining audience must select one partner', async (t) => {
    const { ctx } = await testContext({ t });
    const found = await problems(ctx, {
      resource_servers: [orders],
      clients,
      partners: [
        await partnerEntry({ chaining: { clients: ['desk-backend', 'ghost'], scopes: ['order:create'] } }),
        await partnerEntry({ id: 'other', issuer: 'https://as.other.example', chaining: { clients: ['desk-backend'], scopes: ['order:create'], audience: 'https://as.acme-bank.example' } }),
      ],
    });
    assert.ok(found.includes('partners[0].chaining.clients[1]: no client "ghost"'), found.join('\n'));
    assert.ok(found.includes('partners[1].chaining.audience: also names partner acme'), found.join('\n'));
    assert.ok(found.includes("partners[0].issuer: is partner other's chaining audience"), 'and from the side of the partner whose issuer it is');
  });

  test("a partner added later whose issuer is a stored partner's chaining audience is refused: each name selects one partner", async (t) => {
    const { ctx } = await testContext({ t });
    const other = await partnerEntry({ id: 'other', issuer: 'https://as.other.example', chaining: { clients: ['desk-backend'], scopes: ['order:create'], audience: 'https://as.acme-bank.example' } });
    const { plan, problems: first } = await planApply(ctx, { resource_servers: [orders], clients, partners: [other] });
    assert.deepEqual(first.map(formatProblem), [], 'alone, it is valid');
    await executeApply(ctx, plan!, { actor: 'test', via: 'cli' });
    const later = await problems(ctx, { partners: [await partnerEntry({ chaining: { clients: ['desk-backend'], scopes: ['order:create'] } })] });
    assert.ok(later.includes("partners[0].issuer: is partner other's chaining audience"), later.join('\n'));
  });
});
