import type { FastifyInstance } from 'fastify';
import type { Context } from '../../context.ts';
import { issuerPath } from '../endpoint.ts';

/**
 * Authorization server metadata (RFC 8414) and OpenID Provider metadata (OIDC Discovery 1.0 §4),
 * built from what the registered endpoints contribute, so it advertises only what exists.
 */
export function registerDiscovery(app: FastifyInstance, ctx: Context, metadata: Record<string, unknown>): void {
  const aliases = mtlsEndpointAliases(ctx, metadata);
  const document = JSON.stringify({ issuer: ctx.config.issuer, ...metadata, ...(aliases ? { mtls_endpoint_aliases: aliases } : {}) });
  const path = issuerPath(ctx.config.issuer);
  const send = async (_request: unknown, reply: import('fastify').FastifyReply) =>
    reply
      .type('application/json; charset=utf-8')
      .header('cache-control', 'public, max-age=300')
      .header('access-control-allow-origin', '*')
      .send(document);
  // OIDC Discovery §4: the issuer with /.well-known/openid-configuration appended.
  app.get(`${path}/.well-known/openid-configuration`, send);
  // RFC 8414 §3: the well-known segment goes between the host and the issuer's path.
  app.get(`/.well-known/oauth-authorization-server${path}`, send);
}

/** Endpoints a client may call with mutual TLS (RFC 8705 §5). */
const mtlsEndpoints = ['token_endpoint', 'pushed_authorization_request_endpoint', 'backchannel_authentication_endpoint', 'introspection_endpoint', 'revocation_endpoint', 'userinfo_endpoint'];

/**
 * RFC 8705 §5: where clients reach the endpoints with mutual TLS. Advertised only when the server
 * can see client certificates (its own TLS listener, or a trusted proxy's certificate header); at
 * CLEARANCE_MTLS_ORIGIN when one is configured (a host whose TLS asks for client certificates, so
 * browsers on the issuer's host are never prompted for one), else at the issuer's own URLs.
 */
function mtlsEndpointAliases(ctx: Context, metadata: Record<string, unknown>): Record<string, string> | undefined {
  const { tls, clientCertHeader, mtlsOrigin, issuer } = ctx.config;
  if (!tls && !clientCertHeader) return undefined;
  const origin = new URL(issuer).origin;
  const aliases: Record<string, string> = {};
  for (const name of mtlsEndpoints) {
    const url = metadata[name];
    if (typeof url === 'string' && url.startsWith(origin)) aliases[name] = `${mtlsOrigin ?? origin}${url.slice(origin.length)}`;
  }
  return aliases;
}
