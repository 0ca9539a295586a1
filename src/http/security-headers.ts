import type { FastifyReply, FastifyRequest } from 'fastify';

/**
 * Headers on every response. Pages that render HTML set their own CSP (src/ui/respond.ts: no script
 * at all, own stylesheet only); the default forbids everything, including framing (RFC 9700 §4.16).
 */
export function securityHeaders(_request: FastifyRequest, reply: FastifyReply): void {
  reply.header('x-content-type-options', 'nosniff');
  reply.header('referrer-policy', 'no-referrer');
  reply.header('x-frame-options', 'DENY');
  if (!reply.hasHeader('content-security-policy')) {
    reply.header('content-security-policy', "default-src 'none'; frame-ancestors 'none'; base-uri 'none'");
  }
  // Responses are private unless a route says otherwise (JWKS and discovery are public).
  if (!reply.hasHeader('cache-control')) reply.header('cache-control', 'no-store');
  // A route may echo the caller's own request id instead (the AuthZEN API, AuthZEN §11.1.3).
  if (!reply.hasHeader('x-request-id')) reply.header('x-request-id', reply.request.id);
}
