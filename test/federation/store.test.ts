import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ManualClock } from '../../src/clock.ts';
import { PartnerStore } from '../../src/federation/store.ts';
import { migrate } from '../../src/storage/database.ts';
import { DatabaseReplayCache } from '../../src/tokens/replay-cache.ts';
import { testDialects } from '../helpers/storage.ts';
import { partnerKey, profile } from './fixture.ts';

for (const dialect of testDialects()) {
  describe(`the partner store on ${dialect.name}`, () => {
    test('round trips profiles by id and by issuer, and another process sees a change', async (t) => {
      const database = await dialect.create(t);
      await migrate(database.storage);
      const clock = new ManualClock();
      const open = (db: typeof database.storage.db) => new PartnerStore(db, clock, { replay: new DatabaseReplayCache(db, clock) });
      const writer = open(database.storage.db);
      const reader = open(database.connect().db);
      const key = await partnerKey('k1');
      const acme = profile([key]);
      assert.equal(await reader.get('acme'), undefined);

      assert.equal(await database.storage.db.transaction().execute((trx) => writer.upsert(trx, acme)), 'created');
      assert.equal(await database.storage.db.transaction().execute((trx) => writer.upsert(trx, acme)), 'unchanged');
      clock.advance(1500); // past the generation check interval
      assert.deepEqual(await reader.get('acme'), acme);
      assert.deepEqual(await reader.byIssuer(acme.issuer), acme);

      const moved = { ...acme, issuer: 'https://as2.acme-bank.example', max_assertion_lifetime: 60 };
      assert.equal(await database.storage.db.transaction().execute((trx) => writer.upsert(trx, moved)), 'updated');
      clock.advance(1500);
      assert.equal(await reader.byIssuer(acme.issuer), undefined);
      assert.equal((await reader.byIssuer(moved.issuer))?.max_assertion_lifetime, 60);
      assert.deepEqual((await reader.list()).map((p) => p.id), ['acme']);
    });

    test('the database refuses two partners with one issuer', async (t) => {
      const database = await dialect.create(t);
      await migrate(database.storage);
      const clock = new ManualClock();
      const store = new PartnerStore(database.storage.db, clock, { replay: new DatabaseReplayCache(database.storage.db, clock) });
      const acme = profile([await partnerKey('k1')]);
      await database.storage.db.transaction().execute((trx) => store.upsert(trx, acme));
      await assert.rejects(database.storage.db.transaction().execute((trx) => store.upsert(trx, { ...acme, id: 'acme-twin' })));
    });
  });
}
