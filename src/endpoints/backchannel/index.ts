import { authenticate } from '../../clients/authentication/endpoint-authentication.ts';
import { cibaDeliveryModes, cibaGrantType, assertionAlgs } from '../../clients/metadata.ts';
import { readAuthenticationRequest } from '../../ciba/authentication-request.ts';
import { openCibaRequest } from '../../ciba/open.ts';
import type { CibaMode } from '../../ciba/store.ts';
import type { FastifyRequest } from 'fastify';
import { clientAuthInput, postOnly, rejectRepeated } from '../../http/oauth-request.ts';
import { sendJson } from '../../http/json.ts';
import { OAuthError } from '../../oauth-error.ts';
import { parameterTextProblem, type FormParameters } from '../../parameters.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';

/**
 * The backchannel authentication endpoint (OpenID CIBA Core 1.0 §7; docs/approvals.md "CIBA"). Its
 * rules, in order:
 * 1. POST only, 405 otherwise; the body is a form;
 * 2. no parameter repeated but `resource` (RFC 6749 §3.2); no control characters in any parameter
 *    but `binding_message` (`requireCibaForm`): that one is judged in rule 5, after the client
 *    authenticated, where a control character in it is §13's `invalid_binding_message`, not the
 *    form's invalid_request — and a caller that has not authenticated learns nothing of it;
 * 3. the client authenticates as at the token endpoint (§7.1: "the Client MUST authenticate to the
 *    Backchannel Authentication Endpoint using the authentication method registered"): private_key_jwt,
 *    mTLS, or a secret where its registration (and not FAPI 2.0) allows it;
 * 4. the client is registered for the CIBA grant with the poll or ping delivery mode (§4, §13
 *    unauthorized_client);
 * 5. the request's parameters (src/ciba/authentication-request.ts): signed where it must be,
 *    binding_message printable text (else invalid_binding_message) and present for a FAPI 2.0
 *    client (FAPI-CIBA §5.2.2), scope with openid, one hint
 *    naming an active person, requested_expiry, client_notification_token in ping mode,
 *    authorization_details (a counterparty the screening list names is invalid_authorization_details,
 *    as at the token endpoint) and resource;
 * 6. the request is opened (src/ciba/open.ts): the four-eyes requirement, the approval request and
 *    the CIBA row, in one transaction with `approval.requested` — unless the client may not prompt
 *    the person now (src/ciba/prompts.ts: too many of its requests wait for them, or they just
 *    denied several): access_denied (§13, 403), recorded as `token.refused`;
 * 7. 200 with {auth_req_id, expires_in, interval} (§7.3), no-store.
 */
export const backchannelAuthentication: Endpoint = {
  register(app, ctx) {
    const path = `${issuerPath(ctx.config.issuer)}/bc-authorize`;
    postOnly(app, path);
    app.post(path, async (request, reply) => {
      const form = requireCibaForm(request);
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

/**
 * Rule 2's form: as src/http/oauth-request.ts requireForm, the OAuth rule on control characters
 * (src/parameters.ts) asked of every parameter but `binding_message`, whose own rule (printable
 * text, which refuses every control character too) src/ciba/authentication-request.ts asks once
 * the client has authenticated.
 */
function requireCibaForm(request: FastifyRequest): FormParameters {
  const form = request.form;
  if (!form) throw new OAuthError('invalid_request', 'the body must be application/x-www-form-urlencoded');
  for (const name of form.names()) {
    if (name === 'binding_message') continue;
    for (const value of form.all(name)) {
      const problem = parameterTextProblem(name, value);
      if (problem) throw new OAuthError('invalid_request', problem);
    }
  }
  return form;
}
