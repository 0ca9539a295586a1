import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { migrate, openStorage } from '../../src/storage/database.ts';
import { familyKey, RevocationList } from '../../src/tokens/revocation.ts';
import { testDialects } from '../helpers/storage.ts';

describe('the revocation list', () => {
  for (const dialect of testDialects()) {
    test(`revokes a token by its jti and every token of a refresh family by the family, and nothing else (${dialect.name})`, async (t) => {
      const database = await dialect.create(t);
      await migrate(database.storage);
      const list = new RevocationList(database.storage.db);
      await list.revoke('jti-revoked', 2_000, 1_000, 'test');
      await list.revokeFamily('family-revoked', 3_000, 1_000, 'test');
      await list.revokeFamily('family-revoked', 3_000, 1_000, 'twice is not an error');
      assert.equal(await list.isRevoked('jti-revoked'), true);
      assert.equal(await list.isRevoked('jti-live'), false);
      assert.equal(await list.isRevoked('jti-live', 'family-revoked'), true, 'a live jti of a revoked family');
      assert.equal(await list.isRevoked('jti-revoked', 'family-live'), true, 'a revoked jti of a live family');
      assert.equal(await list.isRevoked('jti-live', 'family-live'), false);
      assert.equal(await list.isRevoked(familyKey('family-revoked')), true, 'the family row is keyed apart from any jti');
      // Kept until the last token it revokes has expired, then pruned.
      assert.equal(await list.prune(2_500), 1);
      assert.equal(await list.isRevoked('jti-live', 'family-revoked'), true);
      assert.equal(await list.prune(3_500), 1);
      assert.equal(await list.isRevoked('jti-live', 'family-revoked'), false);
    });
  }

  test('asks a token without a family the one jti statement it always did, and a token of a family one statement too', async () => {
    const seen: string[] = [];
    const storage = openStorage({ sqlitePath: ':memory:', onQuery: (text) => seen.push(text) });
    try {
      await migrate(storage);
      const list = new RevocationList(storage.db);
      seen.length = 0;
      await list.isRevoked('a-client-credentials-jti');
      assert.deepEqual(seen, ['select 1 as one from revoked_tokens where jti = ? limit 1']);
      seen.length = 0;
      await list.isRevoked('a-person-jti', 'its-family');
      assert.deepEqual(seen, ['select 1 as one from revoked_tokens where jti in (?, ?) limit 1']);
    } finally {
      await storage.close();
    }
  });
});
