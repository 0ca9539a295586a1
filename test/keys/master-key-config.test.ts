import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { resolveMasterKey } from '../../src/keys/master-key.ts';

const key = () => randomBytes(32).toString('hex');

test('reads the previous master key of a rotation from the environment or a file, as the master key', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'clearance-master-key-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const previous = key();
  writeFileSync(join(dir, 'previous'), `${previous}\n`);
  assert.equal(loadConfig({ CLEARANCE_MASTER_KEY: key(), CLEARANCE_PREVIOUS_MASTER_KEY: previous }).previousMasterKey!.toString('hex'), previous);
  assert.equal(loadConfig({ CLEARANCE_MASTER_KEY: key(), CLEARANCE_PREVIOUS_MASTER_KEY_FILE: join(dir, 'previous') }).previousMasterKey!.toString('hex'), previous);
  assert.equal(loadConfig({ CLEARANCE_MASTER_KEY: key() }).previousMasterKey, undefined);
});

test('refuses a previous key that is not 32 bytes, given twice, or the master key itself, without echoing it', () => {
  const current = key();
  assert.throws(() => loadConfig({ CLEARANCE_MASTER_KEY: current, CLEARANCE_PREVIOUS_MASTER_KEY: 'abcd' }), (e: Error) => e instanceof ConfigError && /CLEARANCE_PREVIOUS_MASTER_KEY must be 32 bytes/.test(e.message));
  assert.throws(() => loadConfig({ CLEARANCE_MASTER_KEY: current, CLEARANCE_PREVIOUS_MASTER_KEY: key(), CLEARANCE_PREVIOUS_MASTER_KEY_FILE: '/x' }), /not both/);
  const same = Buffer.from(current, 'hex').toString('base64');
  assert.throws(() => loadConfig({ CLEARANCE_MASTER_KEY: current, CLEARANCE_PREVIOUS_MASTER_KEY: same }), (e: Error) => /is the master key itself/.test(e.message) && !e.message.includes(current) && !e.message.includes(same));
  assert.throws(() => loadConfig({ CLEARANCE_MASTER_KEY: current, CLEARANCE_PREVIOUS_MASTER_KEY: key(), CLEARANCE_PREVIOUS_MASTER_KEY_PKCS11_LABEL: 'old', CLEARANCE_PKCS11_MODULE: '/x.so', CLEARANCE_PKCS11_TOKEN: 't', CLEARANCE_PKCS11_PIN: '1' }), /not both/);
  assert.throws(() => loadConfig({ CLEARANCE_MASTER_KEY_PKCS11_LABEL: 'bad label', CLEARANCE_PKCS11_MODULE: '/x.so', CLEARANCE_PKCS11_TOKEN: 't', CLEARANCE_PKCS11_PIN: '1' }), /letters, digits/);
});

test('production needs a master key from the environment, a file or the token', () => {
  const production = { CLEARANCE_MODE: 'production', CLEARANCE_ISSUER: 'https://as.example' };
  assert.throws(() => resolveMasterKey(loadConfig(production)), /CLEARANCE_MASTER_KEY \(or CLEARANCE_MASTER_KEY_FILE, or CLEARANCE_MASTER_KEY_PKCS11_LABEL\) is required/);
  const token = loadConfig({ ...production, CLEARANCE_MASTER_KEY_PKCS11_LABEL: 'master', CLEARANCE_PKCS11_MODULE: '/x.so', CLEARANCE_PKCS11_TOKEN: 't', CLEARANCE_PKCS11_PIN: '1' });
  // The token's key is unwrapped when the database is opened, not before.
  assert.throws(() => resolveMasterKey(token), /unwrapped when the database is opened/);
});

test('the development key is one Buffer per data directory, so its keyring is found again', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'clearance-master-key-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const config = loadConfig({ CLEARANCE_DATA_DIR: dir });
  assert.equal(resolveMasterKey(config).key, resolveMasterKey({ ...config }).key);
});
