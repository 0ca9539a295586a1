import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { decodeJwt } from 'jose';
import type { StoredAuditEvent } from '../../src/audit/events.ts';
import { canonicalize } from '../../src/jose/canonical-json.ts';
import { codeFlowFixture, orderDetail } from '../authorization/fixture.ts';
import { assertOAuthError } from '../endpoints/fixture.ts';
import { testDialects } from '../helpers/storage.ts';
import { cryptoWithdrawal, evmAddress, ibanWithdrawal, travelRule } from './detail.test.ts';
import { transferServer } from './http-fixture.ts';

/** Each bad input, and the words its refusal names. */
const badInputs: [string, Record<string, unknown>, RegExp][] = [
  ['a bad IBAN', { ...ibanWithdrawal, destination: { kind: 'iban', iban: 'DE89370400440532013001' } }, /destination\.iban is not a valid IBAN/],
  ['a bad BIC', { ...ibanWithdrawal, destination: { kind: 'iban', iban: 'DE89370400440532013000', bic: 'COBA1EFF' } }, /destination\.bic is not a valid BIC/],
  ['an EVM address with a bad checksum', { ...cryptoWithdrawal, destination: { kind: 'blockchain', account: `eip155:1:${evmAddress.replace('aAeb', 'AAeb')}` } }, /destination\.account has a wrong EIP-55 checksum/],
  [
    'a Bitcoin testnet address for mainnet bitcoin',
    { ...cryptoWithdrawal, asset: 'bip122:000000000019d6689c085ae165831e93/slip44:0', destination: { kind: 'blockchain', account: 'bip122:000000000019d6689c085ae165831e93:tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx' } },
    /is a testnet address, not one of Bitcoin mainnet/,
  ],
  ['an unknown chain namespace', { ...cryptoWithdrawal, destination: { kind: 'blockchain', account: 'tron:mainnet:TLa2f6VPqDgRE67v1736s7bJ8Ray5wYjU7' } }, /chain namespace tron, whose addresses Clearance cannot validate \(supported: eip155, bip122, solana\)/],
  ['a crypto transfer without its travel rule', { ...cryptoWithdrawal, travel_rule: undefined }, /travel_rule is required for a crypto-asset transfer/],
  ['an unknown field', { ...ibanWithdrawal, fee_account: 'TR-009' }, /fee_account is not a field of this type/],
  ['an asset on another chain than the destination', { ...cryptoWithdrawal, destination: { kind: 'blockchain', account: `eip155:10:${evmAddress}` } }, /destination\.account is on chain eip155:10, not on the asset's chain eip155:1/],
];

/** A collateral movement of ether between the treasury's two accounts, with its travel rule. */
const collateral = { type: 'transfer', transfer_type: 'collateral', asset: 'eip155:1/slip44:60', amount: '12.5', source_account: 'TR-001', destination: { kind: 'internal', account: 'TR-002' }, purpose: 'Margin top-up', travel_rule: travelRule };

async function events(ctx: { storage: { db: any } }, type: string): Promise<StoredAuditEvent[]> {
  const rows = await ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', type).orderBy('seq').execute();
  return rows.map((r: { event: string }) => JSON.parse(r.event) as StoredAuditEvent);
}

describe('transfer entries over HTTP', () => {
  for (const dialect of testDialects()) {
    test(`the token endpoint refuses each bad transfer entry with invalid_authorization_details naming the problem (${dialect.name})`, async (t) => {
      const { token } = await transferServer(t, { dialect });
      for (const [what, entry, words] of badInputs) {
        const body = assertOAuthError(await token({ scope: 'position:view', authorization_details: JSON.stringify([entry]) }), 400, 'invalid_authorization_details', what);
        assert.match(String(body.error_description), words, what);
      }
    });

    test(`a granted transfer's token, token response and audit event carry the travel rule's SHA-256 and no personal data; Cedar saw every field (${dialect.name})`, async (t) => {
      const { token, ctx } = await transferServer(t, { dialect });
      const response = await token({ scope: 'position:view', authorization_details: JSON.stringify([collateral]) });
      assert.equal(response.statusCode, 200, response.body);
      const digest = createHash('sha256').update(canonicalize(travelRule)).digest('base64url');
      const { travel_rule: _, ...rest } = collateral;
      const body = response.json() as { access_token: string; authorization_details: unknown[] };
      assert.deepEqual(body.authorization_details, [{ ...rest, travel_rule_sha256: digest }]);
      assert.deepEqual(decodeJwt(body.access_token).authorization_details, [{ ...rest, travel_rule_sha256: digest }]);
      assert.doesNotMatch(Buffer.from(body.access_token.split('.')[1]!, 'base64url').toString(), /Doe|Example Custodian|5493001KJTIIGC8Y1R12/);
      const [issued] = await events(ctx, 'token.issued');
      assert.doesNotMatch(JSON.stringify(issued), /Jane|Doe|Example Custodian/);
      assert.deepEqual((issued!.details!.authorization_details as unknown[])[0], { ...rest, travel_rule_sha256: digest });
      // The folded decision: transfer:collateral on the source account, every field in the context.
      const decisions = issued!.details!.decisions as { action: string; resource: string; request: number }[];
      const decision = decisions.find((d) => d.action === 'transfer:collateral')!;
      assert.equal(decision.resource, 'Account::"TR-001"');
      const context = (issued!.details!.requests as { context: Record<string, unknown> }[])[decision.request]!.context;
      const fields = ['transfer_type', 'asset', 'chain', 'currency', 'destination_kind', 'destination', 'purpose', 'travel_rule_present', 'amount', 'notional'];
      assert.deepEqual(Object.fromEntries(fields.filter((f) => f in context).map((f) => [f, context[f]])), {
        transfer_type: 'collateral',
        asset: 'eip155:1/slip44:60',
        chain: 'eip155:1',
        destination_kind: 'internal',
        destination: 'internal:TR-002',
        purpose: 'Margin top-up',
        travel_rule_present: true,
        amount: 13,
        notional: 13,
      });
    });
  }

  test('the decision point refuses a treasury withdrawal to a blockchain address above the desk\'s limit, naming the policy', async (t) => {
    const { ctx } = await transferServer(t);
    const { detailRequests } = await import('../../src/policy/issuance.ts');
    const { evaluateDecision } = await import('../../src/policy/decide.ts');
    const principal = { type: 'Client' as const, id: 'treasury-bot' };
    const withdrawal = (amount: string) => ({ ...cryptoWithdrawal, source_account: 'TR-001', amount });
    const decide = async (amount: string) => {
      const [request] = detailRequests(principal, withdrawal(amount), {});
      assert.equal(request!.action, 'transfer:withdrawal');
      return (await evaluateDecision(ctx, request!)).decision;
    };
    assert.equal((await decide('100')).allow, true);
    // Cedar compares whole units, the amount rounded up: 100.9 is above a limit of 100 (it is 101).
    for (const amount of ['100.9', '101']) {
      const denied = await decide(amount);
      assert.equal(denied.allow, false, amount);
      assert.deepEqual(denied.reasons, ['treasury-blockchain-withdrawal-limit']);
    }
  });

  test('PAR refuses a bad transfer entry in a request object, and accepts a good one', async (t) => {
    const f = await codeFlowFixture(t);
    const good = await f.requestObject({ scope: 'order:create', authorization_details: [orderDetail, ibanWithdrawal] });
    assert.equal((await f.par('par-app', { request: good })).statusCode, 201);
    for (const [what, entry, words] of badInputs) {
      const request = await f.requestObject({ scope: 'order:create', authorization_details: [entry] });
      const body = assertOAuthError(await f.par('par-app', { request }), 400, 'invalid_authorization_details', what);
      // RFC 6749 §5.2: error_description has no double quotes; they travel as single ones.
      assert.match(String(body.error_description), words, what);
    }
  });

  test('discovery advertises every type and its JSON Schema URL; each schema is served, cacheable, and compiles as JSON Schema', async (t) => {
    const { app } = await transferServer(t);
    const discovery = (await app.inject({ method: 'GET', url: '/.well-known/openid-configuration' })).json() as Record<string, unknown>;
    assert.deepEqual(discovery.authorization_details_types_supported, ['order', 'settlement_instruction', 'transfer']);
    const schemas = discovery.authorization_details_schemas as Record<string, string>;
    assert.deepEqual(Object.keys(schemas), ['order', 'settlement_instruction', 'transfer']);
    const ajv = new Ajv2020({ strict: false, validateFormats: false, discriminator: true });
    for (const [type, url] of Object.entries(schemas)) {
      const response = await app.inject({ method: 'GET', url: new URL(url).pathname });
      assert.equal(response.statusCode, 200, url);
      assert.match(String(response.headers['content-type']), /^application\/schema\+json/);
      assert.match(String(response.headers['cache-control']), /^public, max-age=\d+/);
      const schema = response.json() as Record<string, unknown>;
      assert.equal(schema.$id, url);
      assert.equal(schema.$schema, 'https://json-schema.org/draft/2020-12/schema');
      const validate = ajv.compile(schema);
      if (type === 'transfer') {
        assert.equal(validate(ibanWithdrawal), true, JSON.stringify(validate.errors));
        assert.equal(validate(cryptoWithdrawal), true, JSON.stringify(validate.errors));
        assert.equal(validate({ ...ibanWithdrawal, fee_account: 'x' }), false);
      }
      const again = await app.inject({ method: 'GET', url: new URL(url).pathname, headers: { 'if-none-match': String(response.headers.etag) } });
      assert.equal(again.statusCode, 304);
    }
    assertOAuthError(await app.inject({ method: 'GET', url: '/authorization-details/schemas/wire.json' }), 404, 'not_found');
  });
});
