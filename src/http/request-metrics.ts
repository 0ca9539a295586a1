import type { onResponseHookHandler } from 'fastify';
import { Histogram } from 'prom-client';
import { hotCounter, metricsRegistry, type HotCount } from '../metrics.ts';

/**
 * Requests by route, method and status class, and their latency (docs/operations.md "Metrics").
 * The route is the one fastify matched, as registered (`/admin/users/:username`, never the URL a
 * caller sent: the label set stays bounded), below the issuer's path; `unmatched` for a 404 of the
 * router. A request adds 1 to a plain number (prom-client's own increment hashes its labels each
 * time) and observes its latency; the counter reads the numbers when scraped.
 */
const requests = hotCounter({ name: 'clearance_http_requests_total', help: 'HTTP requests answered, by route (as registered), method and status class.', labelNames: ['route', 'method', 'status'] });

/** Per route, method and status: its count and its latency histogram's child, found once. */
const entries = new Map<string, { count: HotCount; time: Histogram.Internal<string> }>();

const duration = new Histogram({
  name: 'clearance_http_request_duration_seconds',
  help: 'Time from the request arriving to its response being written, by route and method.',
  labelNames: ['route', 'method'],
  buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
  registers: [metricsRegistry],
});

export function requestMetricsHook(base: string): onResponseHookHandler {
  return (request, reply, done) => {
    const url = request.routeOptions.url;
    const route = url === undefined ? 'unmatched' : url.startsWith(base) ? url.slice(base.length) || '/' : url;
    const status = `${Math.floor(reply.statusCode / 100)}xx`;
    const key = `${route} ${request.method} ${status}`;
    let entry = entries.get(key);
    if (!entry) entries.set(key, (entry = { count: requests({ route, method: request.method, status }), time: duration.labels(route, request.method) }));
    entry.count.n++;
    entry.time.observe(reply.elapsedTime / 1000);
    done();
  };
}
