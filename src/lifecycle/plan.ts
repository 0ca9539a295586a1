import { createHash } from 'node:crypto';
import type { ManagedKind, ManagedState } from './state.ts';

/**
 * Apply's plan (issue 23 item 1, docs/lifecycle.md "Plan and prune"): what a document would add,
 * change and remove, per kind and name, field by field for changes, secrets never shown. The
 * changes come from writing the document in a transaction that is then rolled back
 * (src/apply/index.ts `previewApply`), so the plan is exactly what applying would do.
 */

/**
 * One field a change would write. A secret says only that it changes; so does a person's personal
 * data (name, email, attributes): a plan is posted on pull requests and kept in CI logs.
 */
export type FieldChange = { field: string; before: unknown; after: unknown } | { field: string; secret: true } | { field: string; personal: true };

/** One entry the document would add, change or remove (disable). */
export interface PlannedChange {
  kind: string;
  id: string;
  outcome: 'created' | 'updated' | 'removed' | 'disabled';
  /** For `updated` entries of the kinds whose fields a plan reads (src/lifecycle/state.ts). */
  fields?: FieldChange[];
}

/** The SHA-256 of a document's exact bytes, as the audit events name it: `sha256:<hex>`. */
export function documentDigest(bytes: string | Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** The fields that differ between an entry's stored records before and after. */
export function fieldChanges(before: Record<string, unknown> | undefined, after: Record<string, unknown> | undefined): FieldChange[] {
  const changes: FieldChange[] = [];
  const names = [...new Set([...Object.keys(before ?? {}), ...Object.keys(after ?? {})])].sort();
  for (const name of names) {
    const was = before?.[name];
    const is = after?.[name];
    if (canonical(was) === canonical(is)) continue;
    const marked = /^(.*) \((secret|personal)\)$/.exec(name);
    if (!marked) changes.push({ field: name, before: was ?? null, after: is ?? null });
    else changes.push(marked[2] === 'secret' ? { field: marked[1]!, secret: true } : { field: marked[1]!, personal: true });
  }
  return changes;
}

/** The field changes of one entry, when its kind is one the state reads. */
export function entryFieldChanges(kind: string, id: string, before: ManagedState, after: ManagedState): FieldChange[] | undefined {
  const of = (state: ManagedState) => state.get(kind as ManagedKind)?.get(id);
  if (!before.has(kind as ManagedKind)) return undefined;
  return fieldChanges(of(before), of(after));
}

/** A plan as lines for a terminal: `+` add, `~` change (each field below it), `-` disable or remove. */
export function formatPlan(changes: readonly PlannedChange[], unchanged: number): string[] {
  const lines: string[] = [];
  const mark = { created: '+', updated: '~', removed: '-', disabled: '-' } as const;
  const verb = { created: 'add', updated: 'change', removed: 'remove', disabled: 'disable' } as const;
  for (const change of changes) {
    lines.push(`${mark[change.outcome]} ${change.kind} ${change.id}${change.outcome === 'updated' ? '' : ` (${verb[change.outcome]})`}`);
    for (const field of change.fields ?? []) {
      lines.push(
        'secret' in field ? `    ${field.field}: changes (secret, not shown)` : 'personal' in field ? `    ${field.field}: changes (personal data, not shown)` : `    ${field.field}: ${show(field.before)} → ${show(field.after)}`,
      );
    }
  }
  const count = (outcome: PlannedChange['outcome']) => changes.filter((c) => c.outcome === outcome).length;
  const removed = count('disabled') + count('removed');
  lines.push(changes.length === 0 ? `no changes (${unchanged} unchanged)` : `${count('created')} to add, ${count('updated')} to change, ${removed} to disable or remove, ${unchanged} unchanged`);
  return lines;
}

/**
 * Whether a document gives a password or a secret anywhere (a member named `password`,
 * `password_hash`, `secret` or `*_secret`): planning it compares them with the stored ones.
 */
export function documentCarriesSecrets(value: unknown): boolean {
  if (Array.isArray(value)) return value.some(documentCarriesSecrets);
  if (value === null || typeof value !== 'object') return false;
  return Object.entries(value).some(([key, member]) => (/^(password|password_hash|secret)$|_secret$/i.test(key) && member !== undefined && member !== null) || documentCarriesSecrets(member));
}

function show(value: unknown): string {
  const text = value === null || value === undefined ? '(none)' : JSON.stringify(value);
  return text.length > 200 ? `${text.slice(0, 197)}...` : text;
}

/** JSON with object keys sorted, so two equal values compare equal whatever their key order. */
function canonical(value: unknown): string {
  return JSON.stringify(value ?? null, (_key, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : v,
  );
}

