import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { migrate } from '../../../src/storage/database.ts';
import { isUniqueViolation } from '../../../src/storage/faults.ts';
import { migrateToBefore, testDialects } from '../../helpers/storage.ts';

// Migration 0068: an agent's model version is pending or approved once at most (docs/agents.md "Model versions").

const model = (id: string, version: string, status: string, createdAt: number, approvedAt: number | null = null) => ({
  id,
  agent_id: 'algo-7',
  version,
  model_digest: `sha256:${'a'.repeat(64)}`,
  image_digest: `sha256:${'b'.repeat(64)}`,
  status,
  validated_by: 'val',
  validation_ref: null,
  approval_request: `request-${id}`,
  approved_by: approvedAt === null ? null : 'mrisk',
  approved_at: approvedAt,
  retire_previous: 0,
  retired_at: null,
  created_at: createdAt,
});

const certificate = (serial: string) => ({
  serial,
  authority_id: 'issuing-1',
  profile: 'trading-agent',
  profile_version: 1,
  holder: 'algo-7',
  subject: 'CN=algo-7',
  sans: '[]',
  thumbprint: `thumb-${serial}`,
  spki_sha256: `spki-${serial}`,
  certificate: 'MII…',
  not_before: 0,
  not_after: 9_999_999_999_999,
  status: 'valid',
  revoked_at: null,
  revocation_reason: null,
  revoked_by: null,
  requested_by: 'pipeline:ci-main',
  renewed_from: null,
  approval_request: null,
  created_at: 0,
});

for (const dialect of testDialects()) {
  describe(`migration 0068_agent_model_versions on ${dialect.name}`, () => {
    test('keeps the first approved of two live bindings of one version, retires the other with its certificates revoked, denies a pending twin, then refuses a second live one', async (t) => {
      const database = await dialect.create(t);
      const db = database.storage.db;
      await migrateToBefore(database.storage, '0068_agent_model_versions');
      // What a race before 0068 could leave: 1.0.0 approved twice (and proposed a third time), 2.0.0 pending twice.
      await db.insertInto('agent_models').values([model('m-1', '1.0.0', 'approved', 10, 100), model('m-2', '1.0.0', 'approved', 11, 200), model('m-3', '1.0.0', 'pending', 12), model('m-4', '2.0.0', 'pending', 20), model('m-5', '2.0.0', 'pending', 21), model('m-6', '0.9.0', 'retired', 5, 50)]).execute();
      await db.insertInto('pki_certificates').values([certificate('01'), certificate('02')]).execute();
      await db.insertInto('agent_credentials').values([{ serial: '01', agent_id: 'algo-7', model_id: 'm-1', pipeline_id: 'ci-main', attestation_jti: 'j-1', created_at: 0 }, { serial: '02', agent_id: 'algo-7', model_id: 'm-2', pipeline_id: 'ci-main', attestation_jti: 'j-2', created_at: 0 }]).execute();

      await migrate(database.storage);
      const statuses = await db.selectFrom('agent_models').select(['id', 'status']).orderBy('id').execute();
      assert.deepEqual(Object.fromEntries(statuses.map((r) => [r.id, r.status])), { 'm-1': 'approved', 'm-2': 'retired', 'm-3': 'denied', 'm-4': 'pending', 'm-5': 'denied', 'm-6': 'retired' });
      const certificates = await db.selectFrom('pki_certificates').select(['serial', 'status', 'revocation_reason']).orderBy('serial').execute();
      assert.deepEqual(certificates.map((c) => [c.serial, c.status, c.revocation_reason === null ? null : Number(c.revocation_reason)]), [['01', 'valid', null], ['02', 'revoked', 9]]);

      // From now on the database keeps one: a second pending 2.0.0 is refused, a re-proposal of the retired 0.9.0 is not.
      const error = await db.insertInto('agent_models').values(model('m-7', '2.0.0', 'pending', 30)).execute().then(() => undefined, (e: unknown) => e);
      assert.ok(isUniqueViolation(error), `a second pending 2.0.0 was stored (${String(error)})`);
      await db.insertInto('agent_models').values(model('m-8', '0.9.0', 'pending', 31)).execute();
    });
  });
}
