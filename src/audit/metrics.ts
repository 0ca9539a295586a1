import { Gauge, type Registry } from 'prom-client';
import type { Context } from '../context.ts';

/**
 * The audit log's health at scrape time (docs/operations.md "Metrics"), read from the database so
 * every node reports the same: how far sealing lags behind recording, and how old the latest
 * signed checkpoint is. A log whose checkpoints stop advancing while events arrive is a sealer
 * that stopped: alert on the age, not on one slow round.
 */
export async function collectAuditMetrics(ctx: Context, registry: Registry): Promise<void> {
  const db = ctx.storage.db;
  const now = ctx.clock.now();
  const [checkpoint, sealed] = await Promise.all([
    db.selectFrom('audit_checkpoints').select(['time', 'tree_size', 'last_seq']).orderBy('tree_size', 'desc').limit(1).executeTakeFirst(),
    db.selectFrom('audit_leaves').select((eb) => eb.fn.max<number>('event_seq').as('seq')).executeTakeFirst(),
  ]);
  const after = Number(sealed?.seq ?? 0);
  const unsealed = await db
    .selectFrom('audit_events')
    .select((eb) => [eb.fn.countAll<number>().as('n'), eb.fn.min<number>('time').as('oldest')])
    .where('seq', '>', after)
    .executeTakeFirst();
  new Gauge({ name: 'clearance_audit_seal_lag_events', help: 'Audit events recorded but not yet sealed into the Merkle tree.', registers: [registry] }).set(Number(unsealed?.n ?? 0));
  new Gauge({ name: 'clearance_audit_seal_lag_seconds', help: 'Age of the oldest audit event not yet sealed (0 when everything is sealed).', registers: [registry] }).set(
    unsealed?.oldest === null || unsealed?.oldest === undefined ? 0 : Math.max(0, (now - Number(unsealed.oldest)) / 1000),
  );
  const age = new Gauge({ name: 'clearance_audit_last_checkpoint_age_seconds', help: 'Age of the latest signed checkpoint (absent before the first).', registers: [registry] });
  if (checkpoint) age.set(Math.max(0, (now - Number(checkpoint.time)) / 1000));
  new Gauge({ name: 'clearance_audit_tree_size', help: 'Leaves in the latest signed checkpoint.', registers: [registry] }).set(Number(checkpoint?.tree_size ?? 0));
}
