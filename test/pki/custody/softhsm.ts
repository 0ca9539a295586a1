import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';

export const softhsmModule = '/usr/lib/softhsm/libsofthsm2.so';

/**
 * A fresh softhsm2 token in a temp directory (Debian's softhsm2, a real PKCS#11 module), its
 * configuration in SOFTHSM2_CONF for this process and the pkcs11-tool it spawns. CI installs
 * softhsm2 and opensc (.ci/run): a machine without them fails here, it does not skip.
 */
export function softhsmToken(t: Pick<TestContext, 'after'>, label = 'clearance-test', pin = '246813579'): { module: string; tokenLabel: string; pin: string; dir: string } {
  if (!existsSync(softhsmModule)) throw new Error(`softhsm2 is not installed (${softhsmModule}): apt-get install softhsm2 opensc`);
  const dir = mkdtempSync(join(tmpdir(), 'clearance-softhsm-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'tokens'));
  writeFileSync(join(dir, 'softhsm2.conf'), `directories.tokendir = ${join(dir, 'tokens')}\nobjectstore.backend = file\nlog.level = ERROR\n`);
  process.env.SOFTHSM2_CONF = join(dir, 'softhsm2.conf');
  execFileSync('softhsm2-util', ['--init-token', '--free', '--label', label, '--so-pin', '1357924680', '--pin', pin], { stdio: 'ignore', env: process.env });
  return { module: softhsmModule, tokenLabel: label, pin, dir };
}
