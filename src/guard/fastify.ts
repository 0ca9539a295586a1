import { createHash } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { GuardError } from './errors.ts';
import { checkedRequirement, type Guard, type VerifiedAccess } from './guard.ts';
import type { IdempotencyGuard } from './idempotency.ts';
import type { SsfReceiver } from './ssf.ts';
import { annotateAccess, inCallerTrace } from './trace-context.ts';

/**
 * `clearance/guard/fastify`: the guard as a fastify plugin.
 *
 *   app.register(clearanceGuard, { guard, origin: 'https://orders.example.com' });
 *   app.post('/orders', { config: { clearance: { scopes: ['order:create'] } } }, async (request) => request.access!.subject);
 *   app.post('/payments', { config: { clearance: { scopes: ['settlement:submit'], acr: 'urn:clearance:acr:phr', maxAge: 300 } } }, handler);
 *   app.get('/health', { config: { clearance: false } }, () => 'ok');
 *
 * Every route in the scope where it is registered is protected (opt out with `clearance: false`):
 * an onRequest hook verifies the token before the body is read, checks the route's scopes and the
 * person's authentication (level and age: RFC 9470's challenge), sets `request.access`, and answers a GuardError itself (status, WWW-Authenticate, `{error,
 * error_description}`, Cache-Control: no-store). It sets no error handler (yours stays yours);
 * use `sendGuardError` in it for GuardErrors your handlers throw. With an OpenTelemetry SDK in the
 * host, the guard's calls to Clearance continue the caller's trace (`traceparent`), and the
 * request's active span gets the token's `clearance.txn` and `clearance.client_id`.
 */

declare module 'fastify' {
  interface FastifyRequest {
    /** The verified access token of this request (set by clearanceGuard). */
    access?: VerifiedAccess | undefined;
  }
  interface FastifyContextConfig {
    /** clearanceGuard's route options; `false` leaves the route unprotected. */
    clearance?: RouteGuardOptions | false;
  }
}

export interface RouteGuardOptions {
  /** Scopes the token must all have (else 403 insufficient_scope). */
  scopes?: readonly string[];
  /** The least authentication level of the person (`urn:clearance:acr:mfa`, …): else 401 insufficient_user_authentication (RFC 9470). */
  acr?: string;
  /** Seconds since the person authenticated, at most: else 401 insufficient_user_authentication with max_age (RFC 9470). */
  maxAge?: number;
}

export interface ClearanceGuardOptions {
  guard: Guard;
  /**
   * The origin clients address, e.g. `https://orders.example.com` (DPoP `htu`). Set it behind a
   * proxy; without it the request's protocol and Host header are used.
   */
  origin?: string;
  /** RFC 8705 §3.1 thumbprint of the client certificate; default: the TLS connection's peer certificate (behind a TLS-terminating proxy, read the proxy's header). */
  clientCertificateThumbprint?: (request: FastifyRequest) => string | undefined;
}

/** The fastify plugin (not encapsulated: its hook and decorator apply in the scope that registers it). */
export async function clearanceGuard(app: FastifyInstance, options: ClearanceGuardOptions): Promise<void> {
  const { guard } = options;
  const origin = options.origin === undefined ? undefined : new URL(options.origin).origin;
  const thumbprint = options.clientCertificateThumbprint ?? peerCertificateThumbprint;
  if (!app.hasRequestDecorator('access')) app.decorateRequest('access', undefined);
  // A route's acr and maxAge are checked as it is declared: a typo fails at start-up, not per request.
  app.addHook('onRoute', (route) => {
    const options = (route.config as { clearance?: RouteGuardOptions | false } | undefined)?.clearance;
    if (options) checkedRequirement(options);
  });

  app.addHook('onRequest', async (request, reply) => {
    const route = request.routeOptions.config.clearance;
    if (route === false) return;
    try {
      // Its calls to Clearance (introspection) continue the caller's trace (src/guard/trace-context.ts).
      const access = await inCallerTrace(request.headers, () =>
        guard.verify({
          method: request.method,
          url: `${origin ?? `${request.protocol}://${request.host}`}${request.url}`,
          headers: request.headers,
          clientCertificateThumbprint: thumbprint(request),
        }),
      );
      if (route?.scopes) guard.requireScopes(access, route.scopes);
      if (route?.acr !== undefined || route?.maxAge !== undefined) {
        guard.requireAuthentication(access, { ...(route.acr !== undefined ? { acr: route.acr } : {}), ...(route.maxAge !== undefined ? { maxAge: route.maxAge } : {}) });
      }
      request.access = access;
      annotateAccess(access);
      reply.headers(access.headers);
    } catch (error) {
      if (error instanceof GuardError) return sendGuardError(reply, error);
      throw error;
    }
  });
}
// What fastify-plugin does: the hook and decorator belong to the registering scope.
Object.assign(clearanceGuard, { [Symbol.for('skip-override')]: true, [Symbol.for('fastify.display-name')]: 'clearance-guard' });

/** Answers a GuardError: its status and headers, Cache-Control: no-store, a JSON `{error, error_description}` body. */
export function sendGuardError(reply: FastifyReply, error: GuardError): FastifyReply {
  reply.request.log.info({ error: error.error, detail: error.detail }, 'guard refused the request');
  return reply
    .code(error.status)
    .headers({ ...error.headers, 'cache-control': 'no-store', pragma: 'no-cache' })
    .type('application/json; charset=utf-8')
    .send(JSON.stringify(error.toJSON()));
}

/**
 * Wraps a handler in the idempotency guard: the instruction is the token's `txn` and `action`
 * (and the fingerprint of the request, if given); the handler's return value is recorded and
 * sent. A duplicate is answered 409 with the first record; no txn is 403 txn_required. GuardErrors
 * the handler throws are answered too.
 */
export function idempotent(
  idem: IdempotencyGuard,
  options: { action: string; fingerprint?: (request: FastifyRequest) => string | undefined },
  handler: (request: FastifyRequest, reply: FastifyReply) => Promise<unknown>,
): (request: FastifyRequest, reply: FastifyReply) => Promise<unknown> {
  return async (request, reply) => {
    const access = request.access;
    if (!access) throw new Error('idempotent() runs on a route protected by clearanceGuard');
    try {
      return await idem.once({ txn: access.txn, action: options.action, fingerprint: options.fingerprint?.(request) }, () => handler(request, reply));
    } catch (error) {
      if (error instanceof GuardError) return sendGuardError(reply, error);
      throw error;
    }
  };
}

/** The thumbprint of the TLS connection's client certificate (RFC 8705 §3.1), if there is one. */
function peerCertificateThumbprint(request: FastifyRequest): string | undefined {
  const socket = request.raw.socket as Partial<TLSSocket>;
  if (typeof socket.getPeerCertificate !== 'function') return undefined;
  const raw = socket.getPeerCertificate(false)?.raw;
  return raw && raw.length > 0 ? createHash('sha256').update(raw).digest('base64url') : undefined;
}

/**
 * The SSF push endpoint (RFC 8935) for a receiver (./ssf.ts): `POST path` takes
 * `application/secevent+jwt` bodies and answers 202, or 400/401 with `{err, description}`. The
 * route is not protected by the guard's access tokens (`clearance: false`): the SET's signature
 * and the agreed Authorization header authenticate the push.
 */
export async function ssfReceiverRoute(app: FastifyInstance, options: { receiver: SsfReceiver; path: string }): Promise<void> {
  if (!app.hasContentTypeParser('application/secevent+jwt')) {
    app.addContentTypeParser('application/secevent+jwt', { parseAs: 'string', bodyLimit: 64 * 1024 }, (_request, body, done) => done(null, body));
  }
  app.post(options.path, { config: { clearance: false } }, async (request, reply) => {
    const answer = await options.receiver.receive({ headers: request.headers as Record<string, string | string[] | undefined>, body: request.body as string | undefined });
    reply.code(answer.status).header('cache-control', 'no-store');
    return answer.body === undefined ? reply.send() : reply.type('application/json').send(JSON.stringify(answer.body));
  });
}
