import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { executeApply, planApply } from '../../src/apply/index.ts';
import type { Context } from '../../src/context.ts';
import { formatProblem } from '../../src/validation.ts';
import { testContext } from '../helpers/storage.ts';
import { partnerKey } from './fixture.ts';

const source = { actor: 'test', via: 'cli' } as const;

const orders = { identifier: 'https://orders.example.com', scopes: ['order:create', 'order:cancel'] };
const clearing = { identifier: 'https://clearing.example.com', scopes: ['settlement:submit'] };

async function partnerEntry(overrides: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
  const key = await partnerKey('acme-2025');
  return {
    id: 'acme',
    name: 'ACME Bank',
    issuer: 'https://as.acme-bank.example',
    jwks: { keys: [key.jwk] },
    algorithms: ['ES256'],
    required_claims: ['org_lei'],
    claim_mapping: { lei: 'org_lei', desk: 'desk_id' },
    allowed_audiences: ['https://orders.example.com'],
    allowed_scopes: ['order:create'],
    ...overrides,
  };
}

async function problems(ctx: Context, document: unknown): Promise<string[]> {
  return (await planApply(ctx, document)).problems.map(formatProblem);
}

describe('the partners section of clearance apply', () => {
  test('reports every problem of a profile with its exact path', async (t) => {
    const { ctx } = await testContext({ t });
    const issuer = ctx.config.issuer;
    const good = await partnerEntry();
    const document = {
      resource_servers: [orders, clearing],
      clients: [{ client_id: 'gateway', grant_types: ['client_credentials'], scope: 'order:create' }],
      partners: [
        good,
        await partnerEntry({ id: 'bad id!', issuer: 'http://as.other.example', colour: 'blue' }),
        await partnerEntry({ id: 'both', issuer: 'https://both.example', jwks_uri: 'https://both.example/jwks' }),
        await partnerEntry({ id: 'neither', issuer: 'https://neither.example', jwks: undefined }),
        await partnerEntry({
          id: 'private-key',
          issuer: 'https://pk.example',
          jwks: { keys: [{ kty: 'EC', crv: 'P-256', x: 'AAAA', y: 'AAAA', d: 'c2VjcmV0' }] },
        }),
        await partnerEntry({ id: 'algs', issuer: 'https://algs.example', algorithms: ['ES256', 'none', 'HS256', 'RS1'] }),
        await partnerEntry({ id: 'lifetime', issuer: 'https://lifetime.example', max_assertion_lifetime: 99999, claim_mapping: { LEI: 'org_lei', desk: 7 } }),
        await partnerEntry({
          id: 'refs',
          issuer: 'https://refs.example',
          allowed_audiences: ['https://orders.example.com', 'https://nowhere.example.com', `${issuer}/admin`],
          allowed_scopes: ['order:create', 'settlement:submit'],
          clients: ['gateway', 'ghost'],
        }),
        await partnerEntry({ issuer: 'https://as.acme-bank.example' }),
        await partnerEntry({ id: 'loopback', issuer: 'http://127.0.0.1:8444', jwks: undefined, jwks_uri: 'http://127.0.0.1:8444/jwks' }),
        await partnerEntry({ id: 'mismatch', issuer: 'https://mismatch.example', algorithms: ['PS256'] }),
      ],
    };
    assert.deepEqual(await problems(ctx, document), [
      'partners[1].colour: is not a recognised field',
      'partners[1].id: must be 1-64 letters, digits and ._- (starting with a letter or digit)',
      'partners[1].issuer: must be https (http only for loopback hosts)',
      'partners[2].jwks: must not be given together with jwks_uri (exactly one of them)',
      'partners[3].jwks: is required (or jwks_uri): the keys the partner signs with',
      'partners[4].jwks.keys[0]: must be a public signing key: it is not a public key (has private member "d")',
      'partners[5].algorithms[1]: "none" is never accepted (RFC 8725 §3.1)',
      'partners[5].algorithms[2]: HS256 is symmetric; a partner\'s tokens are verified with its public keys only (RFC 8725 §3.1)',
      'partners[5].algorithms[3]: must be one of ES256, ES384, ES512, EdDSA, Ed25519, PS256, PS384, PS512, RS256, RS384, RS512',
      'partners[6].max_assertion_lifetime: must be from 1 to 3600',
      'partners[6].claim_mapping.LEI: is not a valid local attribute name (lowercase letters, digits and _, starting with a letter)',
      'partners[6].claim_mapping.desk: must be a non-empty string',
      'partners[9].issuer: may be http only with allow_private_network: true (a loopback partner, for development and tests)',
      'partners[9].jwks_uri: may be http only with allow_private_network: true (a loopback partner, for development and tests)',
      'partners[10].algorithms: allows none of the algorithms the jwks keys verify (ES256)',
      'partners[8].id: "acme" is also defined at partners[0]',
      'partners[8].issuer: "https://as.acme-bank.example" is also defined at partners[0]',
      'partners[7].allowed_audiences[1]: no resource server "https://nowhere.example.com"',
      `partners[7].allowed_audiences[2]: ${issuer}/admin is Clearance's own API; a partner's subjects may not be given tokens for it`,
      'partners[7].allowed_scopes[1]: "settlement:submit" is not accepted by any of the allowed audiences',
      'partners[7].clients[1]: no client "ghost"',
    ]);
  });

  test('takes an http issuer and jwks_uri only on a loopback host, not a name under .localhost', async (t) => {
    const { ctx } = await testContext({ t });
    const at = async (origin: string) =>
      problems(ctx, { resource_servers: [orders], partners: [await partnerEntry({ issuer: origin, jwks: undefined, jwks_uri: `${origin}/jwks`, allow_private_network: true })] });
    assert.deepEqual(await at('http://[::ffff:127.0.0.1]:8444'), []);
    assert.deepEqual(await at('http://127.0.0.2:8444'), []);
    assert.deepEqual(await at('http://as.localhost:8444'), [
      'partners[0].issuer: must be https (http only for loopback hosts)',
      'partners[0].jwks_uri: must be https (http only for loopback hosts)',
    ]);
  });

  test('applies a profile with its defaults, finds nothing to change the second time, and audits the change', async (t) => {
    const { ctx } = await testContext({ t });
    const document = { resource_servers: [orders], partners: [await partnerEntry()] };
    const first = await planApply(ctx, document);
    assert.deepEqual(first.problems, []);
    const applied = await executeApply(ctx, first.plan!, source);
    assert.deepEqual(applied.changes.filter((c) => c.kind === 'partner'), [{ kind: 'partner', id: 'acme', outcome: 'created' }]);

    const stored = await ctx.partners.byIssuer('https://as.acme-bank.example');
    assert.equal(stored?.id, 'acme');
    assert.equal(stored.max_assertion_lifetime, 300, 'default lifetime');
    assert.equal(stored.accept_id_tokens, false);
    assert.equal(stored.allow_private_network, false);
    assert.equal(stored.clients, undefined, 'any authenticated client');
    assert.deepEqual(await ctx.partners.get('acme'), stored);

    const again = await executeApply(ctx, (await planApply(ctx, document)).plan!, source);
    assert.ok(again.changes.every((c) => c.outcome === 'unchanged'), JSON.stringify(again.changes));

    const changed = { ...document, partners: [{ ...document.partners[0], max_assertion_lifetime: 120 }] };
    const third = await executeApply(ctx, (await planApply(ctx, changed)).plan!, source);
    assert.deepEqual(third.changes.filter((c) => c.kind === 'partner'), [{ kind: 'partner', id: 'acme', outcome: 'updated' }]);
    assert.equal((await ctx.partners.get('acme'))?.max_assertion_lifetime, 120);

    const events = await ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', 'config.applied').orderBy('seq').execute();
    assert.equal(events.length, 2, 'the create and the update; not the unchanged apply');
    const partnerChanges = events.map((row) => (JSON.parse(row.event) as { details: { changes: { kind: string }[] } }).details.changes.filter((c) => c.kind === 'partner'));
    assert.deepEqual(partnerChanges, [[{ kind: 'partner', id: 'acme', outcome: 'created' }], [{ kind: 'partner', id: 'acme', outcome: 'updated' }]]);
  });

  test('refuses an issuer that another stored partner already has', async (t) => {
    const { ctx } = await testContext({ t });
    const first = { resource_servers: [orders], partners: [await partnerEntry()] };
    await executeApply(ctx, (await planApply(ctx, first)).plan!, source);
    assert.deepEqual(await problems(ctx, { partners: [await partnerEntry({ id: 'acme-2' })] }), ['partners[0].issuer: is already the issuer of partner acme']);
  });
});
