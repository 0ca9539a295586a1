import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Kysely } from 'kysely';
import { migrate } from '../../../src/storage/database.ts';
import { migrateToBefore, testDialects } from '../../helpers/storage.ts';

for (const dialect of testDialects()) {
  describe(`migration 0031_kyc on ${dialect.name}`, () => {
    test("moves each person's attributes.kyc_status into a KYC record, declared as apply declared it, and out of the attributes", async (t) => {
      const database = await dialect.create(t);
      await migrateToBefore(database.storage, '0031_kyc');
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
            frozen_by: null,
          },
        ],
      );
      const users = await database.storage.db.selectFrom('users').select(['id', 'attributes']).orderBy('id').execute();
      assert.deepEqual(users.map((u) => JSON.parse(u.attributes)), [{ suitability: ['fx'] }, { suitability: ['fx'] }]);
    });
  });
}

for (const dialect of testDialects()) {
  describe(`migration 0064_kyc_freeze_holder on ${dialect.name}`, () => {
    test('names who froze each frozen record besides screening: whoever changed it last, unless screening or compliance', async (t) => {
      const database = await dialect.create(t);
      await migrateToBefore(database.storage, '0064_kyc_freeze_holder');
      const record = (id: string, status: string, updated_by: string) => ({
        principal_type: 'User',
        principal_id: id,
        status,
        previous_status: status === 'frozen' ? 'verified' : null,
        level: null,
        provider: null,
        review_due: null,
        evidence_ref: null,
        declared: null,
        version: 2,
        updated_at: 2000,
        updated_by,
      });
      await (database.storage.db as unknown as Kysely<Record<string, Record<string, unknown>>>)
        .insertInto('kyc_records')
        .values([
          record('u-1', 'frozen', 'screening'),
          record('u-2', 'frozen', 'compliance:u-9'),
          record('u-3', 'frozen', 'admin:admin-ops'),
          record('u-4', 'frozen', 'provider:idv-example'),
          record('u-5', 'verified', 'admin:admin-ops'),
        ])
        .execute();

      await migrate(database.storage);
      const rows = await database.storage.db.selectFrom('kyc_records').select(['principal_id', 'frozen_by']).orderBy('principal_id').execute();
      assert.deepEqual(rows.map((r) => ({ ...r })), [
        { principal_id: 'u-1', frozen_by: null },
        { principal_id: 'u-2', frozen_by: null },
        { principal_id: 'u-3', frozen_by: 'admin:admin-ops' },
        { principal_id: 'u-4', frozen_by: 'provider:idv-example' },
        { principal_id: 'u-5', frozen_by: null },
      ]);
    });
  });
}
