import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { commands, mainHelp } from '../../src/cli/main.ts';
import { describeWholeNumber, UsageError, wholeNumber, type WholeNumberOption } from '../../src/cli/numbers.ts';
import { cliOptions, parseInvocation, usageProblem, usagesOf, type OptionName, type Usage } from '../../src/cli/usage.ts';
import { cliWorkspace, runCli } from '../helpers/cli.ts';
import { examplePoliciesDir } from '../policy/fixture.ts';

/** What usage.ts says of an invocation, without running it: undefined when the command takes it. */
function check(...argv: string[]) {
  const invocation = parseInvocation(argv);
  const command = invocation.positionals[0]!;
  assert.ok(Object.hasOwn(commands, command), `a command: ${argv.join(' ')}`);
  return usageProblem(commands[command]!.usage, invocation);
}

/** The usage lines of a help text (`keys rotate [--alg ...]`), each joined from its continuation lines. */
function usageLines(help: string): string[] {
  const end = help.indexOf('\n\n');
  const lines: string[] = [];
  for (const line of (end === -1 ? help : help.slice(0, end)).split('\n')) {
    const at = /^(?:Usage: )?\s*clearance /.exec(line);
    if (at) lines.push(line.slice(at[0].length));
    else lines[lines.length - 1] += ` ${line.trim()}`;
  }
  return lines;
}

const longName = (token: string): OptionName => {
  if (token.startsWith('--')) return token.slice(2) as OptionName;
  const found = Object.entries(cliOptions).find(([, o]) => (o as { short?: string }).short === token.slice(1));
  assert.ok(found, `short option ${token}`);
  return found[0] as OptionName;
};

/**
 * A usage line read as the rules read it: the action words, the options it shows, how many
 * arguments, and an invocation made from it (every alternative given, a whole number as 1).
 */
function readUsageLine(line: string): { words: string[]; usage: Usage; options: Set<string>; args: number; argv: string[] } {
  const tokens = (line.match(/"[^"]*"|\S+/g) ?? []).map((t) => (t.startsWith('"') ? t.slice(1, -1) : t.replace(/[[\]()]/g, ''))).filter((t) => t !== '' && t !== '|' && t !== '...');
  const words = [tokens.shift()!];
  let rule = commands[words[0]!]!.usage;
  while ('actions' in rule) {
    const action = tokens.shift()!;
    assert.ok(Object.hasOwn(rule.actions, action), `${line}: an action of ${words.join(' ')}`);
    words.push(action);
    rule = rule.actions[action]!;
  }
  const options = new Set<string>();
  const argv = [...words];
  let args = 0;
  while (tokens.length) {
    const token = tokens.shift()!;
    if (!token.startsWith('-')) {
      args++;
      argv.push(token);
      continue;
    }
    const name = longName(token);
    options.add(name);
    argv.push(token);
    if (cliOptions[name].type === 'string') {
      const value = tokens.shift()!;
      argv.push(rule.numbers?.some((n) => n.flag === `--${name}`) ? '1' : value);
    }
  }
  return { words, usage: rule, options, args, argv };
}

const documented = Object.entries(commands).flatMap(([command, { help }]) => usageLines(help).map((line) => ({ command, line, ...readUsageLine(line) })));

describe('each clearance command declares what it takes', () => {
  test('every usage line of every help text is taken as it is written', () => {
    assert.ok(documented.length >= 45, `usage lines read: ${documented.length}`);
    for (const { line, argv } of documented) assert.equal(check(...argv), undefined, `clearance ${line}\n  as ${argv.join(' ')}`);
  });

  test('each action takes exactly the options and the number of arguments its usage lines show', () => {
    for (const [command, { usage }] of Object.entries(commands)) {
      for (const leaf of usagesOf(usage, [command])) {
        const lines = documented.filter((d) => d.words.join(' ') === leaf.words.join(' '));
        assert.ok(lines.length > 0, `${leaf.words.join(' ')} has a usage line`);
        const shown = new Set(lines.flatMap((l) => [...l.options]));
        assert.deepEqual([...shown].sort(), [...leaf.usage.options].sort(), `the options of ${leaf.words.join(' ')}`);
        if (leaf.usage.args !== 'operands') assert.equal(Math.max(...lines.map((l) => l.args)), leaf.usage.args.length, `the arguments of ${leaf.words.join(' ')}`);
        for (const number of leaf.usage.numbers ?? []) assert.ok(leaf.usage.options.includes(number.flag.slice(2) as never), `${number.flag} is an option of ${leaf.words.join(' ')}`);
      }
    }
  });

  test('takes the invocations the help texts, the docs and the tests show', () => {
    const kid = `-${'A'.repeat(42)}`;
    for (const argv of [
      ['start'],
      ['start', '--workers', '4'],
      ['migrate'],
      ['backup', '-o', 'backup.db'],
      ['backup', '--output=backup.db'],
      ['init', '--client-id', 'ops-admin', '--jwks', 'keys.json'],
      ['users', 'link', 'rita', '--provider', 'fund-a', '--subject', 'pm-6'],
      ['users', 'links', 'rita'],
      ['users', 'offboard', 'alice', '--deadline', '2099-01-01T00:00:00Z', '--reason', 'left the firm'],
      ['clients', 'list'],
      ['clients', 'token', '--scope', 'order:create order:cancel', '--owner-lei', '5493001KJTIIGC8Y1R12', '--grant-types', 'client_credentials', '--kinds', 'service', '--uses', '1', '--ttl', '86400'],
      ['clients', 'rotate-secret', 'broker-1', '--overlap', '0'],
      ['keys', 'list', '--json'],
      ['keys', 'status'],
      ['keys', 'rotate', '--alg', 'EdDSA', '--overlap', '600'],
      ['keys', 'rotate', '--audit'],
      ['keys', 'retire', kid],
      ['keys', 'revoke', kid, '--compromised', '--reason=found in a public repository'],
      ['keys', 'rewrap', '--json'],
      ['apply', '-f', 'desk.yaml', '--dry-run'],
      ['apply', '--plan', '--prune', 'next.yaml'],
      ['apply', '--prune', '--force', 'one.yaml'],
      ['audit', 'verify', '--key', 'pin.pem', '--checkpoint', 'cp.json', '--json'],
      ['audit', 'export', '--since', '2026-01-01T00:00:00Z', '--until', '2026-02-01T00:00:00Z', '--type', 'token.issued', '--decision', 'deny', '-o', 'b.json'],
      ['audit', 'verify-bundle', 'b.json', '--payload', 'a.json', 'ORD-7=b.json', '--json', '--key', 'pin.pem'],
      ['audit', 'verify-bundle', '--json', 'b.json', '--payload', 'a.json', '--payload', 'c.json'],
      ['audit', 'proof', '--event', 'e-1', '--tree-size', '12'],
      ['audit', 'proof', '--from', '3', '--to', '12'],
      ['audit', 'prune', '--retention', 'token.introspected=90d,*=7y', '--dry-run'],
      ['audit', 'hold', 'place', '--since', '2026-01-01T00:00:00Z', '--until', '2026-02-01T00:00:00Z', '--matter', 'SEC-2026-114'],
      ['audit', 'hold', 'list'],
      ['audit', 'hold', 'release', 'hold-1', '--reason', 'matter closed'],
      ['audit', 'erase-subject', 'person-1', '--reason', 'Art. 17'],
      ['audit', 'erase-subject', '--address', '203.0.113.66'],
      ['audit', 'key'],
      ['audit', 'seal'],
      ['policy', 'test', examplePoliciesDir],
      ['policy', 'simulate', '--candidate', 'examples/policies', '--candidate', 'lower-limit.cedar', '--last', '100'],
      ['policy', 'list'],
      ['policy', 'add', 'examples/policies', '--version', '2026-01.1', '--change-ref', 'CHG-1', '--author', 'alice'],
      ['policy', 'activate', '2026-01.1', '--approver', 'bob'],
      ['partner', 'check', 'acme', '--assertion', 'jwt.txt', '--kind', 'access_token'],
      ['partner', 'list'],
      ['partner', 'status', 'acme'],
      ['partner', 'approve', 'acme'],
      ['ca', 'init', '--name', 'Example', '--organization', 'Org', '--key-type', 'Ed25519', '--root-key-out', 'root.key', '--passphrase-file', 'pass', '--intermediate-custody', 'software', '--root-days', '3650', '--intermediate-days', '1825'],
      ['ca', 'init', '--name', 'HSM', '--pkcs11', '--intermediate-custody', 'pkcs11'],
      ['ca', 'issue', '--profile', 'trading-agent', '--holder', 'algo-7', '--csr', 'req.csr', '--lifetime', '2h', '-o', 'chain.pem'],
      ['ca', 'revoke', '0A1B', '--reason', 'superseded'],
      ['ca', 'list', '--json'],
      ['ca', 'root', '-o', 'root.pem'],
      ['ca', 'crl'],
      ['keys', 'rotate', '--help'],
      ['audit', 'hold', 'place', '-h'],
    ]) {
      assert.equal(check(...argv), undefined, argv.join(' '));
    }
  });

  test('refuses an option of another action or command, naming it as typed, with the help to follow', () => {
    for (const [argv, line] of [
      [['migrate', '--workers', '3'], 'clearance migrate does not take --workers (it takes no options)'],
      [['keys', 'rotate', '--prune'], 'clearance keys rotate does not take --prune (it takes --alg, --overlap, --audit)'],
      [['keys', 'list', '-o', 'keys.json'], 'clearance keys list does not take -o (it takes --json)'],
      [['ca', 'init', '--name', 'X', '--pkcs11', '--txn', 'x'], 'clearance ca init does not take --txn (it takes --name, --organization, --key-type, --root-key-out, --passphrase-file, --pkcs11, --intermediate-custody, --root-days, --intermediate-days)'],
      [['start', '--dry-run'], 'clearance start does not take --dry-run (it takes --workers)'],
      [['apply', '-f', 'desk.yaml', '--json', '--audit'], 'clearance apply does not take --json, --audit (it takes -f/--file, --plan, --dry-run, --prune, --force)'],
      [['audit', 'verify-bundle', 'b.json', '--dry-run'], 'clearance audit verify-bundle does not take --dry-run (it takes --key, --payload, --json)'],
      [['audit', 'hold', 'list', '--matter', 'M'], 'clearance audit hold list does not take --matter (it takes no options)'],
      [['keys', 'rotate', '--audit', '--reason', 'r'], 'clearance keys rotate does not take --reason (it takes --alg, --overlap, --audit)'],
    ] as const) {
      assert.deepEqual(check(...argv), { line, help: true }, argv.join(' '));
    }
  });

  test('refuses an option given twice, whose first value would be dropped; a repeatable one is taken', () => {
    assert.deepEqual(check('keys', 'revoke', 'kid', '--compromised', '--reason', 'a', '--reason', 'b'), { line: 'clearance keys revoke takes --reason once, not 2 times', help: true });
    assert.deepEqual(check('backup', '-o', 'a.db', '--output', 'b.db'), { line: 'clearance backup takes -o/--output once, not 2 times', help: true });
    assert.equal(check('policy', 'simulate', '--candidate', 'a', '--candidate', 'b'), undefined);
  });

  test('refuses more arguments than the action takes, and an action it does not have', () => {
    for (const [argv, line] of [
      [['migrate', 'now'], 'clearance migrate takes no arguments; unexpected: "now"'],
      [['start', 'now'], 'clearance start takes no arguments; unexpected: "now"'],
      [['keys', 'list', 'extra'], 'clearance keys list takes no arguments; unexpected: "extra"'],
      [['keys', 'retire', 'kid-a', 'kid-b'], 'clearance keys retire takes one argument (KID); unexpected: "kid-b"'],
      [['apply', 'a.yaml', 'b.yaml'], 'clearance apply takes one argument (FILE); unexpected: "b.yaml"'],
      [['audit', 'hold', 'release', 'hold-1', 'hold-2', '--reason', 'r'], 'clearance audit hold release takes one argument (HOLD_ID); unexpected: "hold-2"'],
      [['keys'], 'clearance keys needs an action: list, status, rotate, retire, revoke or rewrap'],
      [['keys', 'shred'], 'clearance keys: unknown action "shred" (it has list, status, rotate, retire, revoke or rewrap)'],
      [['audit', 'hold'], 'clearance audit hold needs an action: place, list or release'],
    ] as const) {
      assert.deepEqual(check(...argv), { line, help: true }, argv.join(' '));
    }
  });
});

describe('the whole-number reader of the CLI', () => {
  const overlap: WholeNumberOption = { flag: '--overlap', min: 0, max: 2592000, unit: 'seconds' };

  test('takes digits within the range, and nothing when the option is not given', () => {
    assert.equal(wholeNumber(overlap, '0'), 0);
    assert.equal(wholeNumber(overlap, '600'), 600);
    assert.equal(wholeNumber(overlap, '0600'), 600);
    assert.equal(wholeNumber(overlap, '2592000'), 2592000);
    assert.equal(wholeNumber(overlap, undefined), undefined);
    assert.equal(wholeNumber({ flag: '--tree-size', min: 1, max: Number.MAX_SAFE_INTEGER }, String(Number.MAX_SAFE_INTEGER)), Number.MAX_SAFE_INTEGER);
  });

  test('refuses what Number() would take, and a number out of range, naming the flag, the range and the value', () => {
    for (const raw of ['1e3', '0x10', '', '-1', ' 5', '5 ', '5.0', '+5', '2592001', '١٢', '99999999999999999999']) {
      assert.throws(() => wholeNumber(overlap, raw), (error: Error) => {
        assert.ok(error instanceof UsageError, raw);
        assert.equal(error.message, `--overlap must be a whole number of seconds, 0 to 2592000, not ${JSON.stringify(raw)}`);
        return true;
      });
    }
    assert.equal(describeWholeNumber({ flag: '--from', min: 1, max: Number.MAX_SAFE_INTEGER, note: 'a tree size' }), 'a whole number, 1 or more (a tree size)');
  });
});

describe('the clearance command refuses what the command does not take, before anything runs', () => {
  const refusal = (result: { code: number; out: string; err: string }, command: string, line: string | RegExp) => {
    assert.equal(result.code, 2, result.err);
    const [first, blank, ...help] = result.err.split('\n');
    if (typeof line === 'string') assert.equal(first, line);
    else assert.match(first!, line);
    assert.equal(blank, '', 'the help follows the line');
    assert.equal(help.join('\n'), commands[command]!.help, `the help of ${command}`);
    assert.equal(result.out, '');
  };

  test('an option of another command: exit 2, its help, and no database made', async (t) => {
    const { dir, env, run } = cliWorkspace(t, 'clearance-cli-usage-');
    writeFileSync(join(dir, 'desk.yaml'), 'clients:\n  - client_id: broker-1\n    grant_types: [client_credentials]\n');
    for (const [argv, line] of [
      [['migrate', '--workers', '3'], 'clearance migrate does not take --workers (it takes no options)'],
      [['keys', 'rotate', '--prune'], /^clearance keys rotate does not take --prune /],
      [['ca', 'init', '--name', 'X', '--pkcs11', '--txn', 'x'], /^clearance ca init does not take --txn /],
      [['apply', '-f', join(dir, 'desk.yaml'), '--json'], /^clearance apply does not take --json /],
      [['audit', 'prune', '--retention', '*=1d', '--force'], /^clearance audit prune does not take --force \(it takes --retention, --dry-run\)$/],
      [['clients', 'token', '--scope', 'order:create', '--overlap', '60'], /^clearance clients token does not take --overlap /],
      [['init', '--client-id', 'ops', '--scope', 'admin:read'], 'clearance init does not take --scope (it takes --client-id, --jwks)'],
      [['keys', 'list', '-o', join(dir, 'keys.json')], 'clearance keys list does not take -o (it takes --json)'],
      [['policy', 'list', '--version', '2026-01.1'], 'clearance policy list does not take --version (it takes no options)'],
      [['partner', 'list', '--kind', 'jwt'], 'clearance partner list does not take --kind (it takes no options)'],
    ] as const) {
      refusal(await run(...argv), argv[0], line);
      assert.equal(existsSync(env.CLEARANCE_DATA_DIR!), false, `${argv.join(' ')}: no data directory, no database`);
    }
    // A file that cannot be written would show the option was used: it was not.
    assert.equal(existsSync(join(dir, 'keys.json')), false);
  });

  test('is checked before the configuration is read', async (t) => {
    const { env } = cliWorkspace(t, 'clearance-cli-usage-');
    // A configuration the CLI refuses: the wrong option is still what is said.
    const result = await runCli(['migrate', '--workers', '3'], { ...env, CLEARANCE_MODE: 'production', CLEARANCE_MASTER_KEY: '' });
    refusal(result, 'migrate', 'clearance migrate does not take --workers (it takes no options)');
  });

  test('policy test refuses an option or an argument it does not take, rather than running the cases', async (t) => {
    const { env } = cliWorkspace(t, 'clearance-cli-usage-');
    refusal(await runCli(['policy', 'test', examplePoliciesDir, 'extra'], env), 'policy', 'clearance policy test takes one argument (DIR); unexpected: "extra"');
    refusal(await runCli(['policy', 'test', examplePoliciesDir, '--last', '5'], env), 'policy', 'clearance policy test does not take --last (it takes no options)');
    assert.equal((await runCli(['policy', 'test', examplePoliciesDir], env)).code, 0, 'the same without them runs');
  });

  test('keys rotate --prune rotates no key; keys revoke --dry-run revokes nothing (there is no dry run)', async (t) => {
    const { run } = cliWorkspace(t, 'clearance-cli-usage-');
    const before = await run('keys', 'list');
    assert.equal(before.code, 0, before.err);
    const kid = before.out.split(/\s+/)[0]!;
    refusal(await run('keys', 'rotate', '--prune'), 'keys', /^clearance keys rotate does not take --prune /);
    refusal(await run('keys', 'revoke', kid, '--compromised', '--dry-run'), 'keys', 'clearance keys revoke does not take --dry-run (it takes --compromised, --reason)');
    refusal(await run('keys', 'retire', kid, kid), 'keys', `clearance keys retire takes one argument (KID); unexpected: "${kid}"`);
    assert.equal((await run('keys', 'list')).out, before.out, 'the same keys, in the same states');
  });

  test('users offboard --dry-run offboards nobody', async (t) => {
    const { dir, run } = cliWorkspace(t, 'clearance-cli-usage-');
    writeFileSync(join(dir, 'people.json'), JSON.stringify({ users: [{ username: 'alice', name: 'Alice Trader' }] }));
    assert.equal((await run('apply', '-f', join(dir, 'people.json'))).code, 0);
    refusal(await run('users', 'offboard', 'alice', '--dry-run'), 'users', 'clearance users offboard does not take --dry-run (it takes --deadline, --reason)');
    refusal(await run('users', 'offboard', 'alice', 'bob'), 'users', 'clearance users offboard takes one argument (USERNAME); unexpected: "bob"');
    const done = await run('users', 'offboard', 'alice');
    assert.equal(done.code, 0, `alice was still in service: ${done.err}`);
  });

  test('more arguments than the command takes, or an action it does not have: exit 2 and no database made', async (t) => {
    const { env, run } = cliWorkspace(t, 'clearance-cli-usage-');
    for (const [argv, line] of [
      [['migrate', 'now'], 'clearance migrate takes no arguments; unexpected: "now"'],
      [['keys', 'list', 'extra'], 'clearance keys list takes no arguments; unexpected: "extra"'],
      [['audit', 'seal', 'now'], 'clearance audit seal takes no arguments; unexpected: "now"'],
      [['ca', 'revoke', '01', '02', '--reason', 'superseded'], 'clearance ca revoke takes one argument (SERIAL); unexpected: "02"'],
      [['clients', 'rotate-secret', 'broker-1', 'broker-2'], 'clearance clients rotate-secret takes one argument (CLIENT_ID); unexpected: "broker-2"'],
      [['partner', 'status', 'acme', 'beta', 'gamma'], 'clearance partner status takes one argument (ID); unexpected: "beta" "gamma"'],
      [['keys'], 'clearance keys needs an action: list, status, rotate, retire, revoke or rewrap'],
      [['keys', 'shred'], 'clearance keys: unknown action "shred" (it has list, status, rotate, retire, revoke or rewrap)'],
      [['audit', 'hold', 'lift'], 'clearance audit hold: unknown action "lift" (it has place, list or release)'],
      [['clients'], 'clearance clients needs an action: list, token or rotate-secret'],
    ] as const) {
      refusal(await run(...argv), argv[0], line);
      assert.equal(existsSync(env.CLEARANCE_DATA_DIR!), false, `${argv.join(' ')}: no data directory, no database`);
    }
    const help = await run('help', 'keys', 'rotate');
    assert.equal(help.code, 2);
    assert.equal(help.err, `clearance help takes one argument (COMMAND); unexpected: "rotate"\n\n${mainHelp}`);
  });

  test('a whole number that is not plain digits within its range: exit 2, one line naming the flag, no database made', async (t) => {
    const { env, run } = cliWorkspace(t, 'clearance-cli-usage-');
    for (const [argv, flag, takes, over] of [
      [['keys', 'rotate'], '--overlap', 'a whole number of seconds, 0 to 2592000 (as CLEARANCE_KEY_OVERLAP)', '2592001'],
      [['clients', 'rotate-secret', 'broker-1'], '--overlap', 'a whole number of seconds, 0 to 2592000', '2592001'],
      [['clients', 'token', '--scope', 'order:create'], '--uses', 'a whole number, 1 to 1000000', '1000001'],
      [['clients', 'token', '--scope', 'order:create'], '--ttl', 'a whole number of seconds, 1 to 31536000', '31536001'],
      [['ca', 'init', '--name', 'X', '--pkcs11'], '--root-days', 'a whole number of days, 1 to 9125', '9126'],
      [['ca', 'init', '--name', 'X', '--pkcs11'], '--intermediate-days', 'a whole number of days, 1 to 9125', '0'],
      [['policy', 'simulate', '--candidate', examplePoliciesDir], '--last', 'a whole number, 1 to 1000000', '1000001'],
      [['audit', 'proof', '--event', 'e-1'], '--tree-size', 'a whole number, 1 or more (a tree size)', '0'],
      [['audit', 'proof'], '--from', 'a whole number, 1 or more (a tree size)', '99999999999999999999'],
      [['audit', 'proof', '--from', '1'], '--to', 'a whole number, 1 or more (a tree size)', '0'],
      [['start'], '--workers', 'a whole number, 1 to 256', '257'],
    ] as const) {
      for (const raw of ['1e3', '0x10', '', '-1', ' 5', '5.0', over]) {
        const result = await run(...argv, `${flag}=${raw}`);
        assert.equal(result.code, 2, `${argv.join(' ')} ${flag}=${raw}: ${result.err}`);
        assert.equal(result.err, `${flag} must be ${takes}, not ${JSON.stringify(raw)}`);
        assert.equal(result.out, '');
        assert.equal(existsSync(env.CLEARANCE_DATA_DIR!), false, `${argv.join(' ')} ${flag}=${raw}: no data directory, no database`);
      }
    }
  });

  test('a whole number within its range is taken', async (t) => {
    const { run } = cliWorkspace(t, 'clearance-cli-usage-');
    const rotated = await run('keys', 'rotate', '--overlap', '2592000');
    assert.equal(rotated.code, 0, rotated.err);
    assert.match(rotated.out, /^created \S+ {2}ES256 {2}next/);
    for (const argv of [
      ['clients', 'token', '--scope', 'x', '--uses', '1000000', '--ttl', '31536000'],
      ['ca', 'init', '--name', 'X', '--pkcs11', '--root-days', '9125', '--intermediate-days', '1'],
      ['policy', 'simulate', '--candidate', 'p', '--last', '1'],
      ['audit', 'proof', '--from', '1', '--to', String(Number.MAX_SAFE_INTEGER)],
      ['start', '--workers', '256'],
    ]) {
      assert.equal(check(...argv), undefined, argv.join(' '));
    }
  });

  test('--help is taken everywhere: after an action, with its options, even with one it does not take', async (t) => {
    const { env, run } = cliWorkspace(t, 'clearance-cli-usage-');
    for (const argv of [
      ['migrate', '--help'],
      ['keys', 'rotate', '--help'],
      ['keys', 'rotate', '--prune', '--help'],
      ['audit', 'hold', 'place', '-h'],
      ['ca', 'init', '--name', 'X', '-h'],
      ['policy', 'test', '--help'],
    ]) {
      const result = await run(...argv);
      assert.equal(result.code, 0, `${argv.join(' ')}: ${result.err}`);
      assert.equal(result.out, commands[argv[0]!]!.help);
    }
    assert.equal((await run('help', 'migrate')).out, commands.migrate!.help);
    assert.equal((await run('help', '--help')).out, mainHelp);
    assert.equal(existsSync(env.CLEARANCE_DATA_DIR!), false);
  });
});
