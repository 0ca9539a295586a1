/**
 * The `clearance` command in-process, for CLI tests: its exit code and what it printed.
 *
 *   const { env, run } = cliWorkspace(t);                  // a temp data dir, removed after the test
 *   const listed = await run('keys', 'list');              // { code, out, err }
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { main } from '../../src/cli/main.ts';

export interface Run {
  code: number;
  out: string;
  err: string;
}

/** Runs one CLI invocation with `env` as its whole environment. */
export async function runCli(argv: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(argv, env, { out: (line) => out.push(line), err: (line) => err.push(line) });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

/** A temp data directory and an environment for it; a fixed master key keeps the CLI quiet. */
export function cliWorkspace(t: Pick<TestContext, 'after'>, prefix = 'clearance-cli-'): { dir: string; env: NodeJS.ProcessEnv; run: (...argv: string[]) => Promise<Run> } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const env: NodeJS.ProcessEnv = { CLEARANCE_DATA_DIR: join(dir, 'data'), CLEARANCE_MASTER_KEY: randomBytes(32).toString('hex') };
  return { dir, env, run: (...argv) => runCli(argv, env) };
}
