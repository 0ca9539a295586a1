import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ClientMetadata } from '../../src/clients/metadata.ts';
import { ClientStore, clientsOwnedBy } from '../../src/clients/store.ts';
import { ManualClock } from '../../src/clock.ts';
import { migrate } from '../../src/storage/database.ts';
import { testDialects } from '../helpers/storage.ts';

/**
 * Ending a client's tokens and leaving it in service (src/clients/store.ts `endTokens`, a risk
 * suspension's: docs/risk.md "Reactions"), and finding the clients a firm owns (`clientsOwnedBy`,
 * whose tokens its KYC freeze ends), on every dialect. The HTTP behaviour is in
 * test/risk/anomalies/store.test.ts and test/risk/kyc/changes.test.ts.
 */

const service = (clientId: string): ClientMetadata => ({
  client_id: clientId,
  kind: 'service',
  token_endpoint_auth_method: 'client_secret_basic',
  grant_types: ['client_credentials'],
  scope: 'order:create',
});

for (const dialect of testDialects()) {
  describe(`the client store on ${dialect.name}`, () => {
    test("ends a client's tokens and leaves it in service: its cut-off moves to now and never back, its refresh tokens are revoked, another client's stay", async (t) => {
      const database = await dialect.create(t);
      await migrate(database.storage);
      const db = database.storage.db;
      const clock = new ManualClock(Date.UTC(2026, 0, 1));
      const clients = new ClientStore(db, clock);
      await db.transaction().execute(async (trx) => {
        await clients.upsert(trx, service('broker-1'));
        await clients.upsert(trx, service('broker-2'));
      });
      const refresh = (id: string, clientId: string, state: string) => ({
        token_hash: `hash-${id}`, id, family_id: `family-${id}`, parent_id: null, grant_id: `grant-${clientId}`, client_id: clientId, user_id: 'alice', payload: '{}',
        state, created_at: clock.now(), expires_at: clock.now() + 3600_000, used_at: null, retry_seal: null,
      });
      await db.insertInto('refresh_tokens').values([refresh('a', 'broker-1', 'active'), refresh('b', 'broker-1', 'rotated'), refresh('c', 'broker-2', 'active')]).execute();

      clock.advance(1000);
      const endedAt = clock.now();
      assert.deepEqual(await db.transaction().execute((trx) => clients.endTokens(trx, 'broker-1', endedAt)), { refreshTokensRevoked: 2 });
      const reader = new ClientStore(database.connect().db, clock);
      assert.deepEqual([(await reader.get('broker-1'))?.disabledAt, (await reader.get('broker-1'))?.tokensValidAfter], [null, endedAt], 'in service, its cut-off now');
      assert.equal((await reader.get('broker-2'))?.tokensValidAfter, null);
      const states = await db.selectFrom('refresh_tokens').select(['id', 'state']).orderBy('id').execute();
      assert.deepEqual(states.map((r) => [r.id, r.state]), [['a', 'revoked'], ['b', 'revoked'], ['c', 'active']]);

      // A clock stepped back does not move the cut-off back: the tokens it ended stay dead.
      clock.set(endedAt - 60_000);
      await db.transaction().execute((trx) => clients.endTokens(trx, 'broker-1', clock.now()));
      reader.invalidate();
      assert.equal((await reader.get('broker-1'))?.tokensValidAfter, endedAt + 1);
      assert.equal(await db.transaction().execute((trx) => clients.endTokens(trx, 'nobody', clock.now())), undefined, 'an unknown client');
    });

    test('finds the clients in service a legal entity owns, not a disabled one, not another firm\'s, not one that only names the LEI elsewhere', async (t) => {
      const database = await dialect.create(t);
      await migrate(database.storage);
      const db = database.storage.db;
      const clients = new ClientStore(db, new ManualClock(Date.UTC(2026, 0, 1)));
      const firm = '5493001KJTIIGC8Y1R12';
      await db.transaction().execute(async (trx) => {
        await clients.upsert(trx, { ...service('f-2'), owner_lei: firm });
        await clients.upsert(trx, { ...service('f-1'), owner_lei: firm });
        await clients.upsert(trx, { ...service('f-gone'), owner_lei: firm });
        await clients.upsert(trx, { ...service('g-1'), owner_lei: '529900T8BM49AURSDO55' });
        await clients.upsert(trx, { ...service('named'), client_name: firm });
        await clients.disable(trx, 'f-gone', Date.UTC(2026, 0, 1));
      });
      assert.deepEqual(await db.transaction().execute((trx) => clientsOwnedBy(trx, firm)), ['f-1', 'f-2']);
      assert.deepEqual(await db.transaction().execute((trx) => clientsOwnedBy(trx, 'NOONE000000000000000')), []);
    });
  });
}
