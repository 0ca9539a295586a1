import type { FastifyInstance } from 'fastify';
import type { Context } from '../../context.ts';
import { issuerPath } from '../endpoint.ts';

/**
 * Authorization server metadata (RFC 8414) and OpenID Provider metadata (OIDC Discovery 1.0 §4),
 * built from what the registered endpoints contribute, so it advertises only what exists.
 */
export function registerDiscovery(app: FastifyInstance, ctx: Context, metadata: Record<string, unknown>): void {
  const document = JSON.stringify({ issuer: ctx.config.issuer, ...metadata });
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
