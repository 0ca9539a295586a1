import { adminOperation } from '../../admin/authorize.ts';
import { activityBuckets, activityRange, activitySeries, ActivityRangeError, readActivity } from '../../audit/activity.ts';
import { AuditQueryError, readTime } from '../../audit/query.ts';
import { integerQuery, queryParams } from '../../http/api-operation.ts';
import { OAuthError } from '../../oauth-error.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';

const day = 24 * 3600 * 1000;

/**
 * GET <issuer>/admin/audit/activity?since=&until=&bucket= (audit:read): the dashboard's counts
 * (src/audit/activity.ts) — each series per time bucket, refusals by reason, approvals waiting,
 * the seal's lag. Defaults: the last 24 hours in hours. Counts only, never an event, so unlike a
 * read of events it is not itself recorded (docs/audit.md "audit.read").
 */
export const auditActivity: Endpoint = {
  register(app, ctx) {
    const path = `${issuerPath(ctx.config.issuer)}/admin/audit/activity`;
    app.get<{ Querystring: { since?: string; until?: string; bucket?: string } }>(
      path,
      adminOperation(ctx, 'audit:read', {
        tag: 'audit',
        summary: 'Activity counts for a dashboard: tokens issued and refused over time, refusals by reason, step-ups, anomalies, throttling, approvals waiting, seal lag',
        description: `Series: ${Object.entries(activitySeries).map(([name, types]) => `\`${name}\` (${types.join(', ')})`).join('; ')}.`,
        querystring: queryParams({
          since: 'epoch milliseconds or an ISO 8601 time (default: 24 hours before until), aligned down to the bucket',
          until: 'epoch milliseconds or an ISO 8601 time, exclusive (default: now, inclusive)',
          bucket: { ...integerQuery(`bucket width in seconds: ${activityBuckets.join(', ')} (default 3600)`) },
        }),
      }),
      async (request, reply) => {
        const now = ctx.clock.now();
        const range = (() => {
          try {
            // Until now inclusive (the range's end is exclusive): an event of this very millisecond counts.
            const until = request.query.until === undefined ? now + 1 : readTime('until', request.query.until);
            const since = request.query.since === undefined ? until - day : readTime('since', request.query.since);
            return activityRange({ since, until, bucketSeconds: request.query.bucket === undefined ? 3600 : Number(request.query.bucket) });
          } catch (error) {
            if (error instanceof AuditQueryError || error instanceof ActivityRangeError) throw new OAuthError('invalid_request', error.message);
            throw error;
          }
        })();
        reply.header('cache-control', 'no-store');
        return readActivity(ctx.storage.db, range, now);
      },
    );
  },
};
