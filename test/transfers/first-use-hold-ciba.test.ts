import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { cibaFixture } from '../ciba/fixture.ts';
import { testDialects, type TestDialect } from '../helpers/storage.ts';
import { controls, custodyApi, iban, seedDestination, transfer, transferDocument } from './enforcement-fixture.ts';

// /bc-authorize asks a second person for a destination's first use only while its first-use hold
// lasts (docs/transfers.md "Thresholds and approvals", "Risk holds"), as the token endpoint does.

type Json = Record<string, unknown>;
const ibanDestination = { kind: 'iban' as const, iban, bic: 'COBADEFFXXX' };
const cibaGrant = 'urn:openid:params:grant-type:ciba';
const hour = 3600_000;

/** CIBA with a trader on the treasury desk, the transfer controls with a one-hour first-use hold, and a destination usable from `usableFrom` ago. */
async function holdFixture(t: TestContext, dialect: TestDialect, usableAgo: number) {
  const f = await cibaFixture(t, { dialect });
  await f.apply({
    ...transferDocument,
    resource_servers: [{ identifier: custodyApi, scopes: ['transfer:withdrawal', 'transfer:internal', 'transfer:collateral', 'position:view'] }],
    users: [{ username: 'trader', name: 'Tina Trader', desks: ['treasury'], roles: ['trader'] }],
    clients: [
      ...transferDocument.clients,
      { client_id: 'treasury-ciba', kind: 'app', token_endpoint_auth_method: 'client_secret_basic', grant_types: [cibaGrant], backchannel_token_delivery_mode: 'poll', scope: 'openid transfer:withdrawal' },
    ],
    transfer_controls: { ...controls, defaults: { first_use_hold: 3600 } },
    policies: [{ version: 'v1', text: '@id("all") permit (principal, action, resource);', change_ref: 'CHG-1', author: 'alice.author', approver: 'bob.approver', active: true }],
  });
  await seedDestination(f.ctx, { destination: ibanDestination, state: 'usable', usableFrom: f.clock.now() - usableAgo });
  const ask = async (): Promise<number> => {
    const started = await f.bcAuthorize(
      { scope: 'openid transfer:withdrawal', login_hint: 'trader', binding_message: 'Withdrawal W-1', resource: custodyApi, authorization_details: JSON.stringify([transfer({ amount: '2500' })]) },
      'treasury-ciba',
    );
    assert.equal(started.statusCode, 200, started.body);
    assert.ok((started.json() as Json).auth_req_id);
    return (await f.pending()).requiredApprovals;
  };
  return { f, ask };
}

for (const dialect of testDialects()) {
  describe(`a destination's first use at /bc-authorize on ${dialect.name}`, () => {
    test('asks a second person while the first-use hold lasts', async (t) => {
      const { ask } = await holdFixture(t, dialect, 10 * 60_000);
      assert.equal(await ask(), 1);
    });

    test('asks nobody once the hold has ended, though the destination was never used', async (t) => {
      const { ask } = await holdFixture(t, dialect, 2 * hour);
      assert.equal(await ask(), 0);
    });
  });
}
