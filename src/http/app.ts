import { randomUUID } from 'node:crypto';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Context } from '../context.ts';
import { OAuthError } from '../oauth-error.ts';
import type { Endpoint } from '../endpoints/endpoint.ts';
import { registerDiscovery } from '../endpoints/discovery/index.ts';
import { health } from '../endpoints/health/index.ts';
import { jwks } from '../endpoints/jwks/index.ts';
import { token } from '../endpoints/token/index.ts';
import { introspection } from '../endpoints/introspect/index.ts';
import { revocation } from '../endpoints/revoke/index.ts';
import { registration } from '../endpoints/register/index.ts';
import { admin } from '../endpoints/admin/index.ts';
import { audit } from '../endpoints/audit/index.ts';
import { adminUsers } from '../endpoints/admin/users.ts';
import { adminApply } from '../endpoints/admin/apply.ts';
import { adminApprovals } from '../endpoints/admin/approvals.ts';
import { assets } from '../endpoints/assets/index.ts';
import { interaction } from '../endpoints/interaction/index.ts';
import { authorization } from '../endpoints/authorize/index.ts';
import { pushedAuthorization } from '../endpoints/par/index.ts';
import { backchannelAuthentication } from '../endpoints/backchannel/index.ts';
import { userinfo } from '../endpoints/userinfo/index.ts';
import { logout } from '../endpoints/logout/index.ts';
import { brokerLogout } from '../endpoints/broker/logout.ts';
import { brokerJwks } from '../endpoints/broker/jwks.ts';
import { adminGrants } from '../endpoints/grants/index.ts';
import { adminMandates } from '../endpoints/mandates/index.ts';
import { account } from '../endpoints/account/index.ts';
import { requestMetricsHook } from './request-metrics.ts';
import { consoleEndpoint } from '../endpoints/console/index.ts';
import { adminEntities } from '../endpoints/admin/entities.ts';
import { accessEvaluation } from '../endpoints/access/index.ts';
import { adminHolds } from '../endpoints/admin/holds.ts';
import { adminErasure } from '../endpoints/admin/erasure.ts';
import { adminTransferDestinations } from '../endpoints/admin/transfer-destinations.ts';
import { auditActivity } from '../endpoints/audit/activity.ts';
import { adminKeys } from '../endpoints/admin/keys.ts';
import { adminAccessReview } from '../endpoints/admin/access-review.ts';
import { adminPolicies } from '../endpoints/admin/policies.ts';
import { auditStatus } from '../endpoints/audit/status.ts';
import { sharedSignals } from '../endpoints/ssf/index.ts';
import { pki } from '../endpoints/pki/index.ts';
import { agentCredentials } from '../endpoints/agents/index.ts';
import { adminAgents } from '../endpoints/admin/agents.ts';
import { evidence } from '../endpoints/evidence/index.ts';
import { authorizationDetailsSchemas } from '../endpoints/authorization-details-schemas/index.ts';
import { auditEvidence } from '../endpoints/audit-evidence/index.ts';
import { counterpartyEvidence } from '../endpoints/evidence-counterparty/index.ts';
import { adminRecovery } from '../endpoints/admin/recovery.ts';
import { adminRoleGrants } from '../endpoints/admin/role-grants.ts';
import { recovery } from '../endpoints/recovery/index.ts';
import { adminBreakGlass } from '../endpoints/break-glass/index.ts';
import { adminAlerts } from '../endpoints/alerts/index.ts';
import { adminRisk } from '../endpoints/risk/index.ts';
import { metrics } from '../endpoints/metrics/index.ts';
import { adminKyc } from '../endpoints/admin/kyc.ts';
import { adminPartners } from '../endpoints/admin/partners.ts';
import { kycWebhooks } from '../endpoints/kyc/index.ts';
import { scim } from '../endpoints/scim/index.ts';
import { errorHandler, sendError } from './errors.ts';
import { FormParameters } from '../parameters.ts';
import { securityHeaders } from './security-headers.ts';
import { refuseControlCharacters } from './control-characters.ts';
import { issuerPath } from '../endpoints/endpoint.ts';
import { makeCertificateReader } from './client-certificate.ts';
import { readFileSync } from 'node:fs';
import type { Config } from '../config.ts';
import { loggedPath } from '../log.ts';
import { rateLimitHook } from './rate-limits.ts';
import { registerOpenApi } from './openapi.ts';
import plugin from 'fastify-plugin';
import { tracingOn } from '../telemetry/spans.ts';
import { traceRequests } from '../telemetry/fastify.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /** Set for application/x-www-form-urlencoded bodies. */
    form?: FormParameters;
  }
}

/** Every endpoint the server exposes, in registration order. */
export const endpoints: readonly Endpoint[] = [] = [health, jwks, token, introspection, revocation, registration, admin, adminApply, audit, adminUsers, assets, interaction, authorization, pushedAuthorization, backchannelAuthentication, userinfo, logout, brokerLogout, brokerJwks, adminGrants, account, adminMandates, adminEntities, accessEvaluation, adminRecovery, adminRoleGrants, recovery, adminBreakGlass, adminAlerts, adminApprovals, adminRisk, metrics, adminKyc, adminPartners, kycWebhooks, adminHolds, adminErasure, adminTransferDestinations, auditActivity, adminKeys, adminAccessReview, adminPolicies, auditStatus, sharedSignals, pki, agentCredentials, adminAgents, evidence, auditEvidence, counterpartyEvidence, scim, consoleEndpoint, authorizationDetailsSchemas];

/**
 * Builds the HTTP application (not listening); `inject` it in tests or `listen` it in the server.
 * Tests may pass another endpoint list (e.g. with a test double in place of one endpoint).
 */
export function buildApp(ctx: Context, routes: readonly Endpoint[] = endpoints): FastifyInstance {
  const app = Fastify({
    loggerInstance: ctx.log as FastifyBaseLogger,
    // The access log (two lines per request) only at debug: at the default level a success costs
    // no log line; refusals, unexpected errors and outages are logged by the error handler.
    logController: new LogController({ disableRequestLogging: !ctx.log.isLevelEnabled('debug') }),
    genReqId: () => randomUUID(),
    bodyLimit: ctx.config.bodyLimit,
    // While closing, requests still arriving on open connections get 503 from the hook below, as
    // registered OAuth error JSON with our headers (fastify's own 503 body would bypass both).
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    // Malformed URLs and over-long path parameters fail in the router, before any hook: answer
    // them through the one serializer too (registered error JSON, no-store, security headers).
    frameworkErrors: (error, _request, reply) => {
      const status = (error as { statusCode?: number }).statusCode ?? 400;
      const oauth = new OAuthError('invalid_request', status === 414 ? 'a path segment is too long' : 'the request URL is malformed', { status });
      securityHeaders(reply.request, reply);
      sendError(reply, oauth);
    },
    // X-Forwarded-For is believed only from the configured proxies.
    trustProxy: ctx.config.trustedProxies.length > 0 ? ctx.config.trustedProxies : false,
    // The documented APIs' schemas (src/http/api-operation.ts) validate requests as sent: no type
    // coercion (a string "true" is not a boolean), nothing added or removed from the body.
    ajv: { customOptions: { coerceTypes: false, useDefaults: false, removeAdditional: false, allErrors: false, allowUnionTypes: true } },
    ...(ctx.config.tls ? { https: tlsOptions(ctx.config.tls) } : {}),
  });
  // OpenTelemetry (docs/observability.md): one span per request, before any hook; off, nothing.
  if (tracingOn) traceRequests(app);

  app.removeContentTypeParser('text/plain');
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (request, body, done) => {
    request.form = new FormParameters(body as string);
    done(null, {});
  });

  const readCertificate = makeCertificateReader(ctx.config);
  // Graceful shutdown: once closing, requests still arriving on open connections get 503, and a
  // response to an in-flight request also closes its keep-alive connection; otherwise close()
  // would wait out the keep-alive timeout (72 s) of that connection. One hook per stage.
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  // Callback-style hooks: an async one costs a promise on every request.
  app.addHook('onRequest', (request, reply, done) => {
    // Answered here: `done` is not called, so the route never runs.
    if (closing) return void sendError(reply, new OAuthError('temporarily_unavailable', 'the server is shutting down', { status: 503 }));
    done();
  });
  // Rate limits by source address and endpoint route (docs/risk.md "Rate limits"), before any work.
  app.addHook('onRequest', rateLimitHook(ctx));
  app.addHook('onRequest', (request, _reply, done) => {
    request.clientCertificate = readCertificate(request);
    done();
  });
  app.addHook('onSend', (request, reply, payload, done) => {
    securityHeaders(request, reply);
    if (closing) reply.header('connection', 'close');
    done(null, payload);
  });
  // Issue 20 item 4: control characters are refused at the boundary, on every endpoint but the
  // authorization endpoint, which answers in the browser with its own error page
  // (AuthorizationParameters applies the OAuth rule there).
  const authorizePath = `${issuerPath(ctx.config.issuer)}/authorize`;
  app.addHook('preValidation', (request, _reply, done) => {
    try {
      if (request.routeOptions.url !== authorizePath) refuseControlCharacters(request);
    } catch (error) {
      return done(error as Error);
    }
    done();
  });
  // Request counts and latencies per route (src/http/request-metrics.ts, GET /metrics).
  app.addHook('onResponse', requestMetricsHook(issuerPath(ctx.config.issuer)));
  app.setErrorHandler(errorHandler);
  app.setNotFoundHandler((request, reply) =>
    sendError(reply, new OAuthError('not_found', `no endpoint at ${request.method} ${loggedPath(request.url)}`)),
  );

  // The OpenAPI document is made from the routes as they are added (src/http/openapi.ts): its
  // plugin's route hook is in place when the endpoints' plugin (not encapsulated) adds them.
  registerOpenApi(app, ctx);
  void app.register(
    plugin((instance: FastifyInstance) => {
      const metadata: Record<string, unknown> = {};
      for (const endpoint of routes) {
        endpoint.register(instance, ctx);
        Object.assign(metadata, endpoint.metadata?.(ctx));
      }
      registerDiscovery(instance, ctx, metadata);
      return Promise.resolve();
    }, { name: 'clearance-endpoints' }),
  );
  return app;
}

/**
 * TLS with client certificates requested but not required: a client without one can still use
 * other methods, and one with a self-signed certificate (RFC 8705 §2.2) must not be refused by
 * the handshake. Whether a chain was validated is passed on as `chainVerified`.
 */
function tlsOptions(tls: NonNullable<Config['tls']>) {
  return {
    cert: readFileSync(tls.certFile),
    key: readFileSync(tls.keyFile),
    ...(tls.clientCaFile ? { ca: readFileSync(tls.clientCaFile) } : {}),
    requestCert: true,
    rejectUnauthorized: false,
  };
}
