import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { startAuditService } from '../../src/audit/lifecycle.ts';
import { sealIntervalDefaults } from '../../src/audit/sealer.ts';
import { testContext, testDialects } from '../helpers/storage.ts';

for (const dialect of testDialects()) {
  describe(`the audit service on ${dialect.name}`, () => {
    test(`seals every ${sealIntervalDefaults[dialect.name]} ms by default, and every CLEARANCE_AUDIT_SEAL_INTERVAL_MS when it is set`, async (t) => {
      const masterKey = randomBytes(32);
      const env = { CLEARANCE_MASTER_KEY: masterKey.toString('hex') };
      const byDefault = await testContext({ t, dialect, env });
      const service = await startAuditService(byDefault.ctx, masterKey);
      await service.stop();
      assert.equal(service.sealer.intervalMs, sealIntervalDefaults[dialect.name]);

      const configured = await testContext({ t, dialect, env: { ...env, CLEARANCE_AUDIT_SEAL_INTERVAL_MS: '250' } });
      const tuned = await startAuditService(configured.ctx, masterKey);
      await tuned.stop();
      assert.equal(tuned.sealer.intervalMs, 250);
    });
  });
}
