import type { FastifyReply } from 'fastify';
import { OAuthError } from '../oauth-error.ts';

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

/** A request body that must be a JSON object: it, or 400 invalid_request. */
export function jsonObjectBody(body: unknown): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new OAuthError('invalid_request', 'the body must be a JSON object');
  return body as Record<string, unknown>;
}
