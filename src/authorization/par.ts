import type { AuthenticatedClient } from '../clients/authentication/types.ts';
import type { Context } from '../context.ts';
import { OAuthError } from '../oauth-error.ts';
import type { FormParameters } from '../parameters.ts';
import type { VerifiedDpopProof } from '../tokens/dpop.ts';
import { AuthorizationParameters } from './parameters.ts';
import { storePushedRequest, type PushedRequest } from './pushed-requests.ts';
import { AuthorizationPageError, AuthorizationRedirectError, validateAuthorizationRequest } from './request.ts';
import { startTxn } from '../transactions/txn.ts';

/**
 * The pushed authorization request endpoint's protocol (RFC 9126 §2), after client authentication:
 * 1. `request_uri` is not allowed in the body (§2.1);
 * 2. the client may use the code flow (§2.3 unauthorized_client);
 * 3. the request is validated as the authorization endpoint would (§2.1), from its signed request
 *    object when there is one (RFC 9101; §3), and every error is returned here as JSON (§2.3),
 *    never as a redirect;
 * 4. a DPoP proof sent with the request (RFC 9449 §10.1) binds the code to its key; with `dpop_jkt`
 *    too, both must name the same key (else invalid_request);
 * 5. it is stored under a fresh request_uri with 256 random bits (§2.2, §7.1), valid 60 s.
 */
export async function pushAuthorizationRequest(
  ctx: Context,
  authenticated: AuthenticatedClient,
  form: FormParameters,
  dpop?: VerifiedDpopProof,
): Promise<PushedRequest> {
  // RFC 9126 §2.1: the request_uri authorization request parameter MUST NOT be provided.
  if (form.all('request_uri').length > 0) throw new OAuthError('invalid_request', 'request_uri must not be sent to the PAR endpoint');
  const client = authenticated.client;
  if (!client.metadata.grant_types.includes('authorization_code')) {
    throw new OAuthError('unauthorized_client', 'the client is not registered for the authorization code flow');
  }
  try {
    const request = await validateAuthorizationRequest(ctx, client, AuthorizationParameters.fromForm(form, 'form'), { pushed: true });
    if (dpop) {
      // RFC 9449 §10.1: with both, the request MUST be rejected if dpop_jkt is not the proof's key.
      if (request.dpopJkt !== undefined && request.dpopJkt !== dpop.jkt) {
        throw new OAuthError('invalid_request', 'dpop_jkt does not match the key of the DPoP proof', { detail: 'PAR dpop_jkt differs from the DPoP proof key' });
      }
      request.dpopJkt = dpop.jkt;
    }
    // The person's order starts its trade here (src/transactions/txn.ts): a taken txn is refused now.
    if (request.txn !== undefined) await startTxn(ctx, request.txn, client.metadata.client_id);
    return await storePushedRequest(ctx, request);
  } catch (error) {
    if (error instanceof AuthorizationPageError || error instanceof AuthorizationRedirectError) throw error.oauth;
    throw error;
  }
}
