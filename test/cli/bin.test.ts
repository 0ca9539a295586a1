import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { accessSync, constants, readFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { describe, test } from 'node:test';
import { promisify } from 'node:util';

/**
 * Which Node runs Clearance (issue 12 item 11). npm compares package.json `engines` with the Node
 * npm itself runs on, so `engines: { node: ">=24" }` made `npm install` and the first `npx
 * clearance` warn EBADENGINE on a machine whose own Node is older, although every npm script and
 * npx run on the pinned Node 24. The requirement is declared where npm does not check it against
 * its own Node (devEngines, onFail ignore) and enforced where Clearance starts (bin/clearance.js);
 * no dependency may ask for a newer Node either (overrides pin the one that did).
 *
 * Running npm itself on an older Node here (a fresh install) would take a minute and the network,
 * so what npm reads is checked as data instead.
 */

const repository = new URL('../../', import.meta.url).pathname;
const run = promisify(execFile);

function packageJson(file = 'package.json'): Record<string, any> {
  return JSON.parse(readFileSync(join(repository, file), 'utf8')) as Record<string, any>;
}

/** The command, run by `node` with `--import` first; never throws, resolves its exit code and output. */
async function clearance(node: string, args: string[], preload: string[] = []): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(node, [...preload, 'bin/clearance.js', ...args], { cwd: repository, env: { PATH: process.env.PATH }, timeout: 30_000 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/** A `node` on PATH outside any node_modules/.bin (the machine's own), if it is older than 24. */
async function olderSystemNode(): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir || dir.includes('node_modules')) continue;
    const candidate = join(dir, 'node');
    try {
      accessSync(candidate, constants.X_OK);
    } catch {
      continue;
    }
    const { stdout } = await run(candidate, ['--version']);
    return Number(stdout.trim().slice(1).split('.')[0]) < 24 ? candidate : undefined;
  }
  return undefined;
}

describe('the Node that runs Clearance', () => {
  test('is declared where npm does not compare it with the Node npm runs on, and pinned by the node devDependency', () => {
    const pkg = packageJson();
    // npm warns EBADENGINE when its own Node is outside engines.node (at install, and when npx
    // installs this package into its cache): the root package must not declare one.
    assert.equal(pkg.engines?.node, undefined, 'no engines.node');
    assert.equal(packageJson('package-lock.json').packages['']?.engines?.node, undefined, 'nor in the lockfile');
    assert.deepEqual(pkg.devEngines?.runtime, { name: 'node', version: '>=24', onFail: 'ignore' });
    // The Node that npm scripts and npx use, and the one running this test.
    assert.match(pkg.devDependencies.node, /^\^24\./);
    assert.ok(Number(process.versions.node.split('.')[0]) >= 24, process.version);
  });

  test('no installed package asks for a Node major above 20, so npm on a system Node 20 installs without EBADENGINE', () => {
    // light-my-request's cookie@2 declared Node 22: package.json overrides it to cookie@1.1.1.
    const offending: string[] = [];
    for (const [path, entry] of Object.entries(packageJson('package-lock.json').packages as Record<string, any>)) {
      const range = entry.engines?.node;
      if (typeof range !== 'string') continue;
      if (!admitsNode20(range)) offending.push(`${path}: ${range}`);
    }
    assert.deepEqual(offending, []);
  });

  /** Whether one of a range's `||` alternatives is a floor at or below 20 (`>=10`, `>= 10.*`) or `20.*`. */
  function admitsNode20(range: string): boolean {
    return range.split('||').some((alternative) => {
      const floor = /^>=\s*(\d+)(?:\.[\dx*]+){0,2}$/.exec(alternative.trim());
      if (floor) return Number(floor[1]) <= 20;
      return /^20(?:\.[x*])?(?:\.[x*])?$/.test(alternative.trim());
    });
  }

  test('refuses to start on a Node older than 24, with exit 2 and the way to run it', async () => {
    const older = "data:text/javascript,Object.defineProperty(process.versions,'node',{value:'20.20.2'})";
    const refused = await clearance(process.execPath, ['--help'], ['--import', older]);
    assert.equal(refused.code, 2, refused.stderr);
    assert.equal(refused.stdout, '');
    assert.match(refused.stderr, /^clearance needs Node\.js 24 or later, and this is Node\.js 20\.20\.2\.\nRun it through npm/);
    const ok = await clearance(process.execPath, ['--help']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /^Usage: clearance/);
  });

  test('refuses the machine’s own older Node the same way, before it reads any TypeScript', async (t) => {
    const node = await olderSystemNode();
    if (!node) return t.skip('no Node older than 24 on PATH');
    const refused = await clearance(node, ['--help']);
    assert.equal(refused.code, 2, refused.stderr);
    assert.match(refused.stderr, /^clearance needs Node\.js 24 or later/);
  });
});
