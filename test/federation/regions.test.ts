import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { protocolFixture } from '../endpoints/fixture.ts';

// Regions of tokens and introspecting resource servers (src/federation/regions.ts), on one instance
// (the two-instance topology: test/regions/two-regions.test.ts).

const euApi = 'https://orders.eu.example.com/api';
const usApi = 'https://settlement.us.example.com/api';
const plainApi = 'https://reporting.example.com/api';
const brokerLei = '5493001KJTIIGC8Y1R12';

test('CLEARANCE_REGION is a region identifier, and optional', () => {
  assert.equal(loadConfig({ CLEARANCE_REGION: 'eu-west' }).region, 'eu-west');
  assert.equal(loadConfig({}).region, undefined);
  assert.throws(() => loadConfig({ CLEARANCE_REGION: 'EU' }), ConfigError);
});

test("introspection answers a resource server's client only about tokens of its region; the holder still may", async (t) => {
  const f = await protocolFixture(t, { env: { CLEARANCE_REGION: 'eu' }, risk: 'off' });
  await f.apply({
    regions: [{ id: 'eu' }, { id: 'us' }],
    legal_entities: [{ lei: brokerLei, name: 'Example Broker Ltd', jurisdiction: 'GB', home_region: 'eu', roles: ['broker'] }],
    resource_servers: [
      { identifier: euApi, scopes: ['order:create'], region: 'eu', introspection_clients: ['eu-rs', 'us-rs'] },
      { identifier: usApi, scopes: ['settlement:submit'], region: 'us', introspection_clients: ['us-rs'] },
      // No region of its own: the instance's (eu).
      { identifier: plainApi, scopes: ['report:view'], introspection_clients: ['eu-rs', 'us-rs'] },
    ],
    clients: [
      { client_id: 'caller', kind: 'service', owner_lei: brokerLei, grant_types: ['client_credentials'], scope: 'order:create report:view' },
      { client_id: 'eu-rs', kind: 'service', grant_types: ['client_credentials'] },
      { client_id: 'us-rs', kind: 'service', owner_lei: brokerLei, grant_types: ['client_credentials'], scope: 'order:create' },
    ],
  });
  const introspect = async (client: string, token: string) => (await f.post('/introspect', { auth: f.basic(client), form: { token } })).json() as Record<string, unknown>;
  const euToken = await f.accessToken('caller', { resource: euApi });
  const plainToken = await f.accessToken('caller', { resource: plainApi });

  assert.equal((await introspect('eu-rs', euToken)).active, true);
  assert.deepEqual(await introspect('us-rs', euToken), { active: false }, 'a us resource server, though listed');
  assert.equal((await introspect('eu-rs', plainToken)).active, true, 'no region of its own: the instance\'s');
  assert.deepEqual(await introspect('us-rs', plainToken), { active: false });
  const refused = (await f.auditEvents('introspection.refused')).filter((e) => e.details?.reason === 'other_region');
  assert.ok(refused.length >= 1);
  assert.equal(refused[0]!.details!.caller_region, 'us');

  // us-rs's own token (it is its holder) stays visible to it.
  const own = await f.accessToken('us-rs', { resource: euApi });
  assert.equal((await introspect('us-rs', own)).active, true);
});
