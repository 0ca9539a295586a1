import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import pg from 'pg';
import { main } from '../../src/cli/main.ts';
import { loadConfig } from '../../src/config.ts';
import { createLogger } from '../../src/log.ts';
import { startServer } from '../../src/server.ts';
import { testDatabaseUrl } from '../helpers/storage.ts';

const fixture = new URL('./fixtures/record-until-killed.ts', import.meta.url).pathname;

/** Runs the recording child until it has acknowledged `acks` events, then SIGKILLs it. */
async function recordThenKill(env: NodeJS.ProcessEnv, acks: number): Promise<Set<number>> {
  const child = spawn(process.execPath, [fixture], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const acknowledged = new Set<number>();
  let stderr = '';
  child.stderr.on('data', (chunk) => (stderr += chunk));
  let buffered = '';
  await new Promise<void>((resolve, reject) => {
    child.on('exit', (code, signal) => (signal === 'SIGKILL' ? resolve() : reject(new Error(`child exited ${code}: ${stderr}`))));
    child.stdout.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop()!;
      for (const line of lines) if (line.startsWith('ack ')) acknowledged.add(Number(line.slice(4)));
      // Kill mid-stream: events are in flight, a sealing round may be running.
      if (acknowledged.size >= acks && !child.killed) child.kill('SIGKILL');
    });
  });
  return acknowledged;
}

async function restartAndVerify(env: NodeJS.ProcessEnv, acknowledged: Set<number>): Promise<void> {
  // Restart the server: it seals what the killed one left unsealed.
  const server = await startServer(loadConfig(env), { log: createLogger('silent') });
  const rows = await server.ctx.storage.db.selectFrom('audit_events').select('event').where('client', '=', 'crash-test').execute();
  const stored = new Set(rows.map((r) => (JSON.parse(r.event) as { details: { n: number } }).details.n));
  const lost = [...acknowledged].filter((n) => !stored.has(n));
  assert.deepEqual(lost, [], 'every acknowledged event survived the SIGKILL');
  await server.close();
  const lines: string[] = [];
  const code = await main(['audit', 'verify'], env, { out: (l) => lines.push(l), err: (l) => lines.push(l) });
  assert.equal(code, 0, lines.join('\n'));
  assert.match(lines[0]!, /intact/);
  assert.doesNotMatch(lines[0]!, /not sealed/);
}

test('loses no acknowledged event when the server is SIGKILLed while recording, and verifies after restart (SQLite)', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'clearance-crash-'));
  t.after(() => rmSync(dataDir, { recursive: true, force: true }));
  const env = { CLEARANCE_DATA_DIR: dataDir, PORT: '0', CLEARANCE_ISSUER: 'http://localhost:9999', LOG_LEVEL: 'silent' };
  const acknowledged = await recordThenKill(env, 8000);
  assert.ok(acknowledged.size >= 8000);
  await restartAndVerify(env, acknowledged);
});

test('loses no acknowledged event when the server is SIGKILLed while recording, and verifies after restart (PostgreSQL)', { skip: !testDatabaseUrl && 'TEST_DATABASE_URL is not set' }, async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'clearance-crash-'));
  const schema = `test_${randomBytes(8).toString('hex')}`;
  const admin = new pg.Client({ connectionString: testDatabaseUrl });
  await admin.connect();
  await admin.query(`create schema ${schema}`);
  t.after(async () => {
    await admin.query(`drop schema ${schema} cascade`);
    await admin.end();
    rmSync(dataDir, { recursive: true, force: true });
  });
  const url = new URL(testDatabaseUrl!);
  url.searchParams.set('options', `-c search_path=${schema}`);
  const env = { CLEARANCE_DATA_DIR: dataDir, PORT: '0', CLEARANCE_ISSUER: 'http://localhost:9999', LOG_LEVEL: 'silent', DATABASE_URL: url.toString() };
  const acknowledged = await recordThenKill(env, 8000);
  await restartAndVerify(env, acknowledged);
});
