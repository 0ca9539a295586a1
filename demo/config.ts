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
  pensionFund: '5299000PENSIONFND070',
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

/** The three APIs on loopback ports, and the reporting API that is registered but never started. */
export function loopbackAudiences(ports: { orders: number; execution: number; clearing: number }): Audiences {
  return {
    orders: `http://127.0.0.1:${ports.orders}`,
    execution: `http://127.0.0.1:${ports.execution}`,
    clearing: `http://127.0.0.1:${ports.clearing}`,
    usReporting: 'https://reporting.us.example.com',
  };
}

/** Client ids and the public JWK each authenticates with (private_key_jwt). */
export type ClientKeys = Record<'algo-7' | 'arranger-backend' | 'broker-backend' | 'compliance-console' | 'broker-oms' | 'clearing-settlement' | 'clearing-backoffice', object>;

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
      // The broker's compliance desk: its officer reads the audit log of the broker's trades (docs/console.md).
      { lei: lei.broker, name: 'Demo Broker Ltd', jurisdiction: 'GB', home_region: 'uk', roles: ['broker'], desks: [{ id: 'broker-compliance', name: 'Compliance' }] },
      { lei: lei.clearing, name: 'Demo Clearing AG', jurisdiction: 'DE', home_region: 'eu', roles: ['clearing'] },
    ],
    resource_servers: [
      { identifier: audiences.orders, name: 'Arranger order API', owner_lei: lei.arranger, scopes: ['order:create', 'settlement:submit'], exchange_clients: ['arranger-backend'], region: 'eu' },
      { identifier: audiences.execution, name: 'Broker execution API', owner_lei: lei.broker, scopes: ['order:create', 'settlement:submit'], exchange_clients: ['broker-backend'], region: 'uk' },
      // The clearing firm's own API: owner_lei makes the clearing firm a party to every trade the API
      // takes, so its settlement system appends evidence with evidence:append alone (docs/evidence.md).
      { identifier: audiences.clearing, name: 'Clearing API', owner_lei: lei.clearing, scopes: ['settlement:submit'], require_sender_constraint: true, region: 'eu' },
      { identifier: audiences.usReporting, name: 'US reporting API', scopes: ['report:view'], region: 'us' },
    ],
    clients: [
      client('algo-7', 'agent', lei.assetManager, ['client_credentials'], 'order:create settlement:submit report:view'),
      client('arranger-backend', 'service', lei.arranger, [exchange], 'order:create settlement:submit report:view'),
      client('broker-backend', 'service', lei.broker, [exchange], 'order:create settlement:submit'),
      // The asset manager's compliance desk: revokes mandates through the admin API.
      client('compliance-console', 'service', lei.assetManager, ['client_credentials'], 'admin:read admin:write'),
      // Evidence producers (docs/evidence.md): the broker's order management system and the clearing
      // firm's settlement system append what they did under the trade's txn — evidence:append only.
      client('broker-oms', 'service', lei.broker, ['client_credentials'], 'evidence:append'),
      client('clearing-settlement', 'service', lei.clearing, ['client_credentials'], 'evidence:append'),
      // The clearing firm's back office reads the evidence of the trades its API took part in, and
      // only those: its own client, evidence:counterparty only (docs/evidence.md "Evidence for counterparties").
      client('clearing-backoffice', 'service', lei.clearing, ['client_credentials'], 'evidence:counterparty'),
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

/** The mandate a pension fund gives the asset manager: the firm's FX desk trades under it. */
export const deskMandateId = 'fund-am-fx-2026';

/** The trader who signs in through a browser (test/browser/person-chain.test.ts). */
export const trader = { username: 'tara', password: 'demo trader passphrase 2026', name: 'Tara Trader' } as const;

/**
 * The demo's world plus people (issue 17 item 7): a pension fund that mandates the asset manager,
 * the asset manager's FX desk and a trader on it, and the desk's trading front end (a web app that
 * signs the trader in with the authorization code flow). The trader's orders then travel the same
 * arranger → broker → clearing chain as the algorithm's, with the trader as the subject.
 */
export function withTrader(document: Record<string, unknown>, app: { redirectUri: string }, now: Date): Record<string, unknown> {
  const day = 24 * 3600 * 1000;
  const iso = (ms: number) => new Date(ms).toISOString();
  const entities = (document.legal_entities as Record<string, unknown>[]).map((e) =>
    e.lei === lei.assetManager ? { ...e, desks: [{ id: 'am-fx', name: 'FX desk', product_classes: ['fx'] }] } : e,
  );
  return {
    ...document,
    legal_entities: [...entities, { lei: lei.pensionFund, name: 'Demo Pension Fund', jurisdiction: 'GB', home_region: 'uk', roles: ['asset_manager'] }],
    clients: [
      ...(document.clients as unknown[]),
      {
        client_id: 'am-trading-app',
        client_name: 'Asset manager trading screen',
        kind: 'app',
        owner_lei: lei.assetManager,
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: ['authorization_code'],
        redirect_uris: [app.redirectUri],
        require_pushed_authorization_requests: true,
        // The order and its settlement: the broker's hop to clearing narrows to settlement:submit.
        scope: 'openid order:create settlement:submit',
      },
    ],
    users: [
      {
        username: trader.username,
        password: trader.password,
        name: trader.name,
        email: 'tara@demo-am.example',
        desks: ['am-fx'],
        roles: ['trader'],
        kyc: { status: 'verified', level: 'standard', provider: 'idv-demo', evidence_ref: 'IDV-DEMO-7' },
      },
    ],
    mandates: [
      ...(document.mandates as unknown[]),
      {
        id: deskMandateId,
        grantor: { lei: lei.pensionFund },
        grantee: { lei: lei.assetManager },
        scopes: ['order:create', 'settlement:submit'],
        constraints: { instrument_classes: ['fx'], max_notional: { amount: '10000000', currency: 'EUR' }, regions: ['uk', 'eu'] },
        legal_basis: { reference: 'Investment management agreement, Demo Pension Fund, 2026-03 (FX overlay)' },
        effective_from: iso(now.getTime() - day),
        effective_to: iso(now.getTime() + 365 * day),
        accepted_by: 'head-of-trading@demo-am.example',
        accepted_at: iso(now.getTime() - day),
      },
    ],
  };
}
