import type { onResponseHookHandler } from 'fastify';
import { Counter, Histogram } from 'prom-client';
import { metricsRegistry } from '../metrics.ts';

/**
 * Requests by route, method and status class, and their latency (docs/operations.md "Metrics").
 * The route is the one fastify matched, as registered (`/admin/users/:username`, never the URL a
 * caller sent: the label set stays bounded), below the issuer's path; `unmatched` for a 404 of the
 * router. Each label combination's child is made once and kept: a request costs two increments.
 */
const requests = new Counter({
  name: 'clearance_http_requests_total',
  help: 'HTTP requests answered, by route (as registered), method and status class.',
  labelNames: ['route', 'method', 'status'],
  registers: [metricsRegistry],
});

const duration = new Histogram({
  name: 'clearance_http_request_duration_seconds',
  help: 'Time from the request arriving to its response being written, by route and method.',
  labelNames: ['route', 'method'],
  buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
  registers: [metricsRegistry],
});

const children = new Map<string, { count: Counter.Internal; time: Histogram.Internal<string> }>();

export function requestMetricsHook(base: string): onResponseHookHandler {
  return (request, reply, done) => {
    const url = request.routeOptions.url;
    const route = url === undefined ? 'unmatched' : url.startsWith(base) ? url.slice(base.length) || '/' : url;
    const status = `${Math.floor(reply.statusCode / 100)}xx`;
    const key = `${route} ${request.method} ${status}`;
    let child = children.get(key);
    if (!child) {
      child = { count: requests.labels(route, request.method, status), time: duration.labels(route, request.method) };
      children.set(key, child);
    }
    child.count.inc();
    child.time.observe(reply.elapsedTime / 1000);
    done();
  };
}
