import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { CustodyError } from '../../../src/pki/custody/custody.ts';
import { Pkcs11Custody } from '../../../src/pki/custody/pkcs11.ts';
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
