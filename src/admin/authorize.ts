import type { FastifyRequest, preHandlerAsyncHookHandler, RouteShorthandOptions } from 'fastify';
import { protectedOperation, type ApiOperation } from '../http/api-operation.ts';
import type { Context } from '../context.ts';
import { resourceRequest } from '../http/oauth-request.ts';
import type { AccessTokenClaims } from '../tokens/claims.ts';
import { authorizeProtectedRequest } from '../tokens/protected-resource.ts';
import type { adminScopes } from '../resource-servers/builtins.ts';
import { assessAdminAction, type AdminAction } from '../risk/intrusion.ts';

/** A scope of the admin API (src/resource-servers/builtins.ts adminScopes). */
export type AdminScope = (typeof adminScopes)[number];

declare module 'fastify' {
  interface FastifyRequest {
    /** The verified admin token of this request (set by requireAdmin). */
    admin?: AccessTokenClaims;
  }
}

/** Methods that only read (RFC 9110 §9.2.1 safe methods): every other admin request is a change, assessed as an admin action. */
const safeMethods: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS']);

/** The audience of Clearance's own admin API. */
export function adminAudience(issuer: string): string {
  return `${issuer}/admin`;
}

/**
 * A pre-handler that admits a request only with a Clearance access token for `<issuer>/admin`
 * carrying `scope`, through the one protected-resource check (src/tokens/protected-resource.ts):
 * presented with its binding, for the admin audience, live (not revoked; its grant, mandate and
 * person in force), with the scope. Errors follow RFC 6750 §3 and RFC 9449 §7.1: 401
 * invalid_token / invalid_dpop_proof, 403 insufficient_scope, with a WWW-Authenticate challenge in
 * the scheme used.
 * A request that changes something (any method but GET, HEAD and OPTIONS) is then assessed as an
 * admin action (intrusion signals, src/risk/intrusion.ts), once, as the route and
 * `options.assessedAs` describe it: alerted when unusual, never refused for it.
 */
export function requireAdmin(ctx: Context, scope: AdminScope, options: AdminRouteOptions = {}): preHandlerAsyncHookHandler {
  const resource = { audience: adminAudience(ctx.config.issuer), scope, name: 'the admin API' };
  return async (request, reply) => {
    const access = await authorizeProtectedRequest(ctx, resourceRequest(request, ctx.config), resource);
    reply.headers(access.headers);
    request.admin = access.claims;
    if (safeMethods.has(request.method) || options.readsOnly) return;
    const claims = access.claims;
    await assessAdminAction(ctx, {
      admin: claims.sub ?? claims.client_id,
      action: `${request.method} ${request.routeOptions.url ?? request.url.split('?')[0]}`,
      address: request.ip,
      clientId: claims.client_id,
      requestId: request.id,
      ...(options.assessedAs ? await options.assessedAs(request) : {}),
    });
  };
}

/** How `requireAdmin` treats one route. */
export interface AdminRouteOptions {
  /**
   * What a write of this route is, for its intrusion assessment, when the route knows more than
   * its method and path — the action it names, a policy set version's `createdAt` for
   * `quick_activation`. Given here, not assessed again by the route: one write is assessed once
   * (counted once toward `admin_burst`, alerted at most once), and it is assessed here, before the
   * request's validation and handler, so a refused or failed write is assessed as well and a
   * failing risk store fails the request before anything changes.
   */
  assessedAs?: (request: FastifyRequest) => Promise<Partial<Pick<AdminAction, 'action' | 'createdAt'>>>;
  /**
   * The route changes nothing whatever its method (apply's dry run, a POST for its body): not an
   * admin write, so not assessed — a pipeline that plans every change must not count toward
   * `admin_burst` as if it had made them.
   */
  readsOnly?: boolean;
}

/**
 * Route options of an admin API operation: the caller admitted by `requireAdmin` for `scope`
 * before the request is validated against the operation's schemas (src/http/api-operation.ts),
 * and the same scope stated in the OpenAPI document (GET /admin/openapi.json).
 */
export function adminOperation(ctx: Context, scope: AdminScope, operation: ApiOperation, options: AdminRouteOptions = {}): RouteShorthandOptions {
  return protectedOperation(requireAdmin(ctx, scope, options), scope, operation);
}
