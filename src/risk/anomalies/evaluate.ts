import { randomUUID } from 'node:crypto';
import { sql, type Kysely, type Transaction } from 'kysely';
import type { AuditEvent } from '../../audit/events.ts';
import type { Context } from '../../context.ts';
import { alertInsert } from '../../signals/alerts.ts';
import type { Database } from '../../storage/schema.ts';
import type { RiskSettings } from '../settings.ts';
import { defaultFlushEveryMs, principalKey, type ActivePrincipal } from './activity.ts';
import { expectedValue, fold, isAnomalous, observedValue, type Baseline, type WindowActivity } from './baselines.ts';
import { bumpReactions } from './reactions.ts';
import { anomalyClasses, type AnomalyClass, type AnomalySettings } from './settings.ts';
import { anomalyFromRow, principalFields, suspendIn, type Anomaly } from './store.ts';

/**
 * The evaluation of closed windows (docs/risk.md "Baselines and anomalies"), run by the signal
 * service's periodic pass on every node (src/signals/service.ts). A window is closed
 * `closeAfterMs` after its end, when every node has flushed its counts for it. Each closed window
 * is evaluated exactly once across nodes, in order:
 * 1. claim: a `risk_windows` row inserted (or an expired lease retaken) with a lease — a node that
 *    finds the next window leased by another stops there, so windows are judged in order;
 * 2. in ONE transaction: every node's counts of the window summed per principal; each metric of
 *    each principal active in it judged against its baseline (./baselines.ts: enough history, at
 *    least velocityFactor × the baseline and velocityMinimum); an anomaly raised (row,
 *    `risk.anomaly` audit event, `risk.anomaly` alert, and its class's reaction) — or, while one of
 *    the same class is open for the principal, that one extended; a normal window folded into the
 *    baseline (an anomalous one never is: a burst does not become the norm while it lasts); the
 *    window marked evaluated under the lease (a lease lost meanwhile rolls everything back).
 * A node that dies mid-evaluation leaves a lease that runs out; another takes the window again.
 */

/** A window is evaluated this long after its end: every node has flushed its counts by then. */
export const closeAfterMs = 3 * defaultFlushEveryMs;
/** How long a claim holds a window. */
export const leaseMs = 60_000;
/** Counts and evaluated windows are kept this long (for inspection), then pruned. */
export const activityRetentionMs = 24 * 3600_000;

export interface EvaluatedWindow {
  windowStart: number;
  windowMs: number;
  principals: number;
  /** Anomalies raised by this window (not those it extended). */
  raised: Anomaly[];
}

/** Evaluates the closed windows not yet evaluated (at most `maxWindows`), oldest first; the ones this node evaluated. */
export async function evaluateClosedWindows(ctx: Context, options: { maxWindows?: number } = {}): Promise<EvaluatedWindow[]> {
  const db = ctx.storage.db;
  const now = ctx.clock.now();
  const risk = await ctx.risk.settings.get();
  if (!risk.enabled) return [];
  const settings = await ctx.risk.anomalySettings.get();
  const cutoff = now - closeAfterMs;
  const last = await db.selectFrom('risk_windows').select((eb) => eb.fn.max('window_start').as('last')).where('evaluated_at', 'is not', null).executeTakeFirst();
  let candidates = db
    .selectFrom('risk_activity')
    .select(['window_start', 'window_ms'])
    .distinct()
    .where('window_start', '<', cutoff)
    .where(sql<number>`window_start + window_ms`, '<=', cutoff);
  if (last?.last !== null && last?.last !== undefined) candidates = candidates.where('window_start', '>', Number(last.last));
  const windows = await candidates.orderBy('window_start').orderBy('window_ms').limit(options.maxWindows ?? 12).execute();
  const evaluated: EvaluatedWindow[] = [];
  for (const row of windows) {
    const window = { start: Number(row.window_start), ms: Number(row.window_ms) };
    const claim = await claimWindow(db, window, now);
    if (claim === 'evaluated') continue;
    if (claim === 'taken') break;
    evaluated.push(await evaluateWindow(ctx, window, claim.lease, risk, settings));
  }
  if (evaluated.some((w) => w.raised.some((a) => a.reaction !== 'alert'))) ctx.risk.reactions.invalidate();
  // A client suspended had its tokens cut off (./store.ts suspendIn): this node sees it at once.
  if (evaluated.some((w) => w.raised.some((a) => a.reaction === 'suspend' && a.principal.type === 'Client'))) ctx.clients.invalidate();
  return evaluated;
}

/** Forgets counts and evaluated windows older than the retention; how many counts. */
export async function pruneActivity(db: Kysely<Database>, now: number): Promise<number> {
  const before = now - activityRetentionMs;
  const pruned = await db.deleteFrom('risk_activity').where('window_start', '<', before).executeTakeFirst();
  await db.deleteFrom('risk_windows').where('window_start', '<', before).where('evaluated_at', 'is not', null).execute();
  return Number(pruned.numDeletedRows);
}

type Claim = { lease: number } | 'evaluated' | 'taken';

async function claimWindow(db: Kysely<Database>, window: { start: number; ms: number }, now: number): Promise<Claim> {
  const lease = now + leaseMs;
  const inserted = await db
    .insertInto('risk_windows')
    .values({ window_start: window.start, window_ms: window.ms, lease_until: lease, evaluated_at: null, principals: null, anomalies: null })
    .onConflict((oc) => oc.columns(['window_start', 'window_ms']).doNothing())
    .returning('window_start')
    .execute();
  if (inserted.length === 1) return { lease };
  const retaken = await db
    .updateTable('risk_windows')
    .set({ lease_until: lease })
    .where('window_start', '=', window.start)
    .where('window_ms', '=', window.ms)
    .where('evaluated_at', 'is', null)
    .where('lease_until', '<=', now)
    .returning('window_start')
    .execute();
  if (retaken.length === 1) return { lease };
  const row = await db.selectFrom('risk_windows').select('evaluated_at').where('window_start', '=', window.start).where('window_ms', '=', window.ms).executeTakeFirst();
  return row?.evaluated_at !== null && row?.evaluated_at !== undefined ? 'evaluated' : 'taken';
}

class LeaseLost extends Error {}

interface Active {
  principal: ActivePrincipal;
  activity: WindowActivity;
}

async function evaluateWindow(ctx: Context, window: { start: number; ms: number }, lease: number, risk: RiskSettings, settings: AnomalySettings): Promise<EvaluatedWindow> {
  try {
    return await ctx.audit.recordWith(async (trx) => {
      const now = ctx.clock.now();
      const active = await windowActivity(trx, window);
      const principals = [...active.values()].map((a) => a.principal);
      const baselines = await baselinesOf(trx, principals);
      const open = await openAnomaliesOf(trx, principals);
      const suspended = await suspendedOf(trx, principals);
      const events: AuditEvent[] = [];
      const raised: Anomaly[] = [];
      const folded: { principal: ActivePrincipal; kind: AnomalyClass; baseline: Baseline }[] = [];
      for (const [key, { principal, activity }] of active) {
        for (const kind of anomalyClasses) {
          const observed = observedValue(activity, kind);
          if (observed === 0) continue; // not active for this metric: the baseline stays as it was
          const baseline = baselines.get(`${key}|${kind}`);
          const thresholds = { factor: risk.velocityFactor, minimum: kind === 'audience_spread' ? settings.audienceMinimum : risk.velocityMinimum, minimumHistory: settings.minimumHistory };
          if (!isAnomalous(observed, baseline, kind, window.ms, thresholds)) {
            folded.push({ principal, kind, baseline: fold(baseline, observed, kind, window, settings.baselineWindows) });
            continue;
          }
          const existing = open.get(`${key}|${kind}`);
          if (existing) {
            await trx
              .updateTable('risk_anomalies')
              .set((eb) => ({ last_window_start: window.start, windows: eb('windows', '+', 1), observed: Math.max(existing.observed, observed), updated_at: now }))
              .where('id', '=', existing.id)
              .execute();
            continue;
          }
          const anomaly = await raise(trx, ctx, { principal, kind, window, observed, expected: expectedValue(baseline!, kind, window.ms), reaction: settings.reactions[kind], factor: risk.velocityFactor }, events);
          raised.push(anomaly);
          if (anomaly.reaction === 'suspend' && !suspended.has(key)) {
            events.push(...(await suspendIn(trx, ctx, principal, anomaly)));
            suspended.add(key);
          }
        }
      }
      await writeBaselines(trx, folded, now);
      const marked = await trx
        .updateTable('risk_windows')
        .set({ evaluated_at: now, lease_until: null, principals: active.size, anomalies: raised.length })
        .where('window_start', '=', window.start)
        .where('window_ms', '=', window.ms)
        .where('lease_until', '=', lease)
        .where('evaluated_at', 'is', null)
        .executeTakeFirst();
      if (Number(marked.numUpdatedRows) !== 1) throw new LeaseLost();
      return { value: { windowStart: window.start, windowMs: window.ms, principals: active.size, raised }, events };
    });
  } catch (error) {
    if (error instanceof LeaseLost) return { windowStart: window.start, windowMs: window.ms, principals: 0, raised: [] };
    throw error;
  }
}

/** An anomaly raised: its row, `risk.anomaly` event (pushed to `events`) and alert; a step-up one bumps the reactions. */
async function raise(
  trx: Transaction<Database>,
  ctx: Context,
  found: { principal: ActivePrincipal; kind: AnomalyClass; window: { start: number; ms: number }; observed: number; expected: number; reaction: Anomaly['reaction']; factor: number },
  events: AuditEvent[],
): Promise<Anomaly> {
  const now = ctx.clock.now();
  const row: Database['risk_anomalies'] = {
    id: randomUUID(),
    principal_type: found.principal.type,
    principal_id: found.principal.id,
    class: found.kind,
    window_start: found.window.start,
    window_ms: found.window.ms,
    last_window_start: found.window.start,
    windows: 1,
    observed: found.observed,
    baseline: Math.round(found.expected * 100) / 100,
    reaction: found.reaction,
    status: 'open',
    created_at: now,
    updated_at: now,
    resolved_by: null,
    resolved_at: null,
    resolution_note: null,
  };
  await trx.insertInto('risk_anomalies').values(row).execute();
  const facts = {
    anomaly_id: row.id,
    class: found.kind,
    principal_type: found.principal.type,
    principal_id: found.principal.id,
    window_start: found.window.start,
    window_end: found.window.start + found.window.ms,
    observed: found.observed,
    baseline: row.baseline,
    factor: found.factor,
    reaction: found.reaction,
  };
  await alertInsert(trx, ctx.clock, { type: 'risk.anomaly', subject: found.principal.id, data: facts }).execute();
  if (found.reaction === 'step_up') await bumpReactions(trx);
  events.push({ type: 'risk.anomaly', actor: 'clearance', ...principalFields(found.principal), details: facts });
  return anomalyFromRow(row);
}

/** Every node's counts of the window, summed per principal (distinct audiences: the union). */
async function windowActivity(trx: Transaction<Database>, window: { start: number; ms: number }): Promise<Map<string, Active>> {
  const rows = await trx.selectFrom('risk_activity').selectAll().where('window_start', '=', window.start).where('window_ms', '=', window.ms).execute();
  const byPrincipal = new Map<string, Active & { audiences: Set<string> }>();
  for (const row of rows) {
    if (row.principal_type !== 'User' && row.principal_type !== 'Client') continue;
    const principal: ActivePrincipal = { type: row.principal_type, id: row.principal_id };
    const key = principalKey(principal);
    let entry = byPrincipal.get(key);
    if (!entry) {
      entry = { principal, activity: { tokens: 0, logins: 0, audiences: 0 }, audiences: new Set() };
      byPrincipal.set(key, entry);
    }
    entry.activity.tokens += Number(row.tokens);
    entry.activity.logins += Number(row.logins);
    for (const audience of JSON.parse(row.audiences) as string[]) entry.audiences.add(audience);
    entry.activity.audiences = entry.audiences.size;
  }
  return byPrincipal;
}

/** Rows of a per-principal table for these principals, read by principal id in chunks, kept when the type matches too. */
async function forPrincipals<R extends { principal_type: string; principal_id: string }>(principals: ActivePrincipal[], read: (ids: string[]) => Promise<R[]>): Promise<R[]> {
  const wanted = new Set(principals.map(principalKey));
  const rows: R[] = [];
  const ids = [...new Set(principals.map((p) => p.id))];
  for (let i = 0; i < ids.length; i += 500) rows.push(...(await read(ids.slice(i, i + 500))));
  return rows.filter((r) => wanted.has(`${r.principal_type}:${r.principal_id}`));
}

async function baselinesOf(trx: Transaction<Database>, principals: ActivePrincipal[]): Promise<Map<string, Baseline>> {
  const rows = await forPrincipals(principals, (ids) => trx.selectFrom('risk_baselines').selectAll().where('principal_id', 'in', ids).execute());
  return new Map(rows.map((r) => [`${r.principal_type}:${r.principal_id}|${r.metric}`, { ewma: Number(r.ewma), windows: Number(r.windows), windowMs: Number(r.window_ms), lastWindow: Number(r.last_window) }]));
}

async function openAnomaliesOf(trx: Transaction<Database>, principals: ActivePrincipal[]): Promise<Map<string, { id: string; observed: number }>> {
  const rows = await forPrincipals(principals, (ids) => trx.selectFrom('risk_anomalies').select(['id', 'principal_type', 'principal_id', 'class', 'observed']).where('status', '=', 'open').where('principal_id', 'in', ids).execute());
  return new Map(rows.map((r) => [`${r.principal_type}:${r.principal_id}|${r.class}`, { id: r.id, observed: Number(r.observed) }]));
}

async function suspendedOf(trx: Transaction<Database>, principals: ActivePrincipal[]): Promise<Set<string>> {
  const rows = await forPrincipals(principals, (ids) => trx.selectFrom('risk_suspensions').select(['principal_type', 'principal_id']).where('reinstated_at', 'is', null).where('principal_id', 'in', ids).execute());
  return new Set(rows.map((r) => `${r.principal_type}:${r.principal_id}`));
}

async function writeBaselines(trx: Transaction<Database>, folded: { principal: ActivePrincipal; kind: AnomalyClass; baseline: Baseline }[], now: number): Promise<void> {
  for (let i = 0; i < folded.length; i += 100) {
    const rows = folded.slice(i, i + 100).map(({ principal, kind, baseline }) => ({
      principal_type: principal.type,
      principal_id: principal.id,
      metric: kind,
      ewma: baseline.ewma,
      windows: baseline.windows,
      window_ms: baseline.windowMs,
      last_window: baseline.lastWindow,
      updated_at: now,
    }));
    await trx
      .insertInto('risk_baselines')
      .values(rows)
      .onConflict((oc) =>
        oc.columns(['principal_type', 'principal_id', 'metric']).doUpdateSet((eb) => ({
          ewma: eb.ref('excluded.ewma'),
          windows: eb.ref('excluded.windows'),
          window_ms: eb.ref('excluded.window_ms'),
          last_window: eb.ref('excluded.last_window'),
          updated_at: eb.ref('excluded.updated_at'),
        })),
      )
      .execute();
  }
}
