/**
 * How a `clearance` invocation is read and checked before anything runs. One parseArgs table
 * (node:util) reads every invocation; each command then declares, with its help text, what it
 * takes — its actions, and for each the options and the arguments — and `usageProblem` refuses
 * anything else: an option of another command, an argument too many, a whole number out of its
 * range. That happens before the configuration is read or the database opened, so a mistyped or
 * misplaced option (`--dry-run` given to a command that has no dry run) never runs the real action.
 */
import { parseArgs } from 'node:util';
import { UsageError, wholeNumber, type WholeNumberOption } from './numbers.ts';

/** Every option of every command: names and types must agree across commands. */
export const cliOptions = {
  help: { type: 'boolean', short: 'h' },
  file: { type: 'string', short: 'f' },
  'dry-run': { type: 'boolean' },
  // apply
  plan: { type: 'boolean' },
  prune: { type: 'boolean' },
  force: { type: 'boolean' },
  json: { type: 'boolean' },
  alg: { type: 'string' },
  overlap: { type: 'string' },
  audit: { type: 'boolean' },
  compromised: { type: 'boolean' },
  'client-id': { type: 'string' },
  jwks: { type: 'string' },
  scope: { type: 'string' },
  uses: { type: 'string' },
  ttl: { type: 'string' },
  'owner-lei': { type: 'string' },
  'grant-types': { type: 'string' },
  kinds: { type: 'string' },
  // audit
  output: { type: 'string', short: 'o' },
  key: { type: 'string' },
  checkpoint: { type: 'string' },
  payload: { type: 'string', multiple: true },
  event: { type: 'string' },
  'tree-size': { type: 'string' },
  from: { type: 'string' },
  to: { type: 'string' },
  retention: { type: 'string' },
  matter: { type: 'string' },
  address: { type: 'string' },
  reason: { type: 'string' },
  txn: { type: 'string' },
  subject: { type: 'string' },
  client: { type: 'string' },
  type: { type: 'string' },
  decision: { type: 'string' },
  since: { type: 'string' },
  until: { type: 'string' },
  // policy
  candidate: { type: 'string', multiple: true },
  last: { type: 'string' },
  approver: { type: 'string' },
  version: { type: 'string' },
  'change-ref': { type: 'string' },
  author: { type: 'string' },
  // partner
  assertion: { type: 'string' },
  kind: { type: 'string' },
  // start
  workers: { type: 'string' },
  // ca
  name: { type: 'string' },
  organization: { type: 'string' },
  'key-type': { type: 'string' },
  'root-key-out': { type: 'string' },
  'passphrase-file': { type: 'string' },
  pkcs11: { type: 'boolean' },
  'intermediate-custody': { type: 'string' },
  'root-days': { type: 'string' },
  'intermediate-days': { type: 'string' },
  profile: { type: 'string' },
  holder: { type: 'string' },
  csr: { type: 'string' },
  lifetime: { type: 'string' },
  // users
  provider: { type: 'string' },
  deadline: { type: 'string' },
} as const;

export type OptionName = keyof typeof cliOptions;

/** What one command (or one action of a command) takes. `--help` is taken everywhere. */
export interface Usage {
  /** Its options, besides --help. */
  options: readonly Exclude<OptionName, 'help'>[];
  /**
   * Its arguments after the command and action words, by name: the most it takes (the command
   * itself says when a required one is missing). `operands`: the command reads them itself, in
   * the order given (`audit verify-bundle BUNDLE --payload A B C`).
   */
  args: readonly string[] | 'operands';
  /** Its options read as whole numbers, each with its range (src/cli/numbers.ts). */
  numbers?: readonly WholeNumberOption[];
}

/** A command with actions (`keys list`, `audit hold place`): the first argument names one. */
export interface Actions {
  actions: Readonly<Record<string, Rule>>;
}

export type Rule = Usage | Actions;

/** A parseArgs token, as far as the check reads it. */
export type CliToken =
  | { kind: 'option'; name: string; rawName: string; value?: string | undefined }
  | { kind: 'positional'; value: string }
  | { kind: 'option-terminator' };

/** A key id is an RFC 7638 SHA-256 thumbprint: 43 base64url characters, which may begin with `-`. */
const keyIdStartingWithDash = /^-[A-Za-z0-9_-]{42}$/;

/** Passes key ids that begin with `-` (`keys retire -Nq…`) as positionals rather than unknown options. */
function keyIdsAsPositionals(argv: string[]): string[] {
  const end = argv.indexOf('--');
  const options = end === -1 ? argv : argv.slice(0, end);
  const kids = options.filter((a) => keyIdStartingWithDash.test(a));
  if (kids.length === 0) return argv;
  return [...options.filter((a) => !keyIdStartingWithDash.test(a)), '--', ...kids, ...(end === -1 ? [] : argv.slice(end + 1))];
}

/** Reads an invocation with the one table; throws parseArgs' error for an option no command has. */
export function parseInvocation(argv: string[]) {
  return parseArgs({
    args: keyIdsAsPositionals(argv),
    allowPositionals: true,
    // The order of the arguments: verify-bundle tells its bundle from its payload files by it,
    // and a refused option is named as it was typed (-o or --output).
    tokens: true,
    options: cliOptions,
  });
}

export type Invocation = ReturnType<typeof parseInvocation>;

/** Why an invocation is refused (exit 2): one line, and whether the command's help follows it. */
export interface UsageProblem {
  line: string;
  help: boolean;
}

/**
 * Why `rule` (the rule of `positionals[0]`, the command) refuses this invocation, or undefined
 * when it takes it: an action it does not have, an option it does not take (or one given twice),
 * more arguments than it takes, or a whole number outside its range. Reads nothing but the
 * arguments.
 */
export function usageProblem(rule: Rule, invocation: { positionals: readonly string[]; values: Record<string, unknown>; tokens?: readonly CliToken[] | undefined }): UsageProblem | undefined {
  const { positionals, values } = invocation;
  const tokens = invocation.tokens ?? [];
  const words = [positionals[0]!];
  let usage: Rule = rule;
  while ('actions' in usage) {
    const names = Object.keys(usage.actions);
    const action = positionals[words.length];
    const choices = `${names.slice(0, -1).join(', ')} or ${names.at(-1)}`;
    if (action === undefined) return { line: `clearance ${words.join(' ')} needs an action: ${choices}`, help: true };
    if (!Object.hasOwn(usage.actions, action)) return { line: `clearance ${words.join(' ')}: unknown action "${action}" (it has ${choices})`, help: true };
    words.push(action);
    usage = usage.actions[action]!;
  }
  const name = `clearance ${words.join(' ')}`;

  const taken = new Set<string>(['help', ...usage.options]);
  const given = tokens.filter((t): t is Extract<CliToken, { kind: 'option' }> => t.kind === 'option');
  const refused = [...new Set(given.filter((t) => !taken.has(t.name)).map((t) => t.rawName))];
  if (refused.length > 0) {
    const takes = usage.options.length === 0 ? 'it takes no options' : `it takes ${usage.options.map(flagOf).join(', ')}`;
    return { line: `${name} does not take ${refused.join(', ')} (${takes})`, help: true };
  }
  // An option given twice would keep only its last value: the first is not silently dropped.
  for (const option of usage.options) {
    if ((cliOptions[option] as { multiple?: boolean }).multiple) continue;
    const times = given.filter((t) => t.name === option);
    if (times.length > 1) return { line: `${name} takes ${flagOf(option)} once, not ${times.length} times`, help: true };
  }

  if (usage.args !== 'operands') {
    const args = positionals.slice(words.length);
    if (args.length > usage.args.length) {
      const takes = usage.args.length === 0 ? 'takes no arguments' : `takes ${usage.args.length === 1 ? 'one argument' : `${usage.args.length} arguments`} (${usage.args.join(' ')})`;
      const extra = args.slice(usage.args.length).map((a) => JSON.stringify(a)).join(' ');
      return { line: `${name} ${takes}; unexpected: ${extra}`, help: true };
    }
  }

  for (const option of usage.numbers ?? []) {
    try {
      wholeNumber(option, values[option.flag.slice(2)] as string | undefined);
    } catch (error) {
      if (!(error instanceof UsageError)) throw error;
      return { line: error.message, help: false };
    }
  }
  return undefined;
}

/** The rule's action words and usages, leaf by leaf (`['keys', 'rotate']`), for help and tests. */
export function usagesOf(rule: Rule, words: string[]): { words: string[]; usage: Usage }[] {
  if (!('actions' in rule)) return [{ words, usage: rule }];
  return Object.entries(rule.actions).flatMap(([action, sub]) => usagesOf(sub, [...words, action]));
}

/** `--name`, or `-o/--output` for an option with a short form. */
function flagOf(option: OptionName): string {
  const short = (cliOptions[option] as { short?: string }).short;
  return short ? `-${short}/--${option}` : `--${option}`;
}

