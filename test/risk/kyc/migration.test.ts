import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Migrator } from 'kysely';
import { migrate } from '../../../src/storage/database.ts';
import { migrations } from '../../../src/storage/migrations/index.ts';
import { testDialects } from '../../helpers/storage.ts';

for (const dialect of testDialects()) {
  describe(`migration 0031_kyc on ${dialect.name}`, () => {
    test("moves each person's attributes.kyc_status into a KYC record, declared as apply declared it, and out of the attributes", async (t) => {
      const database = await dialect.create(t);
      const before = Object.keys(migrations)[Object.keys(migrations).indexOf('0031_kyc') - 1]!;
      const migrated = await new Migrator({ db: database.storage.db, provider: { getMigrations: async () => migrations } }).migrateTo(before);
      assert.equal(migrated.error, undefined);
      const person = (id: string, username: string, attributes: Record<string, unknown>) => ({
        id,
        username,
        password_hash: null,
        name: null,
        email: null,
        desks: '[]',
        roles: '[]',
        attributes: JSON.stringify(attributes),
        status: 'active' as const,
        failed_logins: 0,
        locked_at: null,
        lock_reason: null,
        tokens_valid_after: null,
        last_login_at: null,
        created_at: 1000,
        updated_at: 2000,
      });
      await database.storage.db
        .insertInto('users')
        .values([person('u-1', 'alice', { kyc_status: 'verified', suitability: ['fx'] }), person('u-2', 'bob', { suitability: ['fx'] })])
        .execute();

      await migrate(database.storage);
      const records = await database.storage.db.selectFrom('kyc_records').selectAll().execute();
      assert.deepEqual(
        records.map((r) => ({ ...r, version: Number(r.version), updated_at: Number(r.updated_at) })),
        [
          {
            principal_type: 'User',
            principal_id: 'u-1',
            status: 'verified',
            previous_status: null,
            level: null,
            provider: null,
            review_due: null,
            evidence_ref: null,
            declared: '{"status":"verified"}',
            version: 1,
            updated_at: 2000,
            updated_by: 'migration',
          },
        ],
      );
      const users = await database.storage.db.selectFrom('users').select(['id', 'attributes']).orderBy('id').execute();
      assert.deepEqual(users.map((u) => JSON.parse(u.attributes)), [{ suitability: ['fx'] }, { suitability: ['fx'] }]);
    });
  });
}
