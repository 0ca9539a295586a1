import type { FastifyReply } from 'fastify';

/**
 * The one way an OAuth endpoint answers with JSON: `Cache-Control: no-store` and `Pragma:
 * no-cache` (RFC 6749 §5.1, RFC 7662 §2.2, RFC 9126 §2.2, OIDC Core §5.3.2), UTF-8 JSON, and
 * the status and extra headers given (a DPoP-Nonce, a WWW-Authenticate challenge).
 */
export function sendJson(reply: FastifyReply, body: unknown, options: { status?: number; headers?: Record<string, string> } = {}): FastifyReply {
  return reply
    .code(options.status ?? 200)
    .headers({ ...options.headers, 'cache-control': 'no-store', pragma: 'no-cache' })
    .type('application/json; charset=utf-8')
    .send(JSON.stringify(body));
}
