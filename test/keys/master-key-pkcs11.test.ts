import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { loadConfig } from '../../src/config.ts';
import { masterKeyId } from '../../src/keys/keyring.ts';
import { MasterKeyError, resolveMasterKey } from '../../src/keys/master-key.ts';
import { rewrap } from '../../src/keys/rewrap.ts';
import { createLogger } from '../../src/log.ts';
import { Pkcs11Custody } from '../../src/pki/custody/pkcs11.ts';
import { openContext } from '../../src/server.ts';
import { softhsmToken } from '../pki/custody/softhsm.ts';
import { testContext, testDialects } from '../helpers/storage.ts';
import { oldKey, openEverything, rewrapFixture, sealedValues, sealEverything } from './rewrap-fixture.ts';

// The master key from a PKCS#11 token (src/keys/master-key-pkcs11.ts) against Debian's softhsm2,
// driven by Debian's pkcs11-tool, as the PKI's key custody is (test/pki/custody/softhsm.ts).

async function tokenWithMasterKey(t: Parameters<typeof softhsmToken>[0], label = 'clearance-master') {
  const token = softhsmToken(t);
  await new Pkcs11Custody(token).generateSecretKey(label);
  const env = { CLEARANCE_PKCS11_MODULE: token.module, CLEARANCE_PKCS11_TOKEN: token.tokenLabel, CLEARANCE_PKCS11_PIN: token.pin };
  return { token, env, withLabel: { ...env, CLEARANCE_MASTER_KEY_PKCS11_LABEL: label } };
}

for (const dialect of testDialects()) {
  describe(`a master key held by a PKCS#11 token on ${dialect.name}`, () => {
    test('is a data key the token wraps: the database holds only its wrapping, and every node unwraps the same key', async (t) => {
      const { withLabel, env, token } = await tokenWithMasterKey(t);
      const { ctx, database, dataDir, clock } = await testContext({ t, dialect, env: withLabel });
      const master = resolveMasterKey(ctx.config);
      assert.equal(master.source, 'pkcs11');
      const [row, ...others] = await ctx.storage.db.selectFrom('master_key_wraps').selectAll().execute();
      assert.equal(others.length, 0);
      assert.equal(row!.label, 'clearance-master');
      assert.equal(row!.key_id, masterKeyId(master.key));
      for (const encoding of ['hex', 'base64', 'base64url'] as const) assert.ok(!row!.wrapped.includes(master.key.toString(encoding)), `no ${encoding} key in the row`);

      // A second node (its own process, its own handle) unwraps the same key and opens the signing keys.
      const second = await openContext(loadConfig({ CLEARANCE_DATA_DIR: dataDir, ...withLabel }), { clock, log: createLogger('silent'), storage: database.connect() });
      t.after(() => second.risk.activity.close());
      assert.equal(masterKeyId(resolveMasterKey(second.config).key), row!.key_id);
      assert.deepEqual((await second.keys.list()).map((k) => k.kid), (await ctx.keys.list()).map((k) => k.kid));

      // No such key in the token; a wrapping altered in the database: refused, naming the label, never a key.
      const open = (extra: NodeJS.ProcessEnv) => openContext(loadConfig({ CLEARANCE_DATA_DIR: dataDir, ...env, ...extra }), { clock, log: createLogger('silent'), storage: database.connect() });
      await assert.rejects(open({ CLEARANCE_MASTER_KEY_PKCS11_LABEL: 'no-such-key' }), (error: Error) => error instanceof MasterKeyError && /holds no secret key labelled "no-such-key"/.test(error.message) && !error.message.includes(token.pin));
      const altered = Buffer.from(row!.wrapped, 'base64');
      altered[20]! ^= 1;
      await ctx.storage.db.updateTable('master_key_wraps').set({ wrapped: altered.toString('base64') }).execute();
      await assert.rejects(open({ CLEARANCE_MASTER_KEY_PKCS11_LABEL: 'clearance-master' }), (error: Error) => error instanceof MasterKeyError && /does not unwrap this database's master key/.test(error.message));
    });

    test('takes over from an environment key with clearance keys rewrap; the environment key alone is then refused', async (t) => {
      const f = await rewrapFixture(t, dialect);
      const sealed = await sealEverything(f);
      const { withLabel } = await tokenWithMasterKey(t);
      const both = await f.node({ ...withLabel, CLEARANCE_PREVIOUS_MASTER_KEY: oldKey });
      const report = await rewrap(both, f.masterOf(both), { actor: 'cli:test', settleMs: 0 });
      const tokenKeyId = masterKeyId(f.masterOf(both));
      assert.equal(report.toKeyId, tokenKeyId);
      assert.ok((await sealedValues(both)).every((v) => v.keyId === tokenKeyId));
      await openEverything(f, await f.node(withLabel), sealed);
      await assert.rejects(f.node({ CLEARANCE_MASTER_KEY: oldKey }), (error: Error) => error instanceof MasterKeyError && /was replaced by/.test(error.message));
    });
  });
}

test('the token key must be named with the token it is in', () => {
  assert.throws(() => loadConfig({ CLEARANCE_MASTER_KEY_PKCS11_LABEL: 'clearance-master' }), /CLEARANCE_MASTER_KEY_PKCS11_LABEL needs the token/);
  assert.throws(
    () => loadConfig({ CLEARANCE_MASTER_KEY_PKCS11_LABEL: 'clearance-master', CLEARANCE_MASTER_KEY: oldKey, CLEARANCE_PKCS11_MODULE: '/x.so', CLEARANCE_PKCS11_TOKEN: 't', CLEARANCE_PKCS11_PIN: '1' }),
    /set CLEARANCE_MASTER_KEY or CLEARANCE_MASTER_KEY_PKCS11_LABEL, not both/,
  );
});
