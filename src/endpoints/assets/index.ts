import { passkeyScripts, stylesheet } from '../../ui/assets.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';

/**
 * The pages' stylesheet and the passkey pages' two scripts. Pages link them with a content
 * version (`?v=`), so they are cached for a year as immutable; the default CSP of every response
 * (nothing may load) applies to them, and nosniff makes a browser run a script only from a
 * JavaScript media type.
 */
export const assets: Endpoint = {
  register(app, ctx) {
    const base = issuerPath(ctx.config.issuer);
    app.get(`${base}/assets/clearance.css`, async (_request, reply) =>
      reply.header('cache-control', 'public, max-age=31536000, immutable').type('text/css; charset=utf-8').send(stylesheet),
    );
    for (const script of passkeyScripts) {
      app.get(`${base}${script.path}`, async (_request, reply) =>
        reply.header('cache-control', 'public, max-age=31536000, immutable').type('text/javascript; charset=utf-8').send(script.body),
      );
    }
  },
};
