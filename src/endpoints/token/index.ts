import type { FastifyReply, FastifyRequest } from 'fastify';
import { assertionAlgs, endpointAuthMethods } from '../../clients/metadata.ts';
import { grantLabel, tokenMetrics } from './metrics.ts';
import { authenticate } from '../../clients/authentication/endpoint-authentication.ts';
import { grants, findGrant } from '../../grants/index.ts';
import { clientAuthInput, dpopRequest, postOnly, rejectRepeated, requireForm } from '../../http/oauth-request.ts';
import { checkDpopProof, dpopAlgs, useDpopProof } from '../../tokens/dpop.ts';
import { OAuthError } from '../../oauth-error.ts';
import { declaredParameters } from '../../grants/grant.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';
import { sendJson } from '../../http/json.ts';
import type { Context } from '../../context.ts';
import { reasonCode, recordRefusal, safeDescription } from '../../audit/refusals.ts';
import { isTxn } from '../../transactions/txn.ts';
import { jwtBearerGrantType, tokenExchangeGrantType } from '../../tokens/token-types.ts';
import { annotateRequest, attributeNames, tracingOn } from '../../telemetry/spans.ts';

/**
 * The token endpoint (RFC 6749 §3.2). Its rules, in order:
 * 1. the body is a form; grant_type is present, once (invalid_request); no other parameter is
 *    repeated unless the grant it names allows it (§3.2);
 * 2. a DPoP header, when present, is a valid proof for this request (RFC 9449 §4.3, §5), with the
 *    server's nonce when nonces are required (§8) — checked before client authentication, so a
 *    refused proof (a nonce retry) does not cost the client its assertion;
 * 3. the client authenticates with exactly one method (§2.3, §3.2.1), throttled on failures; a
 *    public client (client_id only) is accepted only by grants that allow it (code, refresh; an
 *    unknown grant_type allows none); under the FAPI 2.0 profile only private_key_jwt or mTLS;
 * 4. grant_type is supported (§5.2 unsupported_grant_type) — said only to an authenticated client;
 * 5. the client is registered for that grant (§5.2 unauthorized_client); the proof's jti is used
 *    once (§11.1) — after authentication, so an unauthenticated caller writes nothing;
 * 6. the grant decides, binding the access token to the DPoP key or the client certificate
 *    (src/tokens/binding.ts; bearer tokens refused for sender-constrained resources and FAPI);
 *    its `token.issued` event is durable before the response leaves (DESIGN §5): recorded here,
 *    or by the grant in the transaction of its writes; then the risk signals remember what the
 *    issuance saw (src/risk: a network, scope or actor now known);
 * 7. the response is JSON with no-store (§5.1), and a fresh DPoP-Nonce when nonces are required.
 */
export const token: Endpoint = {
  register(app, ctx) {
    const path = `${issuerPath(ctx.config.issuer)}/token`;
    postOnly(app, path);
    app.post(path, async (request, reply) => {
      // Counted once it is answered (src/endpoints/token/metrics.ts): issued, or refused and why.
      const label = grantLabel(request.form?.all('grant_type').length === 1 ? request.form.get('grant_type') : undefined);
      // Traced (docs/observability.md): the grant type on the request's span, bounded as the label is.
      if (tracingOn) annotateRequest({ [attributeNames.grantType]: label });
      try {
        const sent = await answer(request, reply);
        tokenMetrics.issued(label);
        return sent;
      } catch (error) {
        tokenMetrics.denied(label, error);
        if (tracingOn) annotateRefusal(error);
        throw error;
      }
    });

    async function answer(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
      const params = requireForm(request);
      const grantType = params.all('grant_type');
      if (grantType.length !== 1 || !grantType[0]) throw new OAuthError('invalid_request', 'grant_type is required, once');
      const grant = findGrant(grantType[0]);
      rejectRepeated(params, grant?.repeatable);
      const dpop = checkDpopProof(dpopRequest(request, ctx.config), ctx.dpop);
      // RFC 6749 §3.2.1: public clients (client_id only) only for the grants that allow them.
      const client = await authenticate(ctx, { ...clientAuthInput(request, params), allowPublic: grant?.allowPublic === true });
      if (tracingOn) annotateRequest({ [attributeNames.clientId]: client.client.metadata.client_id, [attributeNames.authMethod]: client.method });
      if (!grant) throw new OAuthError('unsupported_grant_type', `grant_type ${grantType[0]} is not supported`);
      if (!client.client.metadata.grant_types.includes(grant.grantType)) {
        throw new OAuthError('unauthorized_client', `the client is not registered for ${grant.grantType}`);
      }
      if (dpop) await useDpopProof(dpop, ctx.dpop);
      let result;
      try {
        result = await grant.handle({ params: declaredParameters(params, grant.parameters), client, requestId: request.id, address: request.ip, ...(dpop ? { dpop } : {}) }, ctx);
      } catch (error) {
        // Every refusal after client authentication is on the record (docs/audit.md "Refusals");
        // recording never turns it into a 5xx. Only on this path: a success costs nothing more.
        if (error instanceof OAuthError && error.status < 500) await recordGrantRefusal(ctx, error, grant.grantType, client.client.metadata.client_id, request.id, params.get('txn'));
        throw error;
      }
      if (result.events) await Promise.all(result.events.map((event) => ctx.audit.record({ ...event, requestId: request.id })));
      if (result.observe) await observeIssuance(ctx, result.observe);
      // RFC 9449 §8.2: a fresh nonce for the client's next proof.
      if (dpop && ctx.dpop.requireNonce) reply.header('dpop-nonce', ctx.dpop.nonces.current());
      // Before sending: the request's span ends as the response is sent.
      if (tracingOn) annotateRequest({ [attributeNames.decision]: 'allow' });
      // RFC 6749 §5.1: JSON, Cache-Control no-store, Pragma no-cache.
      return sendJson(reply, result.response);
    }
  },
  metadata: (ctx) => ({
    token_endpoint: `${ctx.config.issuer}/token`,
    grant_types_supported: grants.map((g) => g.grantType),
    // `none`: public clients, for the authorization_code and refresh_token grants only.
    token_endpoint_auth_methods_supported: [...endpointAuthMethods, 'none'],
    token_endpoint_auth_signing_alg_values_supported: assertionAlgs,
    // RFC 8705 §3.3: certificate-bound access tokens whenever a client certificate is presented.
    tls_client_certificate_bound_access_tokens: true,
    // RFC 9449 §5.1: the algorithms accepted for DPoP proofs.
    dpop_signing_alg_values_supported: [...dpopAlgs],
  }),
};

/**
 * After the token is issued and recorded: the risk signals' memory. A failure to remember is logged,
 * not answered: the token is issued, and a signal that did not remember fires again next time (the
 * stricter side).
 */
/** The refusal of a grant: `exchange.refused`, `assertion.refused`, else `token.refused`. */
function recordGrantRefusal(ctx: Context, error: OAuthError, grantType: string, clientId: string, requestId: string, txn: string | undefined): Promise<void> {
  const type = grantType === tokenExchangeGrantType ? 'exchange.refused' : grantType === jwtBearerGrantType ? 'assertion.refused' : 'token.refused';
  const description = safeDescription(error.description);
  return recordRefusal(ctx, {
    type,
    requestId,
    client: clientId,
    // The trade the grant found the refusal in (a verified subject token's), else the one sent.
    ...(error.about?.txn !== undefined ? { txn: error.about.txn } : isTxn(txn) ? { txn } : {}),
    ...(error.about?.subject !== undefined ? { subject: error.about.subject } : {}),
    error: error.error,
    reason: reasonCode(error),
    details: { grant_type: grantType, ...(description !== undefined ? { description } : {}) },
  });
}

/**
 * A refused token request on its server span (docs/observability.md): `deny` with the OAuth error
 * code, and the trade the grant filed the refusal under. A 4xx is the caller's error, not the
 * server's: the span's status stays unset (OpenTelemetry's HTTP conventions).
 */
function annotateRefusal(error: unknown): void {
  if (!(error instanceof OAuthError) || error.status >= 500) return;
  annotateRequest({
    [attributeNames.decision]: 'deny',
    [attributeNames.errorType]: error.error,
    // A partner's subject token may carry any string as its txn: only a well-formed one is named.
    ...(isTxn(error.about?.txn) ? { [attributeNames.txn]: error.about.txn } : {}),
  });
}

async function observeIssuance(ctx: Context, observe: () => Promise<void>): Promise<void> {
  try {
    await observe();
  } catch (error) {
    ctx.log.warn({ err: error }, 'risk: the signals could not remember what a token issuance saw');
  }
}
