import { randomUUID } from 'node:crypto';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Context } from '../context.ts';
import { OAuthError } from '../oauth-error.ts';
import type { Endpoint } from '../endpoints/endpoint.ts';
import { registerDiscovery } from '../endpoints/discovery/index.ts';
import { health } from '../endpoints/health/index.ts';
import { jwks } from '../endpoints/jwks/index.ts';
import { errorHandler, sendError } from './errors.ts';
import { FormParameters } from '../parameters.ts';
import { securityHeaders } from './security-headers.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /** Set for application/x-www-form-urlencoded bodies. */
    form?: FormParameters;
  }
}

/** Every endpoint the server exposes, in registration order. */
export const endpoints: readonly Endpoint[] = [health, jwks];

/** Builds the HTTP application (not listening); `inject` it in tests or `listen` it in the server. */
export function buildApp(ctx: Context): FastifyInstance {
  const app = Fastify({
    loggerInstance: ctx.log as FastifyBaseLogger,
    genReqId: () => randomUUID(),
    bodyLimit: ctx.config.bodyLimit,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
  });

  app.removeContentTypeParser('text/plain');
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (request, body, done) => {
    request.form = new FormParameters(body as string);
    done(null, {});
  });

  app.addHook('onSend', securityHeaders);
  app.setErrorHandler(errorHandler);
  app.setNotFoundHandler((request, reply) =>
    sendError(reply, new OAuthError('not_found', `no endpoint at ${request.method} ${request.url.split('?')[0]}`)),
  );

  const metadata: Record<string, unknown> = {};
  for (const endpoint of endpoints) {
    endpoint.register(app, ctx);
    Object.assign(metadata, endpoint.metadata?.(ctx));
  }
  registerDiscovery(app, ctx, metadata);
  return app;
}
