import { sql } from 'kysely';
import { epochSeconds } from '../clock.ts';
import type { Context } from '../context.ts';
import type { Resolver } from '../federation/fetch.ts';
import { alertEvent, signedDelivery } from './cloudevents.ts';
import { postForStatus, type PostOutcome } from './post.ts';
import { hmacKey, listWebhooks, type Webhook } from './webhooks.ts';

/**
 * Delivery of the `alerts` outbox to the webhooks apply declares (docs/recovery.md "Alerts"). One
 * pass:
 * 1. fan-out: a delivery row per alert and matching endpoint (alerts raised since the endpoint was
 *    declared), inserted with `on conflict do nothing` on the (alert, endpoint) key — any number of
 *    workers may do this at once;
 * 2. claim: each due delivery (pending, next attempt reached, not leased) is taken by one
 *    conditional update setting its lease — only the worker whose update changed the row sends it;
 * 3. send: the CloudEvent, signed (./cloudevents.ts), POSTed under the SSRF rules (./post.ts);
 * 4. record, under the lease that sent it: a 2xx is `delivered`; anything else (another status, a
 *    refusal, a timeout) counts an attempt and schedules the next after an exponential back-off
 *    (base × 2^(attempts−1), capped), until the last attempt makes it `failed`. A worker that dies
 *    mid-send leaves a lease that runs out, and the delivery is taken again.
 */
export interface DeliveryOptions {
  /** First retry delay; default 30 s. */
  baseDelayMs?: number;
  /** Longest retry delay; default 1 h. */
  maxDelayMs?: number;
  /** Attempts before `failed`; default 8 (about two hours of trying with the defaults). */
  maxAttempts?: number;
  /** How long a claim holds a delivery; default 60 s (longer than a request's time limit). */
  leaseMs?: number;
  /** Deliveries taken per pass; default 20. */
  batch?: number;
  /** Per request; default 5 s. */
  timeoutMs?: number;
  /** Tests resolve names to chosen addresses. */
  resolve?: Resolver;
}

export interface DeliveryRecord {
  alertId: string;
  webhookId: string;
  status: 'pending' | 'delivered' | 'failed';
  attempts: number;
  nextAttemptAt: number;
  lastStatus?: number;
  lastError?: string;
  deliveredAt?: number;
}

const defaults = { baseDelayMs: 30_000, maxDelayMs: 3_600_000, maxAttempts: 8, leaseMs: 60_000, batch: 20, timeoutMs: 5000 };

/** Only alerts this recent are fanned out (a bound on each pass's scan). */
const fanOutWindowMs = 7 * 24 * 3600_000;

/** The delay before the attempt after `attempts` failed ones. */
export function backoffMs(attempts: number, options: Pick<DeliveryOptions, 'baseDelayMs' | 'maxDelayMs'> = {}): number {
  const base = options.baseDelayMs ?? defaults.baseDelayMs;
  const max = options.maxDelayMs ?? defaults.maxDelayMs;
  return Math.min(max, base * 2 ** Math.max(0, attempts - 1));
}

/** Step 1: a delivery row for each alert and endpoint that wants it and has none yet. */
export async function fanOut(ctx: Pick<Context, 'storage' | 'clock'>, webhooks: readonly Webhook[]): Promise<void> {
  const now = ctx.clock.now();
  for (const webhook of webhooks) {
    let alerts = ctx.storage.db
      .selectFrom('alerts')
      .select([
        'alerts.id as alert_id',
        sql<string>`cast(${webhook.id} as text)`.as('webhook_id'),
        sql<string>`cast(${'pending'} as text)`.as('status'),
        sql<number>`cast(${0} as integer)`.as('attempts'),
        sql<number>`cast(${now} as bigint)`.as('next_attempt_at'),
        sql<number>`cast(${now} as bigint)`.as('created_at'),
        sql<number>`cast(${now} as bigint)`.as('updated_at'),
      ])
      .where('alerts.created_at', '>=', Math.max(webhook.createdAt, now - fanOutWindowMs))
      .where(({ not, exists, selectFrom }) =>
        not(exists(selectFrom('alert_deliveries as d').select('d.alert_id').whereRef('d.alert_id', '=', 'alerts.id').where('d.webhook_id', '=', webhook.id))),
      );
    if (!webhook.types.includes('*')) alerts = alerts.where('alerts.type', 'in', webhook.types);
    await ctx.storage.db
      .insertInto('alert_deliveries')
      .columns(['alert_id', 'webhook_id', 'status', 'attempts', 'next_attempt_at', 'created_at', 'updated_at'])
      .expression(alerts)
      .onConflict((oc) => oc.columns(['alert_id', 'webhook_id']).doNothing())
      .execute();
  }
}

interface Claimed {
  alertId: string;
  webhookId: string;
  attempts: number;
  lease: number;
}

/** Step 2: the due deliveries this worker won, each by one conditional update. */
export async function claimDue(ctx: Pick<Context, 'storage' | 'clock'>, options: DeliveryOptions = {}): Promise<Claimed[]> {
  const now = ctx.clock.now();
  const lease = now + (options.leaseMs ?? defaults.leaseMs);
  const due = await ctx.storage.db
    .selectFrom('alert_deliveries')
    .select(['alert_id', 'webhook_id', 'attempts'])
    .where('status', '=', 'pending')
    .where('next_attempt_at', '<=', now)
    .where((eb) => eb.or([eb('lease_until', 'is', null), eb('lease_until', '<=', now)]))
    .orderBy('next_attempt_at')
    .limit(options.batch ?? defaults.batch)
    .execute();
  const won: Claimed[] = [];
  for (const row of due) {
    const result = await ctx.storage.db
      .updateTable('alert_deliveries')
      .set({ lease_until: lease })
      .where('alert_id', '=', row.alert_id)
      .where('webhook_id', '=', row.webhook_id)
      .where('status', '=', 'pending')
      .where('next_attempt_at', '<=', now)
      .where((eb) => eb.or([eb('lease_until', 'is', null), eb('lease_until', '<=', now)]))
      .executeTakeFirst();
    if (Number(result.numUpdatedRows) === 1) won.push({ alertId: row.alert_id, webhookId: row.webhook_id, attempts: Number(row.attempts), lease });
  }
  return won;
}

/** Steps 3 and 4 for one claimed delivery; the outcome as recorded (undefined when the lease was lost meanwhile). */
async function deliver(ctx: Context, claimed: Claimed, webhook: Webhook | undefined, options: DeliveryOptions): Promise<DeliveryRecord | undefined> {
  let outcome: { status?: number; error?: string };
  const alert = await ctx.storage.db.selectFrom('alerts').selectAll().where('id', '=', claimed.alertId).executeTakeFirst();
  if (!webhook || !alert) {
    outcome = { error: 'the endpoint or the alert no longer exists' };
  } else {
    try {
      const event = alertEvent(ctx.config.issuer, { id: alert.id, type: alert.type, subject: alert.subject, data: JSON.parse(alert.data) as Record<string, unknown>, createdAt: Number(alert.created_at) });
      const signing = webhook.signing === 'hmac' ? { method: 'hmac' as const, key: hmacKey(ctx.identity.factorKeys.master, webhook) } : { method: 'jws' as const };
      const { body, headers } = await signedDelivery(ctx, event, signing, epochSeconds(ctx.clock));
      const answer: PostOutcome = await postForStatus(webhook.url, body, headers, {
        // Production: https, whatever the entry says (apply refuses http there too).
        allowPrivateNetwork: webhook.allowPrivateNetwork && !(ctx.config.mode === 'production' && webhook.url.startsWith('http:')),
        timeoutMs: options.timeoutMs ?? defaults.timeoutMs,
        ...(options.resolve ? { resolve: options.resolve } : {}),
      });
      outcome = answer.status >= 200 && answer.status < 300 ? { status: answer.status } : { status: answer.status, error: `HTTP ${answer.status}` };
    } catch (error) {
      outcome = { error: (error as Error).message.slice(0, 500) };
    }
  }
  const now = ctx.clock.now();
  const attempts = claimed.attempts + 1;
  const delivered = outcome.error === undefined;
  const failed = !delivered && attempts >= (options.maxAttempts ?? defaults.maxAttempts);
  const record: DeliveryRecord = {
    alertId: claimed.alertId,
    webhookId: claimed.webhookId,
    status: delivered ? 'delivered' : failed ? 'failed' : 'pending',
    attempts,
    nextAttemptAt: delivered || failed ? now : now + backoffMs(attempts, options),
    ...(outcome.status !== undefined ? { lastStatus: outcome.status } : {}),
    ...(outcome.error !== undefined ? { lastError: outcome.error } : {}),
    ...(delivered ? { deliveredAt: now } : {}),
  };
  const result = await ctx.storage.db
    .updateTable('alert_deliveries')
    .set({
      status: record.status,
      attempts,
      next_attempt_at: record.nextAttemptAt,
      lease_until: null,
      last_status: record.lastStatus ?? null,
      last_error: record.lastError ?? null,
      updated_at: now,
      delivered_at: record.deliveredAt ?? null,
    })
    .where('alert_id', '=', claimed.alertId)
    .where('webhook_id', '=', claimed.webhookId)
    .where('lease_until', '=', claimed.lease)
    .executeTakeFirst();
  if (Number(result.numUpdatedRows) !== 1) return undefined;
  if (!delivered) ctx.log.warn({ alert: claimed.alertId, webhook: claimed.webhookId, attempts, status: record.status, error: record.lastError }, 'alert delivery failed');
  return record;
}

/** One pass of fan-out, claim, send and record; the outcomes this worker recorded. */
export async function deliverAlerts(ctx: Context, options: DeliveryOptions = {}): Promise<DeliveryRecord[]> {
  const webhooks = await listWebhooks(ctx.storage.db);
  if (webhooks.length === 0) return [];
  await fanOut(ctx, webhooks);
  const claimed = await claimDue(ctx, options);
  const byId = new Map(webhooks.map((w) => [w.id, w]));
  const records = await Promise.all(claimed.map((c) => deliver(ctx, c, byId.get(c.webhookId), options)));
  return records.filter((r): r is DeliveryRecord => r !== undefined);
}

/** Deliveries of some alerts, for the admin API. */
export async function deliveriesOf(ctx: Pick<Context, 'storage'>, alertIds: readonly string[]): Promise<DeliveryRecord[]> {
  if (alertIds.length === 0) return [];
  const rows = await ctx.storage.db.selectFrom('alert_deliveries').selectAll().where('alert_id', 'in', [...alertIds]).orderBy('webhook_id').execute();
  return rows.map((row) => ({
    alertId: row.alert_id,
    webhookId: row.webhook_id,
    status: row.status as DeliveryRecord['status'],
    attempts: Number(row.attempts),
    nextAttemptAt: Number(row.next_attempt_at),
    ...(row.last_status !== null ? { lastStatus: Number(row.last_status) } : {}),
    ...(row.last_error !== null ? { lastError: row.last_error } : {}),
    ...(row.delivered_at !== null ? { deliveredAt: Number(row.delivered_at) } : {}),
  }));
}
