import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { stringify } from 'yaml';
import { cliWorkspace, runCli } from '../../helpers/cli.ts';
import { openssl, opensslCsr, scratch, tradingAgentProfile } from '../fixture.ts';
import { softhsmToken } from './softhsm.ts';

// The CA and the audit log with their keys in a PKCS#11 token (Debian's softhsm2 through
// pkcs11-tool), as an operator configures them: `ca init --pkcs11` keeps the root and the issuing
// key in the token; CLEARANCE_AUDIT_KEY_CUSTODY=pkcs11 makes the audit key there; what they sign
// is checked with openssl and `clearance audit verify`.

test('ca init --pkcs11 keeps the root and issuing keys in the token, and what they sign verifies', async (t) => {
  const token = softhsmToken(t);
  const w = cliWorkspace(t);
  const env = { ...w.env, SOFTHSM2_CONF: process.env.SOFTHSM2_CONF!, CLEARANCE_PKCS11_MODULE: token.module, CLEARANCE_PKCS11_TOKEN: token.tokenLabel, CLEARANCE_PKCS11_PIN: token.pin, CLEARANCE_AUDIT_KEY_CUSTODY: 'pkcs11' };
  const run = (...argv: string[]) => runCli(argv, env);
  const init = await run('ca', 'init', '--name', 'HSM Workloads', '--pkcs11', '--intermediate-custody', 'pkcs11');
  assert.equal(init.code, 0, init.err);
  assert.match(init.out, /key in the PKCS#11 token \(pkcs11:token=clearance-test;id=/);
  assert.match(init.out, /key in pkcs11 custody \(pkcs11:token=clearance-test;id=/);
  assert.ok(!init.out.includes(token.pin));
  const profiles = join(w.dir, 'profiles.yaml');
  writeFileSync(profiles, stringify({ certificate_profiles: [tradingAgentProfile] }));
  assert.equal((await run('apply', '-f', profiles)).code, 0);
  const files = scratch(t);
  const chain = files.at('chain.pem');
  const issued = await run('ca', 'issue', '--profile', 'trading-agent', '--holder', 'algo-7', '--csr', opensslCsr(files, 'algo-7').csr, '-o', chain);
  assert.equal(issued.code, 0, issued.err);
  const root = files.at('root.pem');
  assert.equal((await run('ca', 'root', '-o', root)).code, 0);
  assert.ok(openssl(['verify', '-CAfile', root, '-untrusted', chain, chain]).ok, 'signed in the token, accepted by openssl');
  const serial = /issued ([0-9a-f]+)/.exec(issued.err)![1]!;
  assert.equal((await run('ca', 'revoke', serial, '--reason', 'superseded')).code, 0);
  const crl = files.at('crl.der');
  assert.equal((await run('ca', 'crl', '-o', crl)).code, 0);
  files.write('issuing.pem', readPem(chain, 1));
  assert.match(openssl(['crl', '-inform', 'DER', '-in', crl, '-CAfile', files.at('issuing.pem'), '-noout']).output, /verify OK/);
  assert.match(openssl(['crl', '-inform', 'DER', '-in', crl, '-noout', '-text']).output, new RegExp(serial.toUpperCase()));
  // The audit key was made in the token; the log seals and verifies with it.
  assert.equal((await run('audit', 'seal')).code, 0);
  const verified = await run('audit', 'verify');
  assert.equal(verified.code, 0, verified.err + verified.out);
  const key = await run('audit', 'key');
  assert.equal(key.code, 0, key.err);
  assert.ok(new X509Certificate(readPem(chain)).verify(new X509Certificate(readPem(chain, 1)).publicKey));
});

test('without the token configured, a CA whose key is in it answers that custody is missing, not a crash', async (t) => {
  const token = softhsmToken(t);
  const w = cliWorkspace(t);
  const withToken = { ...w.env, SOFTHSM2_CONF: process.env.SOFTHSM2_CONF!, CLEARANCE_PKCS11_MODULE: token.module, CLEARANCE_PKCS11_TOKEN: token.tokenLabel, CLEARANCE_PKCS11_PIN: token.pin };
  assert.equal((await runCli(['ca', 'init', '--name', 'HSM', '--pkcs11', '--intermediate-custody', 'pkcs11'], withToken)).code, 0);
  const crl = await runCli(['ca', 'crl'], w.env);
  assert.equal(crl.code, 1);
  assert.match(crl.err, /PKCS#11 custody is not configured/);
  const wrongPin = await runCli(['ca', 'crl'], { ...withToken, CLEARANCE_PKCS11_PIN: '111111111' });
  assert.equal(wrongPin.code, 1);
  assert.ok(!wrongPin.err.includes('111111111'));
});

function readPem(file: string, index = 0): string {
  const text = readFileSync(file, 'utf8');
  return text.split(/(?=-----BEGIN CERTIFICATE-----)/)[index]!;
}
