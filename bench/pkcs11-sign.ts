/**
 * `npx node bench/pkcs11-sign.ts`: what one signature through PKCS#11 custody costs (Debian's
 * softhsm2 driven by pkcs11-tool, src/pki/custody/pkcs11.ts) beside the same signature in
 * software custody — the number docs/pki.md "Key custody" quotes.
 */
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pkcs11Custody } from '../src/pki/custody/pkcs11.ts';
import { softwareKey } from '../src/pki/custody/software.ts';
import type { CustodyKey, CustodyKeyType } from '../src/pki/custody/custody.ts';

const dir = mkdtempSync(join(tmpdir(), 'clearance-bench-hsm-'));
try {
  mkdirSync(join(dir, 'tokens'));
  writeFileSync(join(dir, 'softhsm2.conf'), `directories.tokendir = ${join(dir, 'tokens')}\nobjectstore.backend = file\nlog.level = ERROR\n`);
  process.env.SOFTHSM2_CONF = join(dir, 'softhsm2.conf');
  execFileSync('softhsm2-util', ['--init-token', '--free', '--label', 'bench', '--so-pin', '12345678', '--pin', '87654321'], { stdio: 'ignore' });
  const custody = new Pkcs11Custody({ module: '/usr/lib/softhsm/libsofthsm2.so', tokenLabel: 'bench', pin: '87654321' });
  const runs = Number(process.env.BENCH_RUNS ?? 30);
  for (const type of ['EC-P256', 'Ed25519'] as CustodyKeyType[]) {
    const token = await custody.generate(`bench-${type}`, type);
    const software = softwareKey('bench', type, type === 'EC-P256' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey : generateKeyPairSync('ed25519').privateKey);
    const median = async (key: CustodyKey) => {
      const times: number[] = [];
      for (let i = 0; i < runs; i++) {
        const start = process.hrtime.bigint();
        await key.sign(Buffer.from(`tbs certificate ${i}`));
        times.push(Number(process.hrtime.bigint() - start) / 1e6);
      }
      times.sort((a, b) => a - b);
      return times[Math.floor(times.length / 2)]!;
    };
    console.log(JSON.stringify({ scenario: `custody-sign-${type}`, runs, pkcs11_median_ms: Number((await median(token)).toFixed(2)), software_median_ms: Number((await median(software)).toFixed(3)) }));
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
