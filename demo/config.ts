/**
 * The demo's world, as one `clearance apply` document: four firms (an asset manager whose trading
 * algorithm places orders, an arranger, a broker, a clearing firm), one resource server per
 * business function, the clients, a mandate from the asset manager to its algorithm, and the
 * example policy set (examples/policies), activated by a second person.
 */
import { readPolicySources } from '../src/policy/testing.ts';

export const lei = {
  assetManager: '5299000ASSETMGRS0I94',
  arranger: '5299000ARRANGER0DE22',
  broker: '5299000BROKERSXX0G95',
  clearing: '5299000CLEARING00H44',
} as const;

/** The three resource servers the demo starts, by the audience each one is. */
export interface Audiences {
  orders: string;
  execution: string;
  clearing: string;
  /** Registered but never started: a reporting API in a region the asset manager does not permit. */
  usReporting: string;
}

export const mandateId = 'am-algo-7-fx-2026';

/** Client ids and the public JWK each authenticates with (private_key_jwt). */
export type ClientKeys = Record<'algo-7' | 'arranger-backend' | 'broker-backend' | 'compliance-console', object>;

export function demoDocument(audiences: Audiences, keys: ClientKeys, policiesDir: string, now: Date): Record<string, unknown> {
  const day = 24 * 3600 * 1000;
  const iso = (ms: number) => new Date(ms).toISOString();
  const client = (client_id: keyof ClientKeys, kind: string, owner: string, grantTypes: string[], scope: string) => ({
    client_id,
    kind,
    owner_lei: owner,
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: 'ES256',
    jwks: { keys: [{ ...keys[client_id], kid: `${client_id}-1`, alg: 'ES256', use: 'sig' }] },
    grant_types: grantTypes,
    scope,
  });
  const exchange = 'urn:ietf:params:oauth:grant-type:token-exchange';
  return {
    regions: [{ id: 'uk' }, { id: 'eu' }, { id: 'us' }],
    instrument_classes: [{ id: 'fx' }, { id: 'bond' }, { id: 'fx_derivatives', complex: true }],
    legal_entities: [
      { lei: lei.assetManager, name: 'Demo Asset Management LLP', jurisdiction: 'GB', home_region: 'uk', data_regions: ['eu'], roles: ['asset_manager'] },
      { lei: lei.arranger, name: 'Demo Arranger SA', jurisdiction: 'FR', home_region: 'eu', roles: ['arranger'] },
      { lei: lei.broker, name: 'Demo Broker Ltd', jurisdiction: 'GB', home_region: 'uk', roles: ['broker'] },
      { lei: lei.clearing, name: 'Demo Clearing AG', jurisdiction: 'DE', home_region: 'eu', roles: ['clearing'] },
    ],
    resource_servers: [
      { identifier: audiences.orders, name: 'Arranger order API', scopes: ['order:create', 'settlement:submit'], exchange_clients: ['arranger-backend'], region: 'eu' },
      { identifier: audiences.execution, name: 'Broker execution API', scopes: ['order:create', 'settlement:submit'], exchange_clients: ['broker-backend'], region: 'uk' },
      { identifier: audiences.clearing, name: 'Clearing API', scopes: ['settlement:submit'], require_sender_constraint: true, region: 'eu' },
      { identifier: audiences.usReporting, name: 'US reporting API', scopes: ['report:view'], region: 'us' },
    ],
    clients: [
      client('algo-7', 'agent', lei.assetManager, ['client_credentials'], 'order:create settlement:submit report:view'),
      client('arranger-backend', 'service', lei.arranger, [exchange], 'order:create settlement:submit report:view'),
      client('broker-backend', 'service', lei.broker, [exchange], 'order:create settlement:submit'),
      // The asset manager's compliance desk: revokes mandates through the admin API.
      client('compliance-console', 'service', lei.assetManager, ['client_credentials'], 'admin:read admin:write'),
    ],
    mandates: [
      {
        id: mandateId,
        grantor: { lei: lei.assetManager },
        grantee: { client_id: 'algo-7' },
        scopes: ['order:create', 'settlement:submit'],
        constraints: { instrument_classes: ['fx'], max_notional: { amount: '5000000', currency: 'EUR' }, regions: ['uk', 'eu'] },
        legal_basis: { reference: 'Investment management agreement 2026-01, schedule 3 (algorithmic execution)' },
        effective_from: iso(now.getTime() - day),
        effective_to: iso(now.getTime() + 365 * day),
        accepted_by: 'head-of-trading@demo-am.example',
        accepted_at: iso(now.getTime() - day),
      },
    ],
    policies: [
      {
        version: 'demo-1',
        text: readPolicySources(policiesDir).map((s) => s.text).join('\n'),
        change_ref: 'CHG-DEMO-1',
        author: 'policy.author@demo.example',
        approver: 'risk.approver@demo.example',
        active: true,
      },
    ],
  };
}
