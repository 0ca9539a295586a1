import type { onResponseHookHandler } from 'fastify';
import { Counter, Histogram } from 'prom-client';
import { metricsRegistry } from '../metrics.ts';

/**
 * Requests by route, method and status class, and their latency (docs/operations.md "Metrics").
 * The route is the one fastify matched, as registered (`/admin/users/:username`, never the URL a
 * caller sent: the label set stays bounded), below the issuer's path; `unmatched` for a 404 of the
 * router. A request adds 1 to a plain number (prom-client's own increment hashes its labels each
 * time) and observes its latency; the counter reads the numbers when scraped.
 */
const counts = new Map<string, { labels: { route: string; method: string; status: string }; n: number; time: Histogram.Internal<string> }>();

new Counter({
  name: 'clearance_http_requests_total',
  help: 'HTTP requests answered, by route (as registered), method and status class.',
  labelNames: ['route', 'method', 'status'],
  registers: [metricsRegistry],
  collect() {
    this.reset();
    for (const { labels, n } of counts.values()) this.inc(labels, n);
  },
});

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
    let entry = counts.get(key);
    if (!entry) counts.set(key, (entry = { labels: { route, method: request.method, status }, n: 0, time: duration.labels(route, request.method) }));
    entry.n++;
    entry.time.observe(reply.elapsedTime / 1000);
    done();
  };
}
