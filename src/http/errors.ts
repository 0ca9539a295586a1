import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { OAuthError } from '../oauth-error.ts';
import { isMasterKeyUnavailable } from '../keys/keyring.ts';
import { isDatabaseUnavailable } from '../storage/faults.ts';
import { sendJson } from './json.ts';

/**
 * The single error serializer. OAuthError keeps its code and public description; fastify's own
 * client errors (bad JSON, body too large, wrong media type) become their registered equivalents;
 * a database that is unreachable, too slow or locked is `temporarily_unavailable` (503), and so is
 * a node that holds the master key the database seals with no longer (src/keys/keyring.ts); anything
 * else is `server_error` with no detail, logged with the request id.
 */
export function errorHandler(error: FastifyError | Error, request: FastifyRequest, reply: FastifyReply): void {
  const oauth = toOAuthError(error);
  if (oauth.error === 'temporarily_unavailable') {
    // Expected during a database outage or failover: one line, no stack.
    request.log.warn({ reqId: request.id, cause: (error as Error).message }, isMasterKeyUnavailable(error) ? 'master key unavailable' : 'database unavailable');
  } else if (oauth.status >= 500) {
    request.log.error({ err: error, reqId: request.id }, 'unexpected error');
  } else if (oauth.detail) {
    request.log.info({ error: oauth.error, detail: oauth.detail }, 'request refused');
  }
  sendError(reply, oauth);
}

export function sendError(reply: FastifyReply, error: OAuthError): FastifyReply {
  return sendJson(reply, error.toJSON(), { status: error.status, headers: { ...error.headers } });
}

function toOAuthError(error: FastifyError | Error): OAuthError {
  if (error instanceof OAuthError) return error;
  if (isMasterKeyUnavailable(error)) {
    // Fail closed: nothing sealed with an old key, nothing authenticated with one (docs/keys.md).
    return new OAuthError('temporarily_unavailable', 'the service is temporarily unavailable; retry shortly', { status: 503, headers: { 'retry-after': '5' } });
  }
  if (isDatabaseUnavailable(error)) {
    // RFC 6749 §4.1.2.1 / §5.2 style: the server cannot handle the request now; nothing was
    // acknowledged (an issuance answers only after its audit event is durable); the client retries.
    return new OAuthError('temporarily_unavailable', 'the service is temporarily unavailable; retry shortly', {
      status: 503,
      headers: { 'retry-after': '1' },
    });
  }
  const status = (error as FastifyError).statusCode;
  const code = (error as FastifyError).code;
  if (typeof status !== 'number' || status < 400 || status >= 500) {
    return new OAuthError('server_error', 'the server could not complete the request', { status: 500 });
  }
  switch (code) {
    case 'FST_ERR_VALIDATION':
      // A documented API's schema refused the request (src/http/api-operation.ts). The message
      // names the part and the member ("body/status must be ..."), from our schema, never the value.
      return new OAuthError('invalid_request', error.message);
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new OAuthError('invalid_request', 'request body is too large', { status: 413 });
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new OAuthError('invalid_request', 'unsupported content type', { status: 415 });
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new OAuthError('invalid_request', 'request body is not valid JSON');
    default:
      // Other fastify client errors (malformed URL, bad content length, ...): keep the status, no internals.
      return new OAuthError('invalid_request', 'the request is malformed', { status });
  }
}
