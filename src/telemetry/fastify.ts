import { context, SpanStatusCode, type Span } from '@opentelemetry/api';
import type { FastifyInstance } from 'fastify';
import type {} from '@fastify/otel';
import { attributeNames, requestContext } from './spans.ts';
import { fastifyInstrumentation } from './tracing.ts';

/**
 * One server span per request of `app` (@fastify/otel), when tracing is on; the caller tests
 * `tracingOn`, so with tracing off nothing is registered. The span continues the caller's trace
 * (W3C `traceparent`), is named `METHOD route`, and carries the request id (`clearance.request_id`,
 * the `reqId` of the request's log lines). It carries no URL as sent: its path is the route's
 * template (a path may name a person, `/admin/users/:id`, or hold a credential, `/recovery/:token`)
 * and its query (codes, state) is never read. No span per hook or handler, and no exception events
 * (a refusal's message may quote what the caller sent): Clearance's own steps are its children.
 * Its status is ERROR, with no message, only for a 5xx response: a refusal (4xx) is the caller's
 * error, not the server's (OpenTelemetry's HTTP server conventions).
 *
 * Call it on a new application, before any route or hook is added: its onRequest hook must be the
 * first (a request refused by a later hook is traced too) and its route hook must see every route.
 * `name` prefixes the span's name (the demo's firms: `broker POST /executions`).
 */
export function traceRequests(app: FastifyInstance, options: { name?: string } = {}): void {
  const Instrumentation = fastifyInstrumentation();
  if (!Instrumentation) return;
  const prefix = options.name === undefined ? '' : `${options.name} `;
  const instrumentation = new Instrumentation({
    instrumentHooks: false,
    instrumentHandler: false,
    recordExceptions: false,
    requestHook: (span, request) => {
      const route = request.routeOptions.url;
      span.updateName(`${prefix}${request.method}${route === undefined ? '' : ` ${route}`}`);
      span.setAttributes({ 'url.path': route ?? '(no route)', [attributeNames.requestId]: request.id });
      // @fastify/otel marks the span ERROR, with the error's message, for every error thrown (its
      // onError hook runs before the error handler, refusals included) and nothing unmarks it: its
      // status is set here instead, by the onSend hook below, once the response's status is known.
      statusSetters.set(span, span.setStatus.bind(span));
      span.setStatus = () => span;
    },
  });
  // Applied at once: `app.register` would run it only when the application is readied, after
  // the hooks added meanwhile.
  instrumentation.plugin()(app, {}, () => undefined);
  // The body is read on the socket's events, outside the request's context: from validation on,
  // the request's work (hooks, handler, everything they await) runs in its span's context again.
  app.addHook('preValidation', (request, _reply, done) => {
    const { span, context: traced } = request.opentelemetry();
    if (!span || !traced) return done();
    context.with(requestContext(traced, span), done);
  });
  // Before @fastify/otel's own onSend (a route's hooks run after the application's), which ends the span.
  app.addHook('onSend', (request, reply, payload, done) => {
    if (reply.statusCode >= 500) {
      const { span } = request.opentelemetry();
      if (span) {
        span.setAttribute(attributeNames.errorType, String(reply.statusCode));
        statusSetters.get(span)?.({ code: SpanStatusCode.ERROR });
      }
    }
    done(null, payload);
  });
}

/** The request spans' own `setStatus`, which @fastify/otel no longer reaches (see traceRequests). */
const statusSetters = new WeakMap<Span, Span['setStatus']>();
