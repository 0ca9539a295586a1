import { resourceRequest } from '../../http/oauth-request.ts';
import { sendJson } from '../../http/json.ts';
import { OAuthError } from '../../oauth-error.ts';
import { appendExternalEvidence, ExternalEvidenceRefusal } from '../../evidence/external.ts';
import { evidenceAppendScope, evidenceAudience } from '../../resource-servers/builtins.ts';
import { authorizeProtectedRequest } from '../../tokens/protected-resource.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';

/**
 * POST /audit/evidence (docs/evidence.md): a registered evidence producer appends a typed event
 * under a txn. The rules, in order:
 * 1. a live token of ours for `<issuer>/evidence` carrying `evidence:append` (AMENDMENTS: a scope
 *    of their own) — else RFC 6750 §3.1 invalid_token / insufficient_scope;
 * 2. the producer's own token (client credentials: no person, no delegation) — else access_denied;
 * 3. the rest is src/evidence/external.ts: the body, the producer's firm, its part in the txn, the
 *    JWS, idempotency by (producer, event_id), the row and `evidence.appended` together.
 * 201 with the record; 200 with the same record for a retry of the same event; 400
 * invalid_request, 403 access_denied (a txn the firm has no part in, or unknown), 409
 * invalid_request (the event id names another event) — JSON, no-store, each refusal on the record.
 */
export const auditEvidence: Endpoint = {
  register(app, ctx) {
    const resource = { audience: evidenceAudience(ctx.config.issuer), scope: evidenceAppendScope, name: 'the evidence API' };
    app.post(`${issuerPath(ctx.config.issuer)}/audit/evidence`, async (request, reply) => {
      const access = await authorizeProtectedRequest(ctx, resourceRequest(request, ctx.config), resource);
      reply.headers(access.headers);
      const { claims } = access;
      if (claims.act !== undefined || claims.grant_id !== undefined || (claims.sub !== undefined && claims.sub !== claims.client_id)) {
        throw new OAuthError('access_denied', 'evidence is appended with the producer’s own token (client credentials)');
      }
      try {
        const { created, ...recorded } = await appendExternalEvidence(ctx, claims.client_id, request.body, request.id);
        return sendJson(reply, recorded, { status: created ? 201 : 200 });
      } catch (error) {
        if (!(error instanceof ExternalEvidenceRefusal)) throw error;
        if (error.code === 'conflict') throw new OAuthError('invalid_request', error.message, { status: 409, detail: error.reason });
        throw new OAuthError(error.code, error.message, { detail: error.reason });
      }
    });
  },
};
