import type { Kysely, Transaction } from 'kysely';
import type { Database } from '../../storage/schema.ts';
import { join, type Validator } from '../../validation.ts';

/**
 * Apply's `recovery` section (docs/recovery.md, docs/apply.md):
 *
 *   recovery:
 *     distinct_desks: true      # the approver shares no desk with the person (nor the requester)
 *     enrolment_ttl: 900        # seconds the enrolment link works after approval (60–3600)
 *     approval_ttl: 28800       # seconds a request waits for its approval (300–86400)
 *
 * Each setting a document names is stored (one row each); one it does not name keeps its value.
 * Read when a request is opened and when it is decided: rare, so no cache.
 */
export interface RecoverySettings {
  distinctDesks: boolean;
  /** Milliseconds. */
  enrolmentTtlMs: number;
  /** Milliseconds. */
  approvalTtlMs: number;
}

export const defaultRecoverySettings: Readonly<RecoverySettings> = { distinctDesks: false, enrolmentTtlMs: 15 * 60_000, approvalTtlMs: 8 * 3600_000 };

/** The section as validated: only what the document names. */
export type RecoverySection = Partial<{ distinct_desks: boolean; enrolment_ttl: number; approval_ttl: number }>;

const names = ['distinct_desks', 'enrolment_ttl', 'approval_ttl'] as const;

/** Validates apply's `recovery` section, recording every problem under `path`. */
export function readRecoverySection(v: Validator, path: string, value: unknown): RecoverySection | undefined {
  const o = v.object(path, value);
  if (!o) return undefined;
  const before = v.problems.length;
  v.knownKeys(path, o, names);
  const section: RecoverySection = {};
  if (o.distinct_desks !== undefined) {
    const b = v.boolean(join(path, 'distinct_desks'), o.distinct_desks);
    if (b !== undefined) section.distinct_desks = b;
  }
  // Short-lived by design: a link that waits a day is a link someone else may find.
  if (o.enrolment_ttl !== undefined) {
    const n = v.integer(join(path, 'enrolment_ttl'), o.enrolment_ttl, { min: 60, max: 3600 });
    if (n !== undefined) section.enrolment_ttl = n;
  }
  // src/approvals/requests.ts maxApprovalTtlMs: a request waits a day at most.
  if (o.approval_ttl !== undefined) {
    const n = v.integer(join(path, 'approval_ttl'), o.approval_ttl, { min: 300, max: 86_400 });
    if (n !== undefined) section.approval_ttl = n;
  }
  return v.problems.length === before ? section : undefined;
}

/** Stores the settings a document names, inside the apply transaction; one change per setting. */
export async function upsertRecoverySettings(
  trx: Transaction<Database>,
  now: number,
  section: RecoverySection,
): Promise<{ kind: 'recovery_setting'; id: string; outcome: 'created' | 'updated' | 'unchanged' }[]> {
  const changes: { kind: 'recovery_setting'; id: string; outcome: 'created' | 'updated' | 'unchanged' }[] = [];
  const stored = new Map((await trx.selectFrom('recovery_settings').select(['name', 'value']).execute()).map((r) => [r.name, r.value]));
  for (const name of names) {
    if (section[name] === undefined) continue;
    const value = JSON.stringify(section[name]);
    const existing = stored.get(name);
    if (existing === value) {
      changes.push({ kind: 'recovery_setting', id: name, outcome: 'unchanged' });
      continue;
    }
    if (existing === undefined) await trx.insertInto('recovery_settings').values({ name, value, updated_at: now }).execute();
    else await trx.updateTable('recovery_settings').set({ value, updated_at: now }).where('name', '=', name).execute();
    changes.push({ kind: 'recovery_setting', id: name, outcome: existing === undefined ? 'created' : 'updated' });
  }
  return changes;
}

/** The settings in force (defaults for any not set). A stored value of the wrong type is ignored. */
export async function recoverySettings(db: Kysely<Database> | Transaction<Database>): Promise<RecoverySettings> {
  const rows = await db.selectFrom('recovery_settings').select(['name', 'value']).execute();
  const settings = { ...defaultRecoverySettings };
  for (const row of rows) {
    const value = JSON.parse(row.value) as unknown;
    if (row.name === 'distinct_desks' && typeof value === 'boolean') settings.distinctDesks = value;
    if (row.name === 'enrolment_ttl' && typeof value === 'number') settings.enrolmentTtlMs = value * 1000;
    if (row.name === 'approval_ttl' && typeof value === 'number') settings.approvalTtlMs = value * 1000;
  }
  return settings;
}
