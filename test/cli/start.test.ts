import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { main } from '../../src/cli/main.ts';
import { maxWorkers, workerCount } from '../../src/cli/commands/start.ts';
import { UsageError } from '../../src/cli/numbers.ts';

async function run(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'clearance-cli-start-'));
  try {
    const out: string[] = [];
    const err: string[] = [];
    const env = { CLEARANCE_DATA_DIR: dir, PORT: '0', CLEARANCE_ISSUER: 'http://localhost' };
    const code = await main(args, env, { out: (l) => out.push(l), err: (l) => err.push(l) });
    return { code, out: out.join('\n'), err: err.join('\n') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('start runs one process in development mode and one worker per core in production mode by default', () => {
  assert.equal(workerCount(undefined, 'development'), 1);
  assert.equal(workerCount(undefined, 'production'), availableParallelism());
  assert.equal(workerCount('4', 'development'), 4);
  assert.equal(workerCount('1', 'production'), 1);
});

test('start refuses a worker count that is not an integer from 1 to the maximum', async () => {
  for (const raw of ['0', String(maxWorkers + 1), 'two', '1.5', '-1', ' 2', '0x2', '1e3', '']) {
    assert.throws(() => workerCount(raw, 'development'), UsageError, raw);
  }
  const refused = await run('start', '--workers', '0');
  assert.equal(refused.code, 2);
  assert.equal(refused.err, '--workers must be a whole number, 1 to 256, not "0"');
});

test('start --help documents --workers and its defaults', async () => {
  const help = await run('start', '--help');
  assert.equal(help.code, 0);
  assert.match(help.out, /^Usage: clearance start \[--workers N\]/);
  assert.match(help.out, /--workers N/);
  assert.match(help.out, /1 in development mode/);
  assert.match(help.out, /os\.availableParallelism\(\)/);
  const main = await run('--help');
  assert.match(main.out, /^ {2}start \[--workers N\]/m);
});
