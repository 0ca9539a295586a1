/**
 * Two Clearance instances, one per region, each on its own PostgreSQL database (docs/privacy.md
 * "Regions"): eu at https://eu.clearance.test, us at https://us.clearance.test, partners of each
 * other through trust profiles.
 *
 *   if (!regionsDatabaseUrl) return t.skip('...');
 *   const { eu, us, person } = await twoRegions(t);     // databases dropped after the test
 *   const found = await us.scan([person.userId]);          // every row of every us table
 *
 * The databases are created with the postgres superuser of TEST_DATABASE_URL
 * (`CREATE DATABASE clearance_region_<name>_<random>`) and dropped (WITH (FORCE)) when the test ends.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { TestContext } from 'node:test';
import pg from 'pg';
import { openStorage, type Storage, type StorageOptions } from '../../src/storage/database.ts';
import { acr } from '../../src/identity/acr.ts';
import { codeFlowFixture, pkce, type CodeFlowFixture, type Person } from '../authorization/fixture.ts';
import { adminQuery, testDatabaseUrl, type TestDatabase, type TestDialect } from './storage.ts';

/** The PostgreSQL server the regions' databases are created on (the suite skips without it). */
export const regionsDatabaseUrl = testDatabaseUrl;

/** Example Broker Ltd: a firm homed in eu that lets its (pseudonymous) orders be processed in us. */
export const euBrokerLei = '5493001KJTIIGC8Y1R12';

export const euIssuer = 'https://eu.clearance.test';
export const usIssuer = 'https://us.clearance.test';
/** eu's order API, in eu. */
export const euOrdersApi = 'https://orders.eu.example.com/api';
/** The cross-region hop as eu registers it: us's issuer, a resource server of region us. */
export const usHop = usIssuer;
/** us's settlement API, in us. */
export const usSettlementApi = 'https://settlement.us.example.com/api';

const exchangeGrant = 'urn:ietf:params:oauth:grant-type:token-exchange';
const permitAll = { version: 'all-1', text: '@id("all") permit (principal, action, resource);', change_ref: 'REGIONS-1', author: 'a', approver: 'b', active: true };
const firm = (homeRegion: string, desks: { id: string; name: string }[] = []) => ({
  lei: euBrokerLei,
  name: 'Example Broker Ltd',
  jurisdiction: 'GB',
  home_region: homeRegion,
  data_regions: ['us'],
  roles: ['broker'],
  desks,
});

/** A dialect whose `create` makes a database of its own on the PostgreSQL server (not a schema). */
export function regionDialect(region: string, serverUrl: string = regionsDatabaseUrl!): TestDialect & { databaseName(): string | undefined } {
  let name: string | undefined;
  return {
    name: 'postgres',
    databaseName: () => name,
    async create(t) {
      name = `clearance_region_${region}_${randomBytes(6).toString('hex')}`;
      await adminQuery(serverUrl, `create database ${name}`);
      const url = new URL(serverUrl);
      url.pathname = `/${name}`;
      const options: StorageOptions = { databaseUrl: url.href, poolSize: 4 };
      const handles: Storage[] = [];
      const connect = () => {
        const storage = openStorage(options);
        let closing: Promise<void> | undefined;
        const once = { ...storage, close: () => (closing ??= storage.close()) };
        handles.push(once);
        return once;
      };
      const dropped = name;
      let cleaned: Promise<void> | undefined;
      const database: TestDatabase = {
        dialect: 'postgres',
        options,
        storage: connect(),
        connect,
        cleanup: () =>
          (cleaned ??= (async () => {
            await Promise.all(handles.map((h) => h.close()));
            await adminQuery(serverUrl, `drop database if exists ${dropped} with (force)`);
          })()),
      };
      t?.after(() => database.cleanup());
      return database;
    },
  };
}

/** One region's Clearance: a code-flow fixture (inject) on its own database, and a scan of it. */
export interface RegionInstance {
  name: string;
  issuer: string;
  f: CodeFlowFixture;
  /** The database's name on the server. */
  database: string;
  /** Every table's rows (as text, byte columns as latin1) that contain one of `needles`: `table: needle`. */
  scan(needles: string[]): Promise<string[]>;
}

/** Starts the Clearance of `name` (CLEARANCE_REGION=name) on a database of its own. */
export async function startRegion(t: TestContext, name: string, issuer: string, env: NodeJS.ProcessEnv = {}): Promise<RegionInstance> {
  const dialect = regionDialect(name);
  const f = await codeFlowFixture(t, { dialect, env: { CLEARANCE_ISSUER: issuer, CLEARANCE_REGION: name, ...env }, risk: 'off' });
  const database = dialect.databaseName()!;
  const url = new URL(regionsDatabaseUrl!);
  url.pathname = `/${database}`;
  return {
    name,
    issuer,
    f,
    database,
    async scan(needles) {
      // Whatever the recorder and the sealer still hold goes to the database first.
      await (f.ctx.audit as { flush?: () => Promise<void> }).flush?.();
      const client = new pg.Client({ connectionString: url.href });
      await client.connect();
      try {
        const tables = await client.query<{ table_name: string }>("select table_name from information_schema.tables where table_schema = 'public' and table_type = 'BASE TABLE' order by table_name");
        const found: string[] = [];
        for (const { table_name } of tables.rows) {
          const rows = await client.query(`select * from "${table_name}"`);
          const text = rows.rows.map((row) => Object.values(row).map((v) => (Buffer.isBuffer(v) ? v.toString('latin1') : typeof v === 'object' ? JSON.stringify(v) : String(v))).join('\u0000')).join('\n');
          for (const needle of needles) if (text.includes(needle)) found.push(`${table_name}: ${needle}`);
        }
        return found;
      } finally {
        await client.end();
      }
    },
  };
}

/** The two regions, set up as docs/privacy.md "Regions" describes, and eu's person with their order token. */
export interface TwoRegions {
  eu: RegionInstance;
  us: RegionInstance;
  /** Alice, a trader of eu's broker: she exists only in eu's database. */
  person: Person & { name: string; email: string };
  /** Alice's access token for eu's order API (web-app, code flow, acr multi-factor). */
  orderToken: string;
  /** An authorization code (not redeemed) web-app got for Alice for the hop to us, and its PKCE verifier. */
  hopCode: { code: string; verifier: string };
}

/**
 * eu: the broker (home eu, data_regions [us]) with its desk; eu's order API (region eu), the hop to
 * us (resource server `https://us.clearance.test`, region us); `eu-desk-backend` exchanges orders
 * tokens for the hop; `eu-orders-rs` introspects the order API; `us-surveillance`, us's resource
 * server registered here to introspect the hop's tokens, is also (by mistake) listed on the order API.
 * us: the same firm (reference data: no person), us's settlement API (region us), eu as a partner
 * whose tokens `us-gateway` exchanges for the settlement API, `origin_lei` mapped to the firm.
 */
export async function twoRegions(t: TestContext): Promise<TwoRegions> {
  const eu = await startRegion(t, 'eu', euIssuer);
  const us = await startRegion(t, 'us', usIssuer);
  // One time for both: the later of the two clocks (each started when its fixture was made; a
  // clock set back would be before its own signing key).
  const now = Math.max(eu.f.clock.now(), us.f.clock.now());
  eu.f.clock.set(now);
  us.f.clock.set(now);

  await eu.f.apply({
    regions: [{ id: 'eu' }, { id: 'us' }],
    legal_entities: [firm('eu', [{ id: 'eu-rates', name: 'Rates' }])],
    resource_servers: [
      { identifier: euOrdersApi, name: 'Order API', scopes: ['order:create'], exchange_clients: ['eu-desk-backend'], introspection_clients: ['eu-orders-rs', 'us-surveillance'], region: 'eu' },
      { identifier: usHop, name: 'US clearing', scopes: ['order:create'], introspection_clients: ['us-surveillance'], region: 'us' },
    ],
    clients: [
      { client_id: 'eu-desk-backend', kind: 'service', owner_lei: euBrokerLei, grant_types: [exchangeGrant], scope: 'order:create' },
      { client_id: 'eu-orders-rs', kind: 'service', owner_lei: euBrokerLei, grant_types: ['client_credentials'] },
      { client_id: 'us-surveillance', kind: 'service', grant_types: ['client_credentials'] },
    ],
    policies: [permitAll],
  });
  const euKeys = await eu.f.ctx.keys.jwks();
  await us.f.apply({
    regions: [{ id: 'eu' }, { id: 'us' }],
    legal_entities: [firm('eu')],
    resource_servers: [{ identifier: usSettlementApi, name: 'Settlement API', scopes: ['order:create'], introspection_clients: ['us-settlement-rs'], region: 'us' }],
    clients: [
      { client_id: 'us-gateway', kind: 'service', grant_types: [exchangeGrant], scope: 'order:create' },
      { client_id: 'us-settlement-rs', kind: 'service', grant_types: ['client_credentials'] },
    ],
    partners: [
      {
        id: 'clearance-eu',
        issuer: euIssuer,
        jwks: { keys: euKeys.keys.map((k) => ({ ...k })) },
        algorithms: ['ES256'],
        allowed_audiences: [usSettlementApi],
        allowed_scopes: ['order:create'],
        claim_mapping: { lei: 'origin_lei' },
        legal_entities: [euBrokerLei],
        clients: ['us-gateway'],
      },
    ],
    policies: [permitAll],
  });

  // Alice exists only in eu: her desk is the broker's.
  const person = await eu.f.signIn('alice', { acr: acr.multiFactor, amr: ['pwd', 'otp', 'mfa'] });
  await eu.f.ctx.storage.db.updateTable('users').set({ desks: JSON.stringify(['eu-rates']) }).where('id', '=', person.userId).execute();
  // She consents to web-app's tokens for the order API and for the hop to us.
  const challenge = pkce();
  const { code } = await eu.f.authorizeAndApprove({ person, pkce: challenge, query: { scope: 'order:create', resource: euOrdersApi } });
  const hop = await eu.f.authorizeAndApprove({ person, query: { scope: 'order:create', resource: usHop } });
  const redeemed = await eu.f.redeem('web-app', code, challenge.verifier);
  assert.equal(redeemed.statusCode, 200, redeemed.body);
  return {
    eu,
    us,
    person: { ...person, name: 'Alice Trader', email: 'alice@broker.example.com' },
    orderToken: redeemed.json().access_token as string,
    hopCode: { code: hop.code, verifier: hop.pkce.verifier },
  };
}

/** RFC 8693 token exchange at `region` by `clientId` (with `actorToken`: delegation, §4.1). */
export function exchangeAt(region: RegionInstance, clientId: string, subjectToken: string, resource: string, actorToken?: string) {
  return region.f.post('/token', {
    auth: region.f.basic(clientId),
    form: {
      grant_type: exchangeGrant,
      subject_token: subjectToken,
      subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      resource,
      ...(actorToken !== undefined ? { actor_token: actorToken, actor_token_type: 'urn:ietf:params:oauth:token-type:access_token' } : {}),
    },
  });
}

/**
 * Another trader of eu's broker (Bob, only in eu's database), with his own order token from web-app,
 * exchanged by `eu-desk-backend` for the order API: a person's token issued to the desk backend,
 * which it may present as its `actor_token`.
 */
export async function secondTrader(eu: RegionInstance): Promise<{ person: Person & { name: string; email: string }; backendToken: string }> {
  const person = await eu.f.signIn('bob', { acr: acr.multiFactor, amr: ['pwd', 'otp', 'mfa'] });
  await eu.f.ctx.storage.db.updateTable('users').set({ desks: JSON.stringify(['eu-rates']) }).where('id', '=', person.userId).execute();
  const challenge = pkce();
  const { code } = await eu.f.authorizeAndApprove({ person, pkce: challenge, query: { scope: 'order:create', resource: euOrdersApi } });
  const redeemed = await eu.f.redeem('web-app', code, challenge.verifier);
  assert.equal(redeemed.statusCode, 200, redeemed.body);
  const exchanged = await exchangeAt(eu, 'eu-desk-backend', redeemed.json().access_token as string, euOrdersApi);
  assert.equal(exchanged.statusCode, 200, exchanged.body);
  return { person: { ...person, name: 'Bob Trader', email: 'bob@broker.example.com' }, backendToken: exchanged.json().access_token as string };
}

/** RFC 7662 introspection at `region` by `clientId`. */
export async function introspectAt(region: RegionInstance, clientId: string, token: string): Promise<Record<string, unknown>> {
  const response = await region.f.post('/introspect', { auth: region.f.basic(clientId), form: { token } });
  assert.equal(response.statusCode, 200, response.body);
  return response.json() as Record<string, unknown>;
}
