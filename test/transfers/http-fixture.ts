import type { TestContext } from 'node:test';
import { buildApp } from '../../src/http/app.ts';
import { basicAuthorization, formBody } from '../endpoints/fixture.ts';
import { applyDocument } from '../policy/fixture.ts';
import { testContext, type TestDialect } from '../helpers/storage.ts';

export const custodyApi = 'https://custody.example.com/api';
export const treasuryLei = '5493001KJTIIGC8Y1R12';

/**
 * The example policy of docs/transfers.md: a firm's services initiate transfers from the firm's
 * accounts; the treasury desk withdraws at most 100 whole units of a crypto asset to a blockchain
 * address at once.
 */
export const transferPolicy = `
@id("firm-services-transfer-from-own-accounts")
permit (principal is Client, action in Action::"transfers", resource is Account)
when { principal in resource.legal_entity };

@id("tokens-for-services")
permit (principal is Client, action, resource is ResourceServer);

@id("treasury-blockchain-withdrawal-limit")
forbid (principal, action == Action::"transfer:withdrawal", resource is Account)
when {
  resource has desk && resource.desk == Desk::"treasury" &&
  context has destination_kind && context.destination_kind == "blockchain" &&
  context has amount && context.amount > 100
};
`;

/** A firm with a treasury desk and two accounts, a custody API, a treasury service client and the example policy. */
export async function transferServer(t: TestContext, options: { dialect?: TestDialect; env?: NodeJS.ProcessEnv } = {}) {
  const server = await testContext({ t, ...(options.dialect ? { dialect: options.dialect } : {}), ...(options.env ? { env: options.env } : {}) });
  const secrets = await applyDocument(server.ctx, {
    regions: [{ id: 'eu', name: 'European Union' }],
    instrument_classes: [{ id: 'crypto', name: 'Crypto-asset spot' }],
    legal_entities: [
      {
        lei: treasuryLei,
        name: 'Example Broker Ltd',
        jurisdiction: 'GB',
        home_region: 'eu',
        roles: ['broker', 'custodian'],
        desks: [{ id: 'treasury', name: 'Treasury', product_classes: ['crypto'] }],
        accounts: [
          { id: 'TR-001', desk: 'treasury', region: 'eu' },
          { id: 'TR-002', desk: 'treasury', region: 'eu' },
        ],
      },
    ],
    resource_servers: [{ identifier: custodyApi, scopes: ['position:view'] }],
    clients: [{ client_id: 'treasury-bot', kind: 'service', owner_lei: treasuryLei, grant_types: ['client_credentials'], scope: 'position:view' }],
    policies: [{ version: 'v1', text: transferPolicy, change_ref: 'CHG-1', author: 'alice.author', approver: 'bob.approver', active: true }],
  });
  const app = buildApp(server.ctx);
  t.after(() => app.close());
  await app.ready();
  const token = (form: Record<string, string>) =>
    app.inject({
      method: 'POST',
      url: '/token',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuthorization('treasury-bot', secrets['treasury-bot']!) },
      payload: formBody({ grant_type: 'client_credentials', resource: custodyApi, ...form }),
    });
  return { ...server, app, token };
}
