import { sql, type Kysely } from 'kysely';
import type { Database } from '../storage/schema.ts';
import { isPostgres } from './dialect.ts';
import { latestCheckpointCursor } from './query.ts';

/**
 * What the console's dashboard draws (docs/console.md "Dashboard"), counted from the audit log —
 * the one record every node writes to — rather than from one process's metrics: tokens issued and
 * refused over time, refusals by reason, step-ups, anomalies, throttling, approvals waiting, and how
 * far sealing is behind. Each series is a sum of audit event types.
 */
export const activitySeries = {
  issued: ['token.issued', 'token.exchanged'],
  refused: ['token.refused', 'exchange.refused', 'assertion.refused'],
  policy_denied: ['policy.denied'],
  step_ups: ['step_up.requested'],
  anomalies: ['risk.anomaly'],
  throttled: ['client.throttled', 'user.locked'],
} as const satisfies Record<string, readonly string[]>;
export type ActivitySeries = keyof typeof activitySeries;

/** Bucket widths a dashboard may ask for, in seconds (a minute to a day). */
export const activityBuckets = [60, 300, 900, 3600, 21600, 86400] as const;
/** At most this many buckets in one answer: a range and width that would need more are refused. */
export const maxActivityBuckets = 400;

export interface ActivityRange {
  /** Epoch ms, inclusive; aligned down to the bucket. */
  since: number;
  /** Epoch ms, exclusive. */
  until: number;
  bucketSeconds: (typeof activityBuckets)[number];
}

export interface Activity {
  since: number;
  until: number;
  bucket_seconds: number;
  /** Start (epoch ms) of each bucket, oldest first. */
  buckets: number[];
  /** Per series, its count in each bucket. */
  series: Record<ActivitySeries, number[]>;
  /** Refusals in the range (the `refused` series) by reason code, most first. */
  refusals_by_reason: { reason: string; count: number }[];
  /**
   * Refusals beyond a source's limit (20 a minute per source and node), recorded not one by one but
   * as counts in `audit.refusals_suppressed` summaries (docs/audit.md "Refusals"): their sum per
   * bucket, on top of the `refused` series.
   */
  refusals_suppressed: number[];
  /** Approval requests still waiting for their approvers now (not expired). */
  approvals_waiting: number;
  seal: SealState;
}

export interface SealState {
  /** Leaves in the latest signed checkpoint (0 before the first). */
  tree_size: number;
  /** Epoch ms of the latest checkpoint, null before the first. */
  last_checkpoint_time: number | null;
  /** Events recorded but not in a checkpoint yet. */
  unsealed: number;
  /** Age in ms of the oldest unsealed event (0 when none waits): how far sealing is behind. */
  lag_ms: number;
}

export class ActivityRangeError extends Error {}

/** The range a dashboard asked for, checked: a known bucket width, since before until, not too many buckets. */
export function activityRange(input: { since: number; until: number; bucketSeconds: number }): ActivityRange {
  const bucketSeconds = activityBuckets.find((b) => b === input.bucketSeconds);
  if (bucketSeconds === undefined) throw new ActivityRangeError(`bucket must be one of ${activityBuckets.join(', ')} (seconds)`);
  const width = bucketSeconds * 1000;
  if (input.until <= input.since) throw new ActivityRangeError('until must be after since');
  const since = Math.floor(input.since / width) * width;
  if (Math.ceil((input.until - since) / width) > maxActivityBuckets) throw new ActivityRangeError(`at most ${maxActivityBuckets} buckets: widen the bucket or narrow the range`);
  return { since, until: input.until, bucketSeconds };
}

/** Counts the range's activity. Reads only; two grouped queries over the time index and two small ones. */
export async function readActivity(db: Kysely<Database>, range: ActivityRange, now: number): Promise<Activity> {
  const width = range.bucketSeconds * 1000;
  const count = Math.ceil((range.until - range.since) / width);
  const buckets = Array.from({ length: count }, (_, i) => range.since + i * width);
  const types = Object.values(activitySeries).flat();
  const inRange = db
    .selectFrom('audit_events')
    .where('time', '>=', range.since)
    .where('time', '<', range.until);

  // Literals, not parameters: PostgreSQL groups by an expression only when the select list has the
  // same text, and two parameters are two texts. Both are integers computed here.
  const bucketOf = sql<number>`(time - ${sql.lit(range.since)}) / ${sql.lit(width)}`;
  const byBucket = await inRange
    .select(['type', bucketOf.as('bucket'), (eb) => eb.fn.countAll<number>().as('n')])
    .where('type', 'in', types)
    .groupBy(['type', bucketOf])
    .execute();
  const series = Object.fromEntries(Object.keys(activitySeries).map((name) => [name, new Array<number>(count).fill(0)])) as Record<ActivitySeries, number[]>;
  for (const row of byBucket) {
    const index = Math.floor(Number(row.bucket));
    for (const [name, members] of Object.entries(activitySeries) as [ActivitySeries, readonly string[]][]) {
      if (members.includes(row.type) && index >= 0 && index < count) series[name][index]! += Number(row.n);
    }
  }

  // The reason code is inside the event (details.reason, docs/audit.md "Refusals").
  const reason = isPostgres(db) ? sql<string | null>`(event::jsonb -> 'details' ->> 'reason')` : sql<string | null>`json_extract(event, '$.details.reason')`;
  const reasons = await inRange
    .select([reason.as('reason'), (eb) => eb.fn.countAll<number>().as('n')])
    .where('type', 'in', activitySeries.refused)
    .groupBy(reason)
    .execute();

  // Summaries of refusals over a source's limit: their counts, per bucket.
  const summed = isPostgres(db) ? sql<number>`sum(((event::jsonb) -> 'details' ->> 'count')::bigint)` : sql<number>`sum(json_extract(event, '$.details.count'))`;
  const suppressedRows = await inRange
    .select([bucketOf.as('bucket'), summed.as('n')])
    .where('type', '=', 'audit.refusals_suppressed')
    .groupBy(bucketOf)
    .execute();
  const suppressed = new Array<number>(buckets.length).fill(0);
  for (const row of suppressedRows) {
    const index = Math.floor(Number(row.bucket));
    if (index >= 0 && index < buckets.length) suppressed[index] = Number(row.n ?? 0);
  }

  const waiting = await db
    .selectFrom('approval_requests')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('status', '=', 'pending')
    .where('expires_at', '>', now)
    .executeTakeFirst();

  return {
    since: range.since,
    until: range.until,
    bucket_seconds: range.bucketSeconds,
    buckets,
    series,
    refusals_by_reason: reasons
      .map((row) => ({ reason: row.reason ?? 'unstated', count: Number(row.n) }))
      .sort((a, b) => b.count - a.count || a.reason.localeCompare(b.reason)),
    refusals_suppressed: suppressed,
    approvals_waiting: Number(waiting?.n ?? 0),
    seal: await sealState(db, now),
  };
}

/**
 * How far sealing is behind, and the latest checkpoint: one reading for the dashboard, the log's
 * status and the audit metrics. The sealer moves the tree and its cursor only together with a
 * signed checkpoint (sealer.ts), so what is after the checkpoint's cursor is what is not sealed.
 */
export async function sealState(db: Kysely<Database>, now: number): Promise<SealState> {
  const checkpoint = await latestCheckpointCursor(db);
  const after = checkpoint?.lastSeq ?? 0;
  const unsealed = await db
    .selectFrom('audit_events')
    .select([(eb) => eb.fn.countAll<number>().as('n'), (eb) => eb.fn.min('time').as('oldest')])
    .where('seq', '>', after)
    .executeTakeFirst();
  const oldest = unsealed?.oldest === null || unsealed?.oldest === undefined ? undefined : Number(unsealed.oldest);
  return {
    tree_size: checkpoint?.treeSize ?? 0,
    last_checkpoint_time: checkpoint?.time ?? null,
    unsealed: Number(unsealed?.n ?? 0),
    lag_ms: oldest === undefined ? 0 : Math.max(0, now - oldest),
  };
}
