import type { AuditEvent } from '../../audit/events.ts';
import type { Context } from '../../context.ts';
import { bumpGeneration } from '../../storage/generations.ts';
import { reviewDueText } from './record.ts';
import { kycGeneration } from './store.ts';
import { webhookToleranceSeconds } from './webhook.ts';

/**
 * The periodic KYC sweep (src/signals/service.ts runs it every pass): each `verified` record whose
 * review date has passed is written `expired`, with one `kyc.expired` event, by a conditional
 * update (still `verified`, still the version read) — so any number of nodes may sweep at once and
 * each record expires, and is audited, once. Decisions never wait for it: every read already sees
 * such a record as `expired` (./record.ts effectiveStatus). Also forgets webhook ids too old to be
 * replayed past the timestamp check (./webhook.ts).
 */
export async function expireKycRecords(ctx: Pick<Context, 'audit' | 'clock' | 'storage' | 'risk'>, limit = 500): Promise<number> {
  const now = ctx.clock.now();
  await ctx.storage.db.deleteFrom('kyc_webhook_ids').where('received_at', '<', now - 2 * webhookToleranceSeconds * 1000).execute();
  // Read first, outside a transaction: the pass usually finds nothing to do.
  const due = await ctx.storage.db
    .selectFrom('kyc_records')
    .select(['principal_type', 'principal_id', 'version', 'review_due'])
    .where('status', '=', 'verified')
    .where('review_due', '<=', now)
    .orderBy('review_due')
    .limit(limit)
    .execute();
  if (due.length === 0) return 0;
  const expired = await ctx.audit.recordWith(async (trx) => {
    const events: AuditEvent[] = [];
    for (const row of due) {
      const result = await trx
        .updateTable('kyc_records')
        .set({ status: 'expired', version: Number(row.version) + 1, updated_at: now, updated_by: 'clearance' })
        .where('principal_type', '=', row.principal_type)
        .where('principal_id', '=', row.principal_id)
        .where('status', '=', 'verified')
        .where('version', '=', row.version)
        .executeTakeFirst();
      if (Number(result.numUpdatedRows) !== 1) continue;
      events.push({
        type: 'kyc.expired',
        actor: 'clearance',
        subject: row.principal_id,
        details: { principal_type: row.principal_type, review_due: reviewDueText(Number(row.review_due)), before: 'verified', after: 'expired', version: Number(row.version) + 1 },
      });
    }
    if (events.length > 0) await bumpGeneration(trx, kycGeneration);
    return { value: events.length, events };
  });
  if (expired > 0) ctx.risk.kyc.invalidate();
  return expired;
}
