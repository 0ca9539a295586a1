import { requireAdmin } from '../../admin/authorize.ts';
import { collectAuditMetrics } from '../../audit/metrics.ts';
import { collectAtScrape, renderMetrics } from '../../metrics.ts';
import { collectExpiryMetrics } from '../../metrics-expiry.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';

/**
 * GET /metrics (docs/operations.md "Metrics"): the Prometheus text exposition of src/metrics.ts,
 * for a Clearance access token for `<issuer>/admin` with the `metrics:read` scope — the same check
 * as the admin API, and a scope that opens nothing else. Prometheus gets that token by itself with
 * its `oauth2` (client_credentials) scrape setting, so the endpoint can sit on the main listener
 * without trusting the network in front of it. Never cached.
 */
// Facts of the cluster, read from the database at each scrape (src/metrics.ts).
collectAtScrape('audit', collectAuditMetrics);
collectAtScrape('expiry', collectExpiryMetrics);

export const metrics: Endpoint = {
  register(app, ctx) {
    app.get(`${issuerPath(ctx.config.issuer)}/metrics`, { preHandler: requireAdmin(ctx, 'metrics:read') }, async (_request, reply) => {
      const { contentType, body } = await renderMetrics(ctx);
      return reply.header('content-type', contentType).header('cache-control', 'no-store').send(body);
    });
  },
};
