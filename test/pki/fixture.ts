import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { executeApply, planApply } from '../../src/apply/index.ts';
import type { Context } from '../../src/context.ts';
import { initCa, type InitResult } from '../../src/pki/authority.ts';
import { formatProblem } from '../../src/validation.ts';

/** A profile for trading agents: EC-P256 or Ed25519, 8 h, client auth, a SPIFFE-style URI. */
export const tradingAgentProfile = {
  name: 'trading-agent',
  key_types: ['EC-P256', 'Ed25519'],
  max_lifetime: '8h',
  ekus: ['client_auth'],
  policies: ['1.3.6.1.4.1.59999.1.1'],
  subject: 'CN={holder}, O=Example Broker',
  san: { uri: ['spiffe://broker.example/agent/{holder}'] },
  name_constraints: { uri: ['spiffe://broker.example/'] },
  client_auth: true,
};

export const passphrase = 'correct horse battery staple';

/** Creates the CA in `ctx` (root exported, intermediate in software custody). */
export async function initTestCa(ctx: Context): Promise<InitResult> {
  const result = await initCa(ctx.storage.db, ctx.pki.custodies, ctx.clock, {
    name: 'Test Workloads',
    organization: 'Example Broker',
    root: { custody: 'export', passphrase },
    intermediateCustody: 'software',
    keyType: 'EC-P256',
    rootLifetimeDays: 30,
    intermediateLifetimeDays: 10,
  });
  ctx.pki.authorities.invalidate();
  return result;
}

export async function applyDocument(ctx: Context, document: Record<string, unknown>): Promise<void> {
  const { plan, problems } = await planApply(ctx, document);
  if (!plan) throw new Error(problems.map(formatProblem).join('\n'));
  await executeApply(ctx, plan, { actor: 'test', via: 'cli' });
}

/** A scratch directory for openssl's files, removed after the test. */
export function scratch(t: Pick<TestContext, 'after'>): { dir: string; at: (name: string) => string; write: (name: string, text: string | Buffer) => string } {
  const dir = mkdtempSync(join(tmpdir(), 'clearance-pki-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const at = (name: string) => join(dir, name);
  return { dir, at, write: (name, text) => (writeFileSync(at(name), text), at(name)) };
}

/** openssl's output (stdout and stderr together) and whether it succeeded. */
export function openssl(args: string[]): { ok: boolean; output: string } {
  const run = spawnSync('openssl', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return { ok: run.status === 0, output: `${run.stdout ?? ''}${run.stderr ?? ''}` };
}

/**
 * `openssl` as a child process without blocking the event loop: for commands that talk to a
 * Clearance running in this same process (`openssl ocsp -url`), which execFileSync would deadlock.
 */
export function opensslAsync(args: string[]): Promise<{ ok: boolean; output: string }> {
  return new Promise((resolve) => {
    execFile('openssl', args, { encoding: 'utf8', timeout: 20_000 }, (error, stdout, stderr) => resolve({ ok: !error, output: `${stdout}${stderr}` }));
  });
}

/** A new key and a CSR for it made by openssl: `{ key, csr }` file paths and the CSR text. */
export function opensslCsr(files: ReturnType<typeof scratch>, name: string, options: { keyArgs?: string[]; san?: string } = {}): { key: string; csr: string; csrPem: string } {
  const key = files.at(`${name}.key`);
  const csr = files.at(`${name}.csr`);
  const keyArgs = options.keyArgs ?? ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'];
  const made = openssl(['req', '-new', ...keyArgs, '-nodes', '-subj', `/CN=${name}`, ...(options.san ? ['-addext', `subjectAltName=${options.san}`] : []), '-keyout', key, '-out', csr]);
  if (!made.ok) throw new Error(made.output);
  return { key, csr, csrPem: execFileSync('cat', [csr], { encoding: 'utf8' }) };
}
