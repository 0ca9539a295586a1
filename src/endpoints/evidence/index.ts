import { resourceRequest } from '../../http/oauth-request.ts';
import { sendJson } from '../../http/json.ts';
import { OAuthError } from '../../oauth-error.ts';
import { EvidenceRefusal, EvidenceUnavailable, recordSignedRequest } from '../../evidence/records.ts';
import { evidenceAudience, evidenceWriteScope } from '../../resource-servers/builtins.ts';
import { authorizeProtectedRequest } from '../../tokens/protected-resource.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';

/**
 * POST /evidence (docs/transaction-signing.md): a registered evidence producer — a client whose
 * token for `<issuer>/evidence` carries `evidence:write` (AMENDMENTS: a scope of their own) —
 * reports a signed request it verified; Clearance verifies it again, completes it (the signer's
 * chain, an OCSP answer, an RFC 3161 stamp) and records it: 201 `{evidence_id, record_sha256,
 * timestamp?}`. 400 invalid_request names the rule a report breaks; 503 when the configured TSA
 * does not answer, or in production when none is configured (nothing recorded). Every refusal is
 * an `evidence.refused` event (src/evidence/records.ts).
 */
export const evidence: Endpoint = {
  register(app, ctx) {
    const resource = { audience: evidenceAudience(ctx.config.issuer), scope: evidenceWriteScope, name: 'the evidence API' };
    app.post(`${issuerPath(ctx.config.issuer)}/evidence`, async (request, reply) => {
      const access = await authorizeProtectedRequest(ctx, resourceRequest(request, ctx.config), resource);
      reply.headers(access.headers);
      try {
        const recorded = await recordSignedRequest(ctx, request.body, access.claims.client_id, request.id);
        return sendJson(
          reply,
          {
            evidence_id: recorded.id,
            record_sha256: recorded.recordSha256,
            ...(recorded.timestamp ? { timestamp: { gen_time: new Date(recorded.timestamp.genTime).toISOString(), serial: recorded.timestamp.serial } } : {}),
          },
          { status: 201 },
        );
      } catch (error) {
        if (error instanceof EvidenceRefusal) throw new OAuthError('invalid_request', error.message);
        if (error instanceof EvidenceUnavailable) throw new OAuthError('temporarily_unavailable', error.message, { status: 503 });
        throw error;
      }
    });
  },
};
