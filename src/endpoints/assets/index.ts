import { stylesheet } from '../../ui/assets.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';

/**
 * The pages' stylesheet. Pages link it with a content version (`?v=`), so it is cached for a
 * year as immutable; the default CSP of every response (nothing may load) applies to it.
 */
export const assets: Endpoint = {
  register(app, ctx) {
    app.get(`${issuerPath(ctx.config.issuer)}/assets/clearance.css`, async (_request, reply) =>
      reply.header('cache-control', 'public, max-age=31536000, immutable').type('text/css; charset=utf-8').send(stylesheet),
    );
  },
};
