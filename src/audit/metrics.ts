import { Gauge, type Registry } from 'prom-client';
import type { Context } from '../context.ts';
import { sealState } from './activity.ts';

/**
 * The audit log's health at scrape time (docs/operations.md "Metrics"), read from the database so
 * every node reports the same: how far sealing lags behind recording, and how old the latest
 * signed checkpoint is — the seal state the dashboard and the log's status show (activity.ts). A
 * log whose checkpoints stop advancing while events arrive is a sealer that stopped: alert on the
 * age, not on one slow round.
 */
export async function collectAuditMetrics(ctx: Context, registry: Registry): Promise<void> {
  const now = ctx.clock.now();
  const seal = await sealState(ctx.storage.db, now);
  new Gauge({ name: 'clearance_audit_seal_lag_events', help: 'Audit events recorded but not yet sealed into the Merkle tree.', registers: [registry] }).set(seal.unsealed);
  new Gauge({ name: 'clearance_audit_seal_lag_seconds', help: 'Age of the oldest audit event not yet sealed (0 when everything is sealed).', registers: [registry] }).set(seal.lag_ms / 1000);
  const age = new Gauge({ name: 'clearance_audit_last_checkpoint_age_seconds', help: 'Age of the latest signed checkpoint (absent before the first).', registers: [registry] });
  if (seal.last_checkpoint_time !== null) age.set(Math.max(0, (now - seal.last_checkpoint_time) / 1000));
  new Gauge({ name: 'clearance_audit_tree_size', help: 'Leaves in the latest signed checkpoint.', registers: [registry] }).set(seal.tree_size);
}
