import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { CustodyError } from '../../../src/pki/custody/custody.ts';
import { Pkcs11Custody, toolEnvironment } from '../../../src/pki/custody/pkcs11.ts';
import { custodyContract } from './contract.ts';
import { softhsmToken } from './softhsm.ts';

// PKCS#11 custody against Debian's softhsm2, driven by Debian's pkcs11-tool: no native addon.

custodyContract('PKCS#11 custody', async (t) => new Pkcs11Custody(softhsmToken(t)));

test('the ref names token and object, never the PIN; a wrong PIN fails without printing it', async (t) => {
  const token = softhsmToken(t);
  const key = await new Pkcs11Custody(token).generate('audit-1', 'Ed25519');
  assert.match(key.ref, /^pkcs11:token=clearance-test;id=(%[0-9a-f]{2}){8};type=private$/);
  assert.ok(!key.ref.includes(token.pin));
  const wrong = new Pkcs11Custody({ ...token, pin: '999999999' });
  const fresh = await new Pkcs11Custody(token).load(key.ref);
  assert.ok(fresh.publicKey.equals(key.publicKey));
  await assert.rejects(wrong.generate('audit-2', 'EC-P256'), (error: CustodyError) => error instanceof CustodyError && !error.message.includes('999999999') && /PIN_INCORRECT|C_Login/.test(error.message));
});

test('the private key never leaves the token: sensitive, never extractable, and pkcs11-tool reads nothing out', async (t) => {
  const token = softhsmToken(t);
  const key = await new Pkcs11Custody(token).generate('ca-1', 'EC-P256');
  const id = key.ref.match(/id=((?:%[0-9a-f]{2})+)/)![1]!.replaceAll('%', '');
  const out = join(token.dir, 'private.der');
  const tool = (args: string[]) => execFileSync('pkcs11-tool', ['--module', token.module, '--token-label', token.tokenLabel, '--login', '--pin', token.pin, ...args], { encoding: 'utf8', stdio: 'pipe', env: process.env });
  tool(['--read-object', '--type', 'privkey', '--id', id, '--output-file', out]);
  assert.equal(existsSync(out), false, 'nothing was written');
  assert.match(tool(['--list-objects', '--type', 'privkey']), /label: +ca-1[\s\S]*Access: +sensitive, always sensitive, never extractable/);
});

test('pkcs11-tool is given a minimal environment: the PIN and what a tool needs, never the server’s master keys or database URL', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'clearance-pkcs11-env-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // A stand-in for pkcs11-tool that writes the environment it was given, then fails.
  const tool = join(dir, 'fake-pkcs11-tool');
  writeFileSync(tool, `#!/bin/sh\nenv > ${join(dir, 'env.txt')}\nexit 1\n`, { mode: 0o755 });
  const secrets = { CLEARANCE_MASTER_KEY: 'a'.repeat(64), CLEARANCE_PREVIOUS_MASTER_KEY: 'b'.repeat(64), DATABASE_URL: 'postgres://u:hunter2@db/clearance' };
  const saved = { ...process.env };
  t.after(() => {
    for (const name of [...Object.keys(secrets), 'VENDOR_HSM_CONF', 'CLEARANCE_PKCS11_ENV', 'SOFTHSM2_CONF']) delete process.env[name];
    Object.assign(process.env, saved);
  });
  Object.assign(process.env, secrets, { SOFTHSM2_CONF: '/etc/softhsm/softhsm2.conf', VENDOR_HSM_CONF: '/opt/hsm.conf', CLEARANCE_PKCS11_ENV: 'VENDOR_HSM_CONF, CLEARANCE_MASTER_KEY' });
  await assert.rejects(new Pkcs11Custody({ module: '/nonexistent.so', tokenLabel: 'clearance-test', pin: '123456', tool }).generate('k', 'EC-P256'), CustodyError);
  const seen = Object.fromEntries(readFileSync(join(dir, 'env.txt'), 'utf8').trim().split('\n').map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]));
  assert.equal(seen.CLEARANCE_PKCS11_TOOL_PIN, '123456');
  assert.equal(seen.SOFTHSM2_CONF, '/etc/softhsm/softhsm2.conf');
  assert.equal(seen.VENDOR_HSM_CONF, '/opt/hsm.conf', 'a name CLEARANCE_PKCS11_ENV lists');
  assert.equal(seen.PATH, process.env.PATH);
  for (const name of Object.keys(secrets)) assert.equal(seen[name], undefined, `${name} is not passed, even when listed`);
  assert.deepEqual(toolEnvironment('1', { PATH: '/bin', CLEARANCE_PKCS11_PIN: 'x', AWS_SECRET_ACCESS_KEY: 'y' }), { PATH: '/bin', CLEARANCE_PKCS11_TOOL_PIN: '1' });
  // The database's and Redis's URLs carry passwords: never passed, even when listed.
  const listed = { PATH: '/bin', DATABASE_URL: 'postgres://u:pw@db/x', DATABASE_URL_FILE: '/run/secrets/db', REDIS_URL: 'redis://:pw@r', VENDOR_HSM_CONF: '/opt/hsm.conf', CLEARANCE_PKCS11_ENV: 'DATABASE_URL,DATABASE_URL_FILE,REDIS_URL,VENDOR_HSM_CONF' };
  assert.deepEqual(toolEnvironment('1', listed), { PATH: '/bin', VENDOR_HSM_CONF: '/opt/hsm.conf', CLEARANCE_PKCS11_TOOL_PIN: '1' });
});
