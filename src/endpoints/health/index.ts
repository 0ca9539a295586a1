import { ping } from '../../storage/database.ts';
import type { Endpoint } from '../endpoint.ts';

/**
 * Liveness (`/healthz`: the process answers) and readiness (`/readyz`: the database answers
 * within CLEARANCE_READY_TIMEOUT_MS; a database that hangs is as unready as one that is down).
 */
export const health: Endpoint = {
  register(app, ctx) {
    app.get('/healthz', async () => ({ status: 'ok' }));
    app.get('/readyz', async (_request, reply) => {
      if (await ping(ctx.storage, ctx.config.readyTimeoutMs)) return { status: 'ready' };
      return reply.code(503).send({ status: 'unavailable', reason: 'database unreachable' });
    });
  },
};
