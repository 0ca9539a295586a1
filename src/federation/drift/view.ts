import type { Context } from '../../context.ts';
import type { BaselineKey } from './observe.ts';

/** A partner's drift status and baseline, for the admin API and `clearance partner status`. */
export interface DriftView {
  partner: string;
  status: 'unchecked' | 'active' | 'suspended';
  suspended_at?: string;
  suspended_reason?: string;
  keys?: { thumbprint: string; kid?: string; algorithms: string[] }[];
  metadata_issuer?: string | null;
  metadata_digest?: string | null;
  last_success_at?: string | null;
  unreachable_since?: string | null;
  next_check_at?: string;
}

/** Undefined for no such partner. */
export async function driftView(ctx: Pick<Context, 'partners' | 'storage'>, id: string): Promise<DriftView | undefined> {
  if (!(await ctx.partners.get(id))) return undefined;
  const row = await ctx.storage.db.selectFrom('partner_baselines').selectAll().where('partner_id', '=', id).executeTakeFirst();
  if (!row) return { partner: id, status: 'unchecked' };
  const time = (value: number | null) => (value === null ? null : new Date(Number(value)).toISOString());
  return {
    partner: id,
    status: row.keys === null && row.status === 'active' ? 'unchecked' : (row.status as 'active' | 'suspended'),
    ...(row.status === 'suspended' ? { suspended_at: time(row.suspended_at)!, suspended_reason: row.suspended_reason ?? 'drift' } : {}),
    keys: row.keys === null ? [] : (JSON.parse(row.keys) as BaselineKey[]),
    metadata_issuer: row.issuer,
    metadata_digest: row.metadata_digest,
    last_success_at: time(row.last_success_at),
    unreachable_since: time(row.unreachable_since),
    next_check_at: time(row.next_check_at)!,
  };
}
