import { authenticate } from '../../clients/authentication/endpoint-authentication.ts';
import { pushAuthorizationRequest } from '../../authorization/par.ts';
import { clientAuthInput, postOnly, rejectRepeated, requireForm } from '../../http/oauth-request.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';

/**
 * The pushed authorization request endpoint (RFC 9126). Its rules, in order:
 * 1. POST only: any other method is 405 (§2);
 * 2. the body is a form, no parameter repeated except `resource` (RFC 6749 §3.1);
 * 3. the client authenticates as at the token endpoint (§2: the AS MUST require client
 *    authentication for confidential clients; public clients cannot push here);
 * 4. the request is validated as /authorize would, errors as JSON (§2.3);
 * 5. 201 Created with request_uri and expires_in (§2.2), no-store.
 */
export const pushedAuthorization: Endpoint = {
  register(app, ctx) {
    const path = `${issuerPath(ctx.config.issuer)}/par`;
    postOnly(app, path);
    app.post(path, async (request, reply) => {
      const form = requireForm(request);
      rejectRepeated(form, ['resource']);
      const client = await authenticate(ctx, clientAuthInput(request, form));
      const pushed = await pushAuthorizationRequest(ctx, client, form);
      return reply
        .code(201)
        .headers({ 'cache-control': 'no-store', pragma: 'no-cache' })
        .type('application/json; charset=utf-8')
        .send(JSON.stringify({ request_uri: pushed.requestUri, expires_in: pushed.expiresIn }));
    });
  },
  metadata: (ctx) => ({
    pushed_authorization_request_endpoint: `${ctx.config.issuer}/par`,
    // RFC 9126 §5: PAR is required per client (require_pushed_authorization_requests), not server-wide.
    require_pushed_authorization_requests: false,
  }),
};
