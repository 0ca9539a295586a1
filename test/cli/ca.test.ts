import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { stringify } from 'yaml';
import { cliWorkspace } from '../helpers/cli.ts';
import { openssl, opensslCsr, scratch, tradingAgentProfile } from '../pki/fixture.ts';

// `clearance ca` as an operator runs it: init with the root key written encrypted, a profile
// applied, a certificate issued from a CSR file, listed, revoked, and the CRL and root printed —
// checked with openssl.

test('an operator creates the CA, issues from a CSR, revokes, and openssl sees it all', async (t) => {
  const { dir, run } = cliWorkspace(t);
  const files = scratch(t);
  const passphraseFile = join(dir, 'passphrase');
  writeFileSync(passphraseFile, 'correct horse battery staple\n');
  const rootKey = join(dir, 'root.key');
  const init = await run('ca', 'init', '--name', 'Example Broker Workloads', '--root-key-out', rootKey, '--passphrase-file', passphraseFile);
  assert.equal(init.code, 0, init.err);
  assert.match(init.out, /root {7}CN=Example Broker Workloads Root/);
  assert.ok(openssl(['pkey', '-in', rootKey, '-passin', `file:${passphraseFile}`, '-noout']).ok, 'the root key opens with the passphrase');
  assert.equal(openssl(['pkey', '-in', rootKey, '-passin', 'pass:wrong passphrase', '-noout']).ok, false);
  assert.equal((await run('ca', 'init', '--name', 'Again', '--root-key-out', join(dir, 'again.key'), '--passphrase-file', passphraseFile)).code, 1, 'a second init is refused');
  assert.equal(existsSync(join(dir, 'again.key')), false, 'and leaves no key file behind');

  const profiles = join(dir, 'profiles.yaml');
  writeFileSync(profiles, stringify({ certificate_profiles: [tradingAgentProfile] }));
  assert.equal((await run('apply', '-f', profiles)).code, 0);
  const { csr } = opensslCsr(files, 'algo-7');
  const chain = files.at('chain.pem');
  const issued = await run('ca', 'issue', '--profile', 'trading-agent', '--holder', 'algo-7', '--csr', csr, '--lifetime', '2h', '-o', chain);
  assert.equal(issued.code, 0, issued.err);
  const serial = /issued ([0-9a-f]+)/.exec(issued.err)?.[1];
  assert.ok(serial);
  const root = files.at('root.pem');
  assert.equal((await run('ca', 'root', '-o', root)).code, 0);
  const verified = openssl(['verify', '-CAfile', root, '-untrusted', chain, chain]);
  assert.ok(verified.ok, verified.output);

  const listed = await run('ca', 'list', '--json');
  assert.deepEqual((JSON.parse(listed.out) as { serial: string; status: string }[]).map((c) => [c.serial, c.status]), [[serial, 'valid']]);
  assert.equal((await run('ca', 'revoke', serial!, '--reason', 'cessationOfOperation')).code, 0);
  assert.equal((await run('ca', 'revoke', serial!, '--reason', 'cessationOfOperation')).code, 1);
  const crl = files.at('crl.der');
  assert.equal((await run('ca', 'crl', '-o', crl)).code, 0);
  assert.match(openssl(['crl', '-inform', 'DER', '-in', crl, '-noout', '-text']).output, new RegExp(serial!.toUpperCase()));
  assert.match((await run('ca', 'list')).out, /revoked/);
});

test('ca init refuses to write the root key without a passphrase, and a short one', async (t) => {
  const { dir, run } = cliWorkspace(t);
  const none = await run('ca', 'init', '--name', 'X', '--root-key-out', join(dir, 'root.key'));
  assert.equal(none.code, 2);
  assert.match(none.err, /never written unencrypted/);
  writeFileSync(join(dir, 'short'), 'short\n');
  assert.equal((await run('ca', 'init', '--name', 'X', '--root-key-out', join(dir, 'root.key'), '--passphrase-file', join(dir, 'short'))).code, 2);
  assert.equal((await run('ca', 'init', '--name', 'X')).code, 2, 'either --root-key-out or --pkcs11');
  const issue = await run('ca', 'issue', '--profile', 'p', '--holder', 'h', '--csr', join(dir, 'missing.csr'));
  assert.equal(issue.code, 2);
  assert.match(issue.err, /cannot read/);
});

test('ca init refuses a root key file that exists, or a folder that does not, before it stores anything: the key is never lost', async (t) => {
  const { dir, run } = cliWorkspace(t);
  const passphraseFile = join(dir, 'passphrase');
  writeFileSync(passphraseFile, 'correct horse battery staple\n');
  const existing = join(dir, 'root.key');
  writeFileSync(existing, 'an older key\n');
  const refused = await run('ca', 'init', '--name', 'Example Broker Workloads', '--root-key-out', existing, '--passphrase-file', passphraseFile);
  assert.equal(refused.code, 2, refused.err);
  assert.match(refused.err, /cannot write the root key to .*root\.key: .*EEXIST.*it must be a new file/);
  assert.doesNotMatch(refused.err, /\n\s+at /, 'no stack trace');
  assert.equal(readFileSync(existing, 'utf8'), 'an older key\n', 'the file is untouched');
  const nowhere = await run('ca', 'init', '--name', 'Example Broker Workloads', '--root-key-out', join(dir, 'missing', 'root.key'), '--passphrase-file', passphraseFile);
  assert.equal(nowhere.code, 2);
  assert.match(nowhere.err, /ENOENT/);
  // Nothing was stored: an init with a new file still works, and writes the key.
  const fresh = join(dir, 'fresh.key');
  const init = await run('ca', 'init', '--name', 'Example Broker Workloads', '--root-key-out', fresh, '--passphrase-file', passphraseFile);
  assert.equal(init.code, 0, init.err);
  assert.match(readFileSync(fresh, 'utf8'), /^-----BEGIN ENCRYPTED PRIVATE KEY-----/);
});

test('ca issue, root and crl with -o into a folder that does not exist: one line, exit 1, and no certificate issued', async (t) => {
  const { dir, run } = cliWorkspace(t);
  const files = scratch(t);
  const passphraseFile = join(dir, 'passphrase');
  writeFileSync(passphraseFile, 'correct horse battery staple\n');
  assert.equal((await run('ca', 'init', '--name', 'Example Broker Workloads', '--root-key-out', join(dir, 'root.key'), '--passphrase-file', passphraseFile)).code, 0);
  const profiles = join(dir, 'profiles.yaml');
  writeFileSync(profiles, stringify({ certificate_profiles: [tradingAgentProfile] }));
  assert.equal((await run('apply', '-f', profiles)).code, 0);
  const nowhere = join(dir, 'missing', 'out.pem');
  const { csr } = opensslCsr(files, 'algo-7');
  const issued = await run('ca', 'issue', '--profile', 'trading-agent', '--holder', 'algo-7', '--csr', csr, '-o', nowhere);
  assert.equal(issued.code, 1);
  assert.match(issued.err, /^cannot write .*out\.pem: ENOENT/);
  assert.deepEqual(JSON.parse((await run('ca', 'list', '--json')).out), [], 'nothing issued that nobody holds');
  for (const command of ['root', 'crl']) {
    const answer = await run('ca', command, '-o', nowhere);
    assert.equal(answer.code, 1, command);
    assert.match(answer.err, /^ENOENT: no such file or directory, open '.*out\.pem'$/, command);
  }
});
