import { join, type Validator } from '../validation.ts';
import { compilePolicySet } from './engine.ts';
import { samePerson, type PolicyEntry, type PolicyVersion } from './store.ts';

const fields = ['version', 'text', 'change_ref', 'author', 'approver', 'active'] as const;
export const versionPattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const personPattern = /^[^\p{Cc}]{1,200}$/u;
/** Policy text larger than this is refused (it is stored, compiled and cached whole). */
export const maxPolicyTextBytes = 256 * 1024;

/**
 * Reads one `policies[]` entry. The text is validated against the schema here, so a problem in
 * it is reported as `policies[0].text: line 3, column 5: ...`.
 */
export function readPolicyEntry(v: Validator, path: string, input: unknown): PolicyEntry | undefined {
  const o = v.object(path, input);
  if (!o) return undefined;
  const before = v.problems.length;
  v.knownKeys(path, o, fields);
  const version = v.string(join(path, 'version'), o.version, { pattern: versionPattern, patternMessage: 'must be 1–64 letters, digits and . _ - (e.g. 2025-06-01.1)' });
  const changeRef = v.string(join(path, 'change_ref'), o.change_ref, { maxLength: 500, pattern: /^[^\p{Cc}]*$/u, patternMessage: 'must not contain control characters' });
  const author = v.string(join(path, 'author'), o.author, { pattern: personPattern, patternMessage: 'must be 1–200 characters without control characters' });
  const approver = o.approver === undefined ? undefined : v.string(join(path, 'approver'), o.approver, { pattern: personPattern, patternMessage: 'must be 1–200 characters without control characters' });
  const active = o.active === undefined ? undefined : v.boolean(join(path, 'active'), o.active);
  const text = v.string(join(path, 'text'), o.text);
  if (text !== undefined && Buffer.byteLength(text) > maxPolicyTextBytes) v.fail(join(path, 'text'), `must be at most ${maxPolicyTextBytes} bytes`);
  if (text !== undefined && version !== undefined && v.problems.length === before) {
    const compiled = compilePolicySet(version, [{ name: join(path, 'text'), text }]);
    for (const p of compiled.problems) {
      v.fail(join(path, 'text'), `${p.line !== undefined ? `line ${p.line}, column ${p.column}: ` : ''}${p.policyId ? `policy "${p.policyId}": ` : ''}${p.message}`);
    }
  }
  if (active === true) {
    if (approver === undefined) v.fail(join(path, 'approver'), 'is required to activate a policy set (active: true)');
    else if (author !== undefined && samePerson(approver, author)) v.fail(join(path, 'approver'), 'must not be the author: a policy set is activated by a second person');
  }
  if (v.problems.length !== before) return undefined;
  return {
    version: version!,
    text: text!,
    change_ref: changeRef!,
    author: author!,
    ...(approver !== undefined ? { approver } : {}),
    ...(active !== undefined ? { active } : {}),
  };
}

/** Checks across entries and against stored versions: versions are immutable, one activation per document. */
export function checkPolicyEntries(v: Validator, entries: { item: PolicyEntry; at: number }[], stored: Map<string, PolicyVersion & { text: string }>): void {
  const activating = entries.filter((e) => e.item.active === true);
  for (const { at } of activating.slice(1)) v.fail(`policies[${at}].active`, `only one policy set can be activated; policies[${activating[0]!.at}] is activated too`);
  for (const { item, at } of entries) {
    const existing = stored.get(item.version);
    if (!existing) continue;
    for (const field of ['text', 'change_ref', 'author'] as const) {
      if (existing[field] !== item[field]) {
        v.fail(`policies[${at}].${field}`, `version "${item.version}" is stored with another ${field}; a version never changes: use a new version`);
      }
    }
  }
}
