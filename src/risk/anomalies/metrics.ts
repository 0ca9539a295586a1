import { Counter, Gauge, type Registry } from 'prom-client';
import type { Context } from '../../context.ts';
import { anomalyClasses, anomalyReactions } from './settings.ts';

/**
 * The anomaly metrics (docs/operations.md "Metrics"), read from the database at each scrape: the
 * same on every node, nothing lost at a restart. Every class × reaction is reported, zero included.
 * - `clearance_risk_anomalies_total{class,reaction}`: anomalies raised (the rows are kept);
 * - `clearance_risk_anomalies_open{class,reaction}`: anomalies not yet resolved;
 * - `clearance_risk_suspensions_total{principal_type}`: suspensions ever made;
 * - `clearance_risk_suspensions_active{principal_type}`: principals suspended now.
 */
export async function collectAnomalyMetrics(ctx: Context, registry: Registry): Promise<void> {
  const db = ctx.storage.db;
  const [anomalies, suspensions] = await Promise.all([
    db.selectFrom('risk_anomalies').select((eb) => ['class', 'reaction', 'status', eb.fn.countAll<number>().as('n')]).groupBy(['class', 'reaction', 'status']).execute(),
    db
      .selectFrom('risk_suspensions')
      .select((eb) => ['principal_type', eb.fn.countAll<number>().as('n'), eb.fn.count<number>('reinstated_at').as('reinstated')])
      .groupBy('principal_type')
      .execute(),
  ]);
  const total = new Counter({ name: 'clearance_risk_anomalies_total', help: 'Anomalies raised against principals\' baselines, by class and reaction.', labelNames: ['class', 'reaction'], registers: [registry] });
  const open = new Gauge({ name: 'clearance_risk_anomalies_open', help: 'Anomalies not yet resolved by an administrator, by class and reaction.', labelNames: ['class', 'reaction'], registers: [registry] });
  for (const kind of anomalyClasses) {
    for (const reaction of anomalyReactions) {
      const rows = anomalies.filter((r) => r.class === kind && r.reaction === reaction);
      total.inc({ class: kind, reaction }, rows.reduce((sum, r) => sum + Number(r.n), 0));
      open.set({ class: kind, reaction }, rows.filter((r) => r.status === 'open').reduce((sum, r) => sum + Number(r.n), 0));
    }
  }
  const suspended = new Counter({ name: 'clearance_risk_suspensions_total', help: 'Principals suspended pending review by an anomaly\'s reaction.', labelNames: ['principal_type'], registers: [registry] });
  const active = new Gauge({ name: 'clearance_risk_suspensions_active', help: 'Suspensions in force (not yet reinstated).', labelNames: ['principal_type'], registers: [registry] });
  for (const type of ['User', 'Client']) {
    const row = suspensions.find((r) => r.principal_type === type);
    suspended.inc({ principal_type: type }, Number(row?.n ?? 0));
    active.set({ principal_type: type }, Number(row?.n ?? 0) - Number(row?.reinstated ?? 0));
  }
}
