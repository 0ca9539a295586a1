import type { Transaction } from 'kysely';
import type { AuditEvent } from '../audit/events.ts';
import type { Context } from '../context.ts';
import type { Database } from '../storage/schema.ts';
import type { Validator } from '../validation.ts';
import { checkPolicyEntries, readPolicyEntry } from './definition.ts';
import type { PolicyEntry, PolicyVersion } from './store.ts';

type List = <T>(key: string, read: (path: string, item: unknown) => T | undefined) => { item: T; at: number }[];
type Duplicates = (v: Validator, section: string, ids: [string, number][], field: string) => void;

/** Reads and cross-checks the `policies` section of an apply document (planApply's helper). */
export async function planPolicies(ctx: Pick<Context, 'policies'>, v: Validator, list: List, duplicates: Duplicates): Promise<PolicyEntry[]> {
  const entries = list('policies', (p, x) => readPolicyEntry(v, p, x));
  duplicates(v, 'policies', entries.map((e) => [e.item.version, e.at]), 'version');
  if (entries.length) {
    const stored = new Map<string, PolicyVersion & { text: string }>();
    for (const { item } of entries) {
      const existing = await ctx.policies.get(item.version);
      if (existing) stored.set(item.version, existing);
    }
    checkPolicyEntries(v, entries, stored);
  }
  return entries.map((e) => e.item);
}

/**
 * Stores the `policies` entries inside the apply transaction; returns their changes and a
 * `policy.activated` event for an activation (recorded with the apply's events).
 */
export async function executePolicies(
  ctx: Pick<Context, 'policies'>,
  trx: Transaction<Database>,
  entries: PolicyEntry[],
  actor: string,
): Promise<{ changes: { kind: 'policy_set'; id: string; outcome: 'created' | 'updated' | 'unchanged' }[]; events: AuditEvent[] }> {
  const changes: { kind: 'policy_set'; id: string; outcome: 'created' | 'updated' | 'unchanged' }[] = [];
  const events: AuditEvent[] = [];
  for (const entry of entries) {
    const { outcome, activated, previous } = await ctx.policies.upsert(trx, entry, actor);
    changes.push({ kind: 'policy_set', id: entry.version, outcome });
    if (activated) events.push(activationEvent(actor, entry.version, entry.author, entry.approver!, entry.change_ref, previous));
  }
  return { changes, events };
}

/** The `policy.activated` audit event. */
export function activationEvent(actor: string, version: string, author: string, approver: string, changeRef: string, previous: string | null): AuditEvent {
  return {
    type: 'policy.activated',
    actor,
    decision: { allow: true, reasons: ['approved'], policyVersion: version },
    details: { version, author, approver, change_ref: changeRef, previous },
  };
}
