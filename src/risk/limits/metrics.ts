import { Counter } from 'prom-client';
import { metricsRegistry } from '../../metrics.ts';

/**
 * Requests refused with 429 (docs/operations.md "Metrics"), by what refused them: a rate limit
 * (`address`, `endpoint`, `client`, `person`: src/risk/limits) or a failure throttle
 * (`client_auth_failures`: too many failed client authentications).
 */
export const rateLimitRejections = new Counter({
  name: 'clearance_rate_limit_rejections_total',
  help: 'Requests refused with 429, by limit: address, endpoint, client, person, or client_auth_failures (the failure throttle).',
  labelNames: ['limit'],
  registers: [metricsRegistry],
});
