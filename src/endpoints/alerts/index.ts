import { adminOperation } from '../../admin/authorize.ts';
import { queryParams, text } from '../../http/api-operation.ts';
import { OAuthError } from '../../oauth-error.ts';
import { deliveriesOf } from '../../signals/delivery.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';

/**
 * GET /admin/alerts (admin:read; docs/recovery.md "Alerts"): the alert outbox, newest first
 * (`?limit=`, 1 to 500, default 100; `?type=` one alert type; each at most once, else 400
 * invalid_request), each alert with the delivery to each
 * webhook: status (pending, delivered, failed), attempts, next attempt, last HTTP status or error.
 */
export const adminAlerts: Endpoint = {
  register(app, ctx) {
    const base = `${issuerPath(ctx.config.issuer)}/admin/alerts`;
    app.get<{ Querystring: { limit?: unknown; type?: unknown } }>(base, adminOperation(ctx, 'admin:read', {
      tag: 'risk',
      summary: 'List the alert outbox, newest first, with the delivery to each webhook',
      querystring: queryParams({
        limit: { type: 'string', pattern: '^[0-9]{1,3}$', description: 'how many, 1 to 500 (default 100)' },
        type: text('one alert type', 64),
      }),
    }), async (request) => {
      // Each parameter at most once: a repeated one arrives as an array and is refused.
      const { limit: givenLimit, type } = request.query;
      if ((givenLimit !== undefined && typeof givenLimit !== 'string') || !/^[0-9]{1,3}$/.test(givenLimit ?? '100')) throw new OAuthError('invalid_request', 'limit must be given once, as an integer from 1 to 500');
      const limit = givenLimit === undefined ? 100 : Number(givenLimit);
      if (!Number.isInteger(limit) || limit < 1 || limit > 500) throw new OAuthError('invalid_request', 'limit must be an integer from 1 to 500');
      if (type !== undefined && (typeof type !== 'string' || type.length === 0 || type.length > 64)) throw new OAuthError('invalid_request', 'type must be given once, as one alert type');
      let query = ctx.storage.db.selectFrom('alerts').selectAll();
      if (type !== undefined) query = query.where('type', '=', type);
      const rows = await query.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(limit).execute();
      const deliveries = await deliveriesOf(ctx, rows.map((r) => r.id));
      return {
        alerts: rows.map((row) => ({
          id: row.id,
          type: row.type,
          subject: row.subject,
          data: JSON.parse(row.data) as unknown,
          created_at: Number(row.created_at),
          deliveries: deliveries
            .filter((d) => d.alertId === row.id)
            .map((d) => ({ webhook: d.webhookId, status: d.status, attempts: d.attempts, next_attempt_at: d.nextAttemptAt, last_status: d.lastStatus ?? null, last_error: d.lastError ?? null, delivered_at: d.deliveredAt ?? null })),
        })),
      };
    });
  },
};
