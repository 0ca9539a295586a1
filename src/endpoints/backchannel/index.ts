import { authenticate } from '../../clients/authentication/endpoint-authentication.ts';
import { cibaDeliveryModes, cibaGrantType, assertionAlgs } from '../../clients/metadata.ts';
import { bindingMessageProblem, readAuthenticationRequest } from '../../ciba/authentication-request.ts';
import { openCibaRequest } from '../../ciba/open.ts';
import type { CibaMode } from '../../ciba/store.ts';
import { clientAuthInput, postOnly, rejectRepeated, requireForm } from '../../http/oauth-request.ts';
import { sendJson } from '../../http/json.ts';
import { OAuthError } from '../../oauth-error.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';

/**
 * The backchannel authentication endpoint (OpenID CIBA Core 1.0 §7; docs/approvals.md "CIBA"). Its
 * rules, in order:
 * 1. POST only, 405 otherwise; the body is a form;
 * 2. a `binding_message` that is not printable text is `invalid_binding_message` (§13) — asked
 *    before the form's control-character rule, which would call it invalid_request;
 * 3. no parameter repeated but `resource` (RFC 6749 §3.2); no control characters;
 * 4. the client authenticates as at the token endpoint (§7.1: "the Client MUST authenticate to the
 *    Backchannel Authentication Endpoint using the authentication method registered"): private_key_jwt,
 *    mTLS, or a secret where its registration (and not FAPI 2.0) allows it;
 * 5. the client is registered for the CIBA grant with the poll or ping delivery mode (§4, §13
 *    unauthorized_client);
 * 6. the request's parameters (src/ciba/authentication-request.ts): signed where it must be,
 *    scope with openid, one hint naming an active person, binding_message, requested_expiry,
 *    client_notification_token in ping mode, authorization_details and resource;
 * 7. the request is opened (src/ciba/open.ts): the four-eyes requirement, the approval request and
 *    the CIBA row, in one transaction with `approval.requested`;
 * 8. 200 with {auth_req_id, expires_in, interval} (§7.3), no-store.
 */
export const backchannelAuthentication: Endpoint = {
  register(app, ctx) {
    const path = `${issuerPath(ctx.config.issuer)}/bc-authorize`;
    postOnly(app, path);
    app.post(path, async (request, reply) => {
      const problem = bindingMessageProblem(request.form?.get('binding_message'));
      if (problem) throw new OAuthError('invalid_binding_message', problem);
      const form = requireForm(request);
      rejectRepeated(form, ['resource']);
      const { client } = await authenticate(ctx, clientAuthInput(request, form));
      const mode = client.metadata.backchannel_token_delivery_mode;
      if (!client.metadata.grant_types.includes(cibaGrantType) || mode === undefined) {
        throw new OAuthError('unauthorized_client', `the client is not registered for ${cibaGrantType}`);
      }
      const read = await readAuthenticationRequest(ctx, client, form, mode as CibaMode);
      const opened = await openCibaRequest(ctx, client, mode as CibaMode, read, { requestId: request.id });
      // §7.3: auth_req_id, expires_in, interval; RFC 6749 §5.1's no-store.
      return sendJson(reply, { auth_req_id: opened.authReqId, expires_in: opened.expiresIn, interval: opened.interval });
    });
  },
  metadata: (ctx) => ({
    // CIBA Core §4: the OP's backchannel metadata.
    backchannel_authentication_endpoint: `${ctx.config.issuer}/bc-authorize`,
    backchannel_token_delivery_modes_supported: [...cibaDeliveryModes],
    backchannel_authentication_request_signing_alg_values_supported: [...assertionAlgs],
    backchannel_user_code_parameter_supported: false,
  }),
};
