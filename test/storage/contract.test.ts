/**
 * The storage contract: one suite, run on every dialect testDialects() returns (SQLite always,
 * PostgreSQL when TEST_DATABASE_URL is set). DESIGN §6, §8 (2).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { describe, test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { compactVerify, importJWK } from 'jose';
import { sql } from 'kysely';
import { ManualClock } from '../../src/clock.ts';
import type { ClientMetadata } from '../../src/clients/metadata.ts';
import { hashClientSecret } from '../../src/clients/secret.ts';
import { defaultRegistrationGrantTypes, defaultRegistrationKinds, InitialAccessTokens, tokenDigest } from '../../src/clients/registration/initial-access-tokens.ts';
import { ClientStore } from '../../src/clients/store.ts';
import { KeyStore } from '../../src/keys/keystore.ts';
import type { ResourceServer } from '../../src/resource-servers/definition.ts';
import { ResourceServerStore } from '../../src/resource-servers/store.ts';
import { migrate, ping, type Storage, type StorageOptions } from '../../src/storage/database.ts';
import { GenerationCache, bumpGeneration } from '../../src/storage/generations.ts';
import { migrations } from '../../src/storage/migrations/index.ts';
import { migrateToBefore, testDialects, type TestDatabase, type TestDialect } from '../helpers/storage.ts';

const allMigrations = Object.keys(migrations);

const orderApi: ResourceServer = {
  identifier: 'https://orders.example.com',
  name: 'Order API',
  scopes: ['order:create', 'order:cancel'],
  access_token_ttl: 300,
  require_sender_constraint: true,
};

const broker: ClientMetadata = {
  client_id: 'broker-1',
  client_name: 'Broker One',
  kind: 'service',
  owner_lei: '5493001KJTIIGC8Y1R12',
  token_endpoint_auth_method: 'client_secret_basic',
  grant_types: ['client_credentials'],
  scope: 'order:create',
};

async function migrated(dialect: TestDialect, t: Parameters<TestDialect['create']>[0]): Promise<TestDatabase> {
  const database = await dialect.create(t);
  await migrate(database.storage);
  return database;
}

async function count(storage: Storage, table: 'clients' | 'resource_servers' | 'signing_keys' | 'generations'): Promise<number> {
  const row = await storage.db.selectFrom(table).select((eb) => eb.fn.countAll<number | string>().as('n')).executeTakeFirstOrThrow();
  return Number(row.n);
}

async function generation(storage: Storage, name: string): Promise<number | undefined> {
  const row = await storage.db.selectFrom('generations').select('value').where('name', '=', name).executeTakeFirst();
  return row?.value;
}

type MigrateOutcome = { ok: boolean; applied?: string[]; error?: string };

/** Two worker threads, each migrating with its own handle and event loop, like two processes. */
function migratingProcesses(t: { after(fn: () => unknown): void }): (options: StorageOptions) => Promise<MigrateOutcome[]> {
  const workers = [0, 1].map(() => new Worker(new URL('../helpers/migrate-worker.ts', import.meta.url)));
  t.after(() => Promise.all(workers.map((w) => w.terminate())));
  return async (options) => {
    const results = workers.map((w) => once(w, 'message') as Promise<[MigrateOutcome]>);
    for (const worker of workers) worker.postMessage(options);
    return (await Promise.all(results)).map(([outcome]) => outcome);
  };
}

for (const dialect of testDialects()) {
  describe(`the storage contract on ${dialect.name}`, () => {
    test('applies every migration, then finds nothing to do when run again', async (t) => {
      const { storage } = await dialect.create(t);
      const first = await migrate(storage);
      assert.deepEqual(
        first.results?.map((r) => [r.migrationName, r.status]),
        allMigrations.map((name) => [name, 'Success']),
      );
      const second = await migrate(storage);
      assert.deepEqual(second.results, []);
      for (const table of ['signing_keys', 'clients', 'resource_servers', 'generations'] as const) {
        assert.equal(await count(storage, table), 0, `${table} exists and is empty`);
      }
      assert.equal(await ping(storage), true);
    });

    test('lets two processes migrate the same database at the same moment', async (t) => {
      const migrateTwice = migratingProcesses(t);
      // A race shows only sometimes: run it on several fresh databases.
      for (let round = 0; round < 5; round++) {
        const database = await dialect.create(t);
        const results = await migrateTwice(database.options);
        for (const result of results) assert.equal(result.ok, true, `round ${round}: ${result.error}`);
        // Each migration ran exactly once, by one of them; the other found it done.
        assert.deepEqual([...results[0]!.applied!, ...results[1]!.applied!].sort(), [...allMigrations].sort(), `round ${round}`);
        assert.deepEqual((await migrate(database.storage)).results, []);
      }
    });

    test('round trips signing keys: another handle with the same master key signs and publishes the same key', async (t) => {
      const database = await migrated(dialect, t);
      const clock = new ManualClock(Date.UTC(2026, 0, 1));
      const masterKey = randomBytes(32);
      const first = new KeyStore(database.storage.db, masterKey, clock);
      await first.ensureSigningKey('ES256');
      await first.ensureSigningKey('ES256'); // a second start creates nothing

      const second = new KeyStore(database.connect().db, masterKey, clock);
      const [key] = await second.list();
      assert.equal((await second.list()).length, 1);
      assert.equal(key!.state, 'active');
      assert.equal(key!.alg, 'ES256');
      assert.equal(key!.createdAt, clock.now());
      assert.deepEqual(await second.jwks(), await first.jwks());

      const jwk = (await first.jwks()).keys[0]!;
      const token = await second.signJwt({ typ: 'JWT' }, { sub: 'x' });
      const { protectedHeader } = await compactVerify(token, await importJWK(jwk, 'ES256'));
      assert.equal(protectedHeader.kid, key!.kid);

      // A rotation by the second handle is seen by the first once it rereads.
      const next = await second.rotate('ES256', 600);
      first.invalidate();
      assert.deepEqual((await first.list()).map((k) => [k.kid, k.state]), [
        [key!.kid, 'active'],
        [next.kid, 'next'],
      ]);
    });

    test('round trips clients, storing only the digest of a generated secret', async (t) => {
      const database = await migrated(dialect, t);
      const clock = new ManualClock(Date.UTC(2026, 0, 1));
      const writer = new ClientStore(database.storage.db, clock);
      const created = await database.storage.db.transaction().execute((trx) => writer.upsert(trx, broker));
      assert.equal(created.outcome, 'created');
      assert.ok(created.secret);

      const reader = new ClientStore(database.connect().db, clock);
      const stored = await reader.get('broker-1');
      assert.deepEqual(stored, { metadata: broker, secretHash: hashClientSecret(created.secret), disabledAt: null, tokensValidAfter: null });
      const row = await database.storage.db.selectFrom('clients').selectAll().executeTakeFirstOrThrow();
      assert.ok(!JSON.stringify(row).includes(created.secret), 'the secret is not stored');
      assert.equal(row.created_at, clock.now());

      const again = await database.storage.db.transaction().execute((trx) => writer.upsert(trx, broker));
      assert.deepEqual(again, { outcome: 'unchanged' });
      clock.advance(1000);
      const renamed = { ...broker, client_name: 'Broker One Ltd' };
      const updated = await database.storage.db.transaction().execute((trx) => writer.upsert(trx, renamed));
      assert.deepEqual(updated, { outcome: 'updated' }, 'the secret is kept');
      reader.invalidate();
      assert.deepEqual(await reader.get('broker-1'), { metadata: renamed, secretHash: hashClientSecret(created.secret), disabledAt: null, tokensValidAfter: null });
      assert.equal(await reader.get('nobody'), undefined);
    });

    test('disables a client and a resource server without deleting them; declared again, they are back in service with their cut-off kept', async (t) => {
      const database = await migrated(dialect, t);
      const clock = new ManualClock(Date.UTC(2026, 0, 1));
      const clients = new ClientStore(database.storage.db, clock);
      const servers = new ResourceServerStore(database.storage.db, clock);
      const db = database.storage.db;
      await db.transaction().execute(async (trx) => {
        await clients.upsert(trx, broker);
        await servers.upsert(trx, orderApi);
      });
      clock.advance(1000);
      const disabledAt = clock.now();
      assert.deepEqual(await db.transaction().execute(async (trx) => [await clients.disable(trx, 'broker-1', disabledAt), await servers.disable(trx, orderApi.identifier, disabledAt)]), [true, true]);
      assert.deepEqual(await db.transaction().execute(async (trx) => [await clients.disable(trx, 'broker-1', disabledAt), await servers.disable(trx, 'https://nowhere.example', disabledAt)]), [false, false], 'already disabled, or unknown');
      const reader = new ClientStore(database.connect().db, clock);
      const readServers = new ResourceServerStore(database.connect().db, clock);
      assert.equal((await reader.get('broker-1'))?.disabledAt, disabledAt);
      assert.equal((await reader.get('broker-1'))?.tokensValidAfter, disabledAt);
      assert.equal(await readServers.get(orderApi.identifier), undefined, 'a disabled resource server is no audience');
      assert.equal((await readServers.getStored(orderApi.identifier))?.disabledAt, disabledAt);
      clock.advance(1000);
      assert.equal((await db.transaction().execute((trx) => clients.upsert(trx, broker))).outcome, 'updated');
      assert.equal(await db.transaction().execute((trx) => servers.upsert(trx, orderApi)), 'updated');
      reader.invalidate();
      readServers.invalidate();
      assert.deepEqual([(await reader.get('broker-1'))?.disabledAt, (await reader.get('broker-1'))?.tokensValidAfter], [null, disabledAt]);
      assert.deepEqual(await readServers.get(orderApi.identifier), orderApi);
      assert.equal((await readServers.getStored(orderApi.identifier))?.tokensValidAfter, disabledAt);
    });

    test('round trips resource servers', async (t) => {
      const database = await migrated(dialect, t);
      const clock = new ManualClock(Date.UTC(2026, 0, 1));
      const writer = new ResourceServerStore(database.storage.db, clock);
      const outcome = await database.storage.db.transaction().execute((trx) => writer.upsert(trx, orderApi));
      assert.equal(outcome, 'created');
      const reader = new ResourceServerStore(database.connect().db, clock);
      assert.deepEqual(await reader.get(orderApi.identifier), orderApi);
      assert.deepEqual(await reader.list(), [orderApi]);
      assert.equal(await database.storage.db.transaction().execute((trx) => writer.upsert(trx, orderApi)), 'unchanged');
      const shorter = { ...orderApi, access_token_ttl: 60 };
      assert.equal(await database.storage.db.transaction().execute((trx) => writer.upsert(trx, shorter)), 'updated');
      reader.invalidate();
      assert.deepEqual(await reader.get(orderApi.identifier), shorter);
    });

    test('a generation cache sees a change made through another handle after its check interval, and at once after invalidate', async (t) => {
      const database = await migrated(dialect, t);
      const clock = new ManualClock(Date.UTC(2026, 0, 1));
      const here = database.storage;
      const there = new ResourceServerStore(database.connect().db, clock); // the second "process"
      let loads = 0;
      const cache = new GenerationCache(
        here.db,
        'resource_servers',
        async () => {
          loads++;
          return count(here, 'resource_servers');
        },
        clock,
        1000,
      );
      assert.equal(await cache.get(), 0);

      await database.connect().db.transaction().execute((trx) => there.upsert(trx, orderApi));
      assert.equal(await cache.get(), 0, 'within the interval the cached value is served');
      clock.advance(999);
      assert.equal(await cache.get(), 0);
      clock.advance(1);
      assert.equal(await cache.get(), 1, 'after the interval the bumped generation is noticed');
      assert.equal(loads, 2);

      clock.advance(1000);
      assert.equal(await cache.get(), 1);
      assert.equal(loads, 2, 'an unchanged generation does not reload');

      await database.connect().db.transaction().execute((trx) =>
        there.upsert(trx, { ...orderApi, identifier: 'https://clearing.example.com' }),
      );
      assert.equal(await cache.get(), 1);
      cache.invalidate();
      assert.equal(await cache.get(), 2, 'invalidate rereads at once');
    });

    test('a generation cache whose clock stepped back checks the generation at its next read', async (t) => {
      const database = await migrated(dialect, t);
      const start = Date.UTC(2026, 0, 1);
      const clock = new ManualClock(start);
      const here = database.storage;
      const there = new ResourceServerStore(database.connect().db, clock);
      const cache = new GenerationCache(here.db, 'resource_servers', () => count(here, 'resource_servers'), clock, 1000);
      assert.equal(await cache.get(), 0);
      // An NTP step or a resumed VM: the wall clock goes back a minute, and the data changes meanwhile.
      clock.set(start - 60_000);
      await database.connect().db.transaction().execute((trx) => there.upsert(trx, orderApi));
      clock.advance(5_000);
      assert.equal(await cache.get(), 1, 'the change is seen at once, not a minute and a second later');
      await database.connect().db.transaction().execute((trx) => there.upsert(trx, { ...orderApi, identifier: 'https://clearing.example.com' }));
      assert.equal(await cache.get(), 1, 'checked at the new time: the interval runs from there');
      clock.advance(1000);
      assert.equal(await cache.get(), 2);
    });

    test('a failed transaction leaves nothing behind', async (t) => {
      const database = await migrated(dialect, t);
      const clock = new ManualClock(Date.UTC(2026, 0, 1));
      const { db } = database.storage;
      const clients = new ClientStore(db, clock);
      const servers = new ResourceServerStore(db, clock);
      await db.transaction().execute((trx) => servers.upsert(trx, orderApi));
      const before = { servers: await generation(database.storage, 'resource_servers') };

      await assert.rejects(
        db.transaction().execute(async (trx) => {
          await servers.upsert(trx, { ...orderApi, access_token_ttl: 60 });
          await servers.upsert(trx, { ...orderApi, identifier: 'https://clearing.example.com' });
          await clients.upsert(trx, broker);
          await bumpGeneration(trx, 'keys');
          // The last entry of an apply fails: e.g. a constraint violation.
          await trx.insertInto('clients').values({ client_id: 'broker-1', metadata: '{}', secret_hash: null, created_at: 0, updated_at: 0 }).execute();
        }),
      );
      assert.equal(await count(database.storage, 'clients'), 0);
      assert.equal(await count(database.storage, 'resource_servers'), 1);
      servers.invalidate();
      assert.deepEqual(await servers.get(orderApi.identifier), orderApi, 'the update was rolled back');
      assert.equal(await generation(database.storage, 'resource_servers'), before.servers);
      assert.equal(await generation(database.storage, 'clients'), undefined);
      assert.equal(await generation(database.storage, 'keys'), undefined);
    });

    test('keeps what an initial access token allows, and gives a token issued before the firm was stored no firm and the default allowance', async (t) => {
      const database = await dialect.create(t);
      const { db } = database.storage;
      // Up to the migration before the allowance columns, then a token as the older code stored it.
      await migrateToBefore(database.storage, allMigrations.find((name) => name.endsWith('_registration_authority'))!);
      const now = Date.UTC(2026, 0, 1);
      const older = 'older-token';
      await db
        .insertInto('initial_access_tokens')
        .values({ token_hash: tokenDigest(older), allowed_scope: 'order:create', uses_left: 1, expires_at: now + 60_000, created_at: now, created_by: 'cli:ops' } as never)
        .execute();
      await migrate(database.storage);

      const tokens = new InitialAccessTokens(database.connect().db);
      assert.deepEqual(await tokens.peek(older, now), {
        scopes: ['order:create'],
        grantTypes: [...defaultRegistrationGrantTypes],
        kinds: [...defaultRegistrationKinds],
        createdBy: 'cli:ops',
      });
      const issued = await tokens.issue({
        allowedScope: 'order:create order:cancel',
        ownerLei: broker.owner_lei!,
        grantTypes: ['client_credentials', 'urn:ietf:params:oauth:grant-type:token-exchange'],
        kinds: ['agent', 'service'],
        uses: 1,
        ttlSeconds: 60,
        createdBy: 'cli:ops',
        now,
      });
      assert.deepEqual(await new InitialAccessTokens(db).peek(issued, now), {
        ownerLei: broker.owner_lei,
        scopes: ['order:create', 'order:cancel'],
        grantTypes: ['client_credentials', 'urn:ietf:params:oauth:grant-type:token-exchange'],
        kinds: ['agent', 'service'],
        createdBy: 'cli:ops',
      });
      assert.equal(await db.transaction().execute((trx) => tokens.consume(trx, issued, now)), true);
      assert.equal(await tokens.peek(issued, now), undefined, 'used up');
      assert.equal(await db.transaction().execute((trx) => tokens.consume(trx, issued, now)), false);
    });

    test('puts people offboarded before credential holds on hold, their password revoked, and leaves everyone else as they were', async (t) => {
      const database = await dialect.create(t);
      const { db } = database.storage;
      await migrateToBefore(database.storage, allMigrations.find((name) => name.endsWith('_credential_holds'))!);
      const now = Date.UTC(2026, 0, 1);
      const person = (id: string, offboardedAt: number | null) => ({
        id, username: id, password_hash: `hash-of-${id}`, name: null, email: null, desks: '[]', roles: '[]', attributes: '{}',
        status: offboardedAt === null ? 'active' : 'disabled', failed_logins: 0, locked_at: null, lock_reason: null, tokens_valid_after: null,
        last_login_at: null, last_failed_login_at: null, last_lockout_at: null, created_at: now, updated_at: now, offboarded_at: offboardedAt,
      });
      await db.insertInto('users').values([person('leaver', now - 1000), person('stayer', null)] as never).execute();
      await migrate(database.storage);
      const held = await db.selectFrom('credential_holds').select(['user_id', 'held_since']).execute();
      assert.deepEqual(held.map((h) => ({ ...h })), [{ user_id: 'leaver', held_since: now - 1000 }]);
      const rows = await db.selectFrom('users').select(['id', 'password_hash']).orderBy('id').execute();
      assert.deepEqual(rows.map((r) => ({ ...r })), [{ id: 'leaver', password_hash: null }, { id: 'stayer', password_hash: 'hash-of-stayer' }]);
    });

    test('returns bigint columns as numbers', async (t) => {
      const database = await migrated(dialect, t);
      const { db } = database.storage;
      const big = 2 ** 52 + 7; // epoch milliseconds and counters stay well inside 2^53
      await db
        .insertInto('resource_servers')
        .values({ identifier: 'https://a.example.com', definition: '{}', created_at: big, updated_at: Date.UTC(2026, 0, 1) })
        .execute();
      await db.insertInto('generations').values({ name: 'x', value: 41 }).execute();
      await bumpGeneration(db, 'x');
      const row = await db.selectFrom('resource_servers').select(['created_at', 'updated_at']).executeTakeFirstOrThrow();
      assert.equal(typeof row.created_at, 'number');
      assert.equal(row.created_at, big);
      assert.equal(row.updated_at, Date.UTC(2026, 0, 1));
      const value = await generation(database.storage, 'x');
      assert.equal(typeof value, 'number');
      assert.equal(value, 42);
      const raw = await sql<{ n: unknown }>`select created_at as n from resource_servers`.execute(db);
      assert.equal(typeof raw.rows[0]!.n, 'number');
    });
  });
}
