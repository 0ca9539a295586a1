import type { FastifyReply, FastifyRequest, onRequestHookHandler } from 'fastify';
import type { Context } from '../context.ts';
import { issuerPath } from '../endpoints/endpoint.ts';
import type { LimitRefusal } from '../risk/limits/index.ts';
import { rateLimitedError, rateLimitHeaders } from '../risk/limits/refusal.ts';
import { sendErrorPage } from '../ui/respond.ts';
import { sendError } from './errors.ts';

/** Probes of a load balancer are never limited: a limited readiness probe would take a healthy node out of service. */
const unlimitedRoutes = new Set(['/healthz', '/readyz']);

/**
 * The `onRequest` hook limiting by source address and by endpoint route, before any work (the
 * body is not even read). Callback-style, and synchronous with the in-memory store: an allowed
 * request costs no promise. A refused one is answered here: JSON (src/risk/limits/refusal.ts) to an API caller, the
 * error page to a browser (one that asks for text/html: the interaction, authorization and account
 * pages).
 */
export function rateLimitHook(ctx: Context): onRequestHookHandler {
  const base = issuerPath(ctx.config.issuer);
  const limiter = ctx.risk.limits.limiter;
  return (request, reply, done) => {
    const url = request.routeOptions.url;
    if (url !== undefined && unlimitedRoutes.has(url)) return done();
    // The route's path below the issuer (`/token`, `/interaction/:id/login`), as apply names routes.
    const route = url === undefined ? '(no route)' : url.startsWith(base) ? url.slice(base.length) || '/' : url;
    const decision = limiter.request(request.ip, route);
    if (decision === undefined) return done();
    if (!(decision instanceof Promise)) return void refuse(ctx, request, reply, decision);
    decision.then(
      (refusal) => (refusal ? refuse(ctx, request, reply, refusal) : done()),
      (error: Error) => done(error),
    );
  };
}

function refuse(ctx: Context, request: FastifyRequest, reply: FastifyReply, refusal: LimitRefusal): void {
  if (request.headers.accept?.includes('text/html')) {
    sendErrorPage(ctx, request, reply, {
      status: 429,
      title: 'Too many requests',
      message: refusal.kind === 'address' ? 'Too many requests came from your network. Wait a moment, then try again.' : 'This service is receiving too many requests. Wait a moment, then try again.',
      headers: rateLimitHeaders(refusal),
    });
    return;
  }
  sendError(reply, rateLimitedError(refusal));
}
