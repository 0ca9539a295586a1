import { hasControlCharacter, hasNonWhitespaceControl } from './parameters.ts';

/** One thing wrong with an input document, addressed by its path (e.g. `clients[2].redirect_uris[0]`). */
export interface Problem {
  path: string;
  message: string;
}

export function formatProblem(problem: Problem): string {
  return problem.path ? `${problem.path}: ${problem.message}` : problem.message;
}

/**
 * Collects every problem in a document instead of stopping at the first, so an operator fixes a
 * file in one pass. Each reader returns the value when valid and `undefined` (after recording a
 * problem) when not.
 */
export class Validator {
  readonly problems: Problem[] = [];

  get ok(): boolean {
    return this.problems.length === 0;
  }

  fail(path: string, message: string): undefined {
    this.problems.push({ path, message });
    return undefined;
  }

  object(path: string, value: unknown): Record<string, unknown> | undefined {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return this.fail(path, 'must be an object');
    return value as Record<string, unknown>;
  }

  /** Records every key of `object` that is not in `allowed`. */
  knownKeys(path: string, object: Record<string, unknown>, allowed: readonly string[]): void {
    for (const key of Object.keys(object)) {
      if (!allowed.includes(key)) this.fail(join(path, key), 'is not a recognised field');
    }
  }

  string(
    path: string,
    value: unknown,
    rules: { pattern?: RegExp; patternMessage?: string; maxLength?: number; oneOf?: readonly string[] } = {},
  ): string | undefined {
    if (typeof value !== 'string' || value.length === 0) return this.fail(path, 'must be a non-empty string');
    if (rules.maxLength !== undefined && value.length > rules.maxLength) {
      return this.fail(path, `must be at most ${rules.maxLength} characters`);
    }
    if (rules.oneOf && !rules.oneOf.includes(value)) return this.fail(path, `must be one of ${rules.oneOf.join(', ')}`);
    if (rules.pattern && !rules.pattern.test(value)) return this.fail(path, rules.patternMessage ?? `must match ${rules.pattern}`);
    return value;
  }

  integer(path: string, value: unknown, rules: { min: number; max: number }): number | undefined {
    if (typeof value !== 'number' || !Number.isInteger(value)) return this.fail(path, 'must be an integer');
    if (value < rules.min || value > rules.max) return this.fail(path, `must be from ${rules.min} to ${rules.max}`);
    return value;
  }

  boolean(path: string, value: unknown): boolean | undefined {
    if (typeof value !== 'boolean') return this.fail(path, 'must be true or false');
    return value;
  }

  /** An array whose items are each checked by `item`; undefined if the array or any item is bad. */
  array<T>(
    path: string,
    value: unknown,
    item: (path: string, value: unknown) => T | undefined,
    rules: { nonEmpty?: boolean; unique?: boolean } = {},
  ): T[] | undefined {
    if (!Array.isArray(value)) return this.fail(path, 'must be an array');
    if (rules.nonEmpty && value.length === 0) return this.fail(path, 'must not be empty');
    const before = this.problems.length;
    const items = value.map((v, i) => item(`${path}[${i}]`, v));
    if (rules.unique) {
      const seen = new Set<unknown>();
      items.forEach((v, i) => {
        if (v !== undefined && seen.has(v)) this.fail(`${path}[${i}]`, 'is listed twice');
        seen.add(v);
      });
    }
    return this.problems.length === before ? (items as T[]) : undefined;
  }

  /** Fails each entry of the list at `path` whose `id` an earlier entry already has. */
  uniqueIds(path: string, entries: readonly { id: string }[]): void {
    const seen = new Map<string, number>();
    entries.forEach((e, i) => {
      if (seen.has(e.id)) this.fail(`${path}[${i}].id`, `"${e.id}" is also defined at ${path}[${seen.get(e.id)}]`);
      else seen.set(e.id, i);
    });
  }
}

/** `a.b`, or `b` when there is no parent path. */
export function join(path: string, key: string): string {
  return path ? `${path}.${key}` : key;
}

/**
 * Control characters anywhere in a JSON document or body (src/parameters.ts has the rules): a
 * key with any C0 control or DEL, or a string value with one other than HT, LF, CR (free text may
 * break lines). Every string of the document is visited, however deep (iteratively: a body nested
 * thousands of levels deep must not overflow the stack); at most `limit` problems, addressed by path.
 */
export function controlCharacterProblems(document: unknown, limit = 20): Problem[] {
  // Nearly every body has none: looked for first without building each member's path (a quarter
  // of the time on a batch of AuthZEN evaluations), then again with paths when there is one.
  if (!anyControlCharacter(document)) return [];
  const problems: Problem[] = [];
  const pending: [string, unknown][] = [['', document]];
  while (pending.length > 0 && problems.length < limit) {
    const [path, value] = pending.pop()!;
    if (typeof value === 'string') {
      if (hasNonWhitespaceControl(value)) problems.push({ path, message: 'contains a control character' });
    } else if (Array.isArray(value)) {
      for (let i = value.length - 1; i >= 0; i--) pending.push([`${path}[${i}]`, value[i]]);
    } else if (typeof value === 'object' && value !== null) {
      const entries = Object.entries(value);
      for (let i = entries.length - 1; i >= 0; i--) {
        const [key, item] = entries[i]!;
        if (hasControlCharacter(key)) {
          problems.push({ path, message: 'has a key that contains a control character' });
          continue;
        }
        pending.push([join(path, key), item]);
      }
    }
  }
  return problems.slice(0, limit);
}

/** Whether `controlCharacterProblems` finds anything in `document`: the same members, the same rules. */
function anyControlCharacter(document: unknown): boolean {
  const pending: unknown[] = [document];
  while (pending.length > 0) {
    const value = pending.pop();
    if (typeof value === 'string') {
      if (hasNonWhitespaceControl(value)) return true;
    } else if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) pending.push(value[i]);
    } else if (typeof value === 'object' && value !== null) {
      for (const [key, item] of Object.entries(value)) {
        if (hasControlCharacter(key)) return true;
        pending.push(item);
      }
    }
  }
  return false;
}
