import { ping } from '../../storage/database.ts';
import type { Endpoint } from '../endpoint.ts';

/**
 * Liveness (`/healthz`: the process answers) and readiness (`/readyz`: the node is not draining,
 * nothing it requires is missing — such as the master key the database seals with (docs/keys.md) —
 * and the database answers within CLEARANCE_READY_TIMEOUT_MS; a database that hangs is as unready
 * as one that is down).
 */
export const health: Endpoint = {
  register(app, ctx) {
    app.get('/healthz', async () => ({ status: 'ok' }));
    app.get('/readyz', async (_request, reply) => {
      // Draining (SIGTERM): out of the load balancer at once, while in-flight work finishes.
      if (ctx.readiness.draining) return reply.code(503).send({ status: 'unavailable', reason: 'draining' });
      const problem = ctx.readiness.problem();
      if (problem) return reply.code(503).send({ status: 'unavailable', reason: problem });
      if (await ping(ctx.storage, ctx.config.readyTimeoutMs)) return { status: 'ready' };
      return reply.code(503).send({ status: 'unavailable', reason: 'database unreachable' });
    });
  },
};
