import { authenticate } from '../../clients/authentication/endpoint-authentication.ts';
import { pushAuthorizationRequest } from '../../authorization/par.ts';
import { clientAuthInput, dpopRequest, postOnly, rejectRepeated, requireForm } from '../../http/oauth-request.ts';
import { checkDpopProof, useDpopProof } from '../../tokens/dpop.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';
import { sendJson } from '../../http/json.ts';

/**
 * The pushed authorization request endpoint (RFC 9126). Its rules, in order:
 * 1. POST only: any other method is 405 (§2);
 * 2. the body is a form, no parameter repeated except `resource` (RFC 6749 §3.1);
 * 3. a DPoP header, when present, is a valid proof for this request (RFC 9449 §4.3, §10.1; the
 *    server's nonce when nonces are required): the code will be bound to its key;
 * 4. the client authenticates as at the token endpoint (§2: the AS MUST require client
 *    authentication for confidential clients; public clients cannot push here); then the proof's
 *    jti is used once (§11.1);
 * 5. the request is validated as /authorize would, errors as JSON (§2.3); a `dpop_jkt` must name
 *    the proof's key;
 * 6. 201 Created with request_uri and expires_in (§2.2), no-store.
 */
export const pushedAuthorization: Endpoint = {
  register(app, ctx) {
    const path = `${issuerPath(ctx.config.issuer)}/par`;
    postOnly(app, path);
    app.post(path, async (request, reply) => {
      const form = requireForm(request);
      rejectRepeated(form, ['resource']);
      const dpop = checkDpopProof(dpopRequest(request, ctx.config), ctx.dpop);
      const client = await authenticate(ctx, clientAuthInput(request, form));
      if (dpop) await useDpopProof(dpop, ctx.dpop);
      const pushed = await pushAuthorizationRequest(ctx, client, form, dpop);
      if (dpop && ctx.dpop.requireNonce) reply.header('dpop-nonce', ctx.dpop.nonces.current());
      return sendJson(reply, { request_uri: pushed.requestUri, expires_in: pushed.expiresIn }, { status: 201 });
    });
  },
  metadata: (ctx) => ({
    pushed_authorization_request_endpoint: `${ctx.config.issuer}/par`,
    // RFC 9126 §5: PAR is required per client (require_pushed_authorization_requests, or the
    // client's FAPI 2.0 profile), and server-wide under CLEARANCE_PROFILE=fapi2.
    require_pushed_authorization_requests: ctx.config.profile === 'fapi2',
  }),
};
