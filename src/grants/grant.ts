import type { AuditEvent } from '../audit/events.ts';
import type { AuthenticatedClient } from '../clients/authentication/types.ts';
import type { Context } from '../context.ts';
import type { FormParameters } from '../parameters.ts';
import type { VerifiedDpopProof } from '../tokens/dpop.ts';

/** A token request after client authentication, as a grant sees it (no HTTP). */
export interface GrantRequest {
  params: FormParameters;
  client: AuthenticatedClient;
  requestId: string;
  /** The request's verified DPoP proof (RFC 9449 §5), when it carried one. */
  dpop?: VerifiedDpopProof;
}

/** The successful token response (RFC 6749 §5.1 and extensions). */
export interface TokenResponse {
  access_token: string;
  token_type: 'Bearer' | 'DPoP';
  expires_in: number;
  scope?: string;
  refresh_token?: string;
  id_token?: string;
  issued_token_type?: string;
  authorization_details?: unknown[];
}

export interface GrantResult {
  response: TokenResponse;
  /**
   * The `token.issued` event and the decisions that allowed it, for the endpoint to make durable
   * before the response leaves; absent when the grant recorded them itself, in the transaction of
   * its writes (`AuditLog.recordWith`).
   */
  events?: AuditEvent[];
}

/** One grant type (DESIGN §2: one file per grant). */
export interface Grant {
  grantType: string;
  /** Parameters this grant reads besides grant_type and client authentication. Others are ignored. */
  parameters: readonly string[];
  /** Parameters that may be sent more than once (RFC 8707 `resource`, RFC 8693 `audience`). */
  repeatable?: readonly string[];
  /**
   * Accept public clients (token_endpoint_auth_method none, identified by client_id alone): only
   * grants whose proof does not rest on client authentication (a PKCE-bound code, a rotating
   * refresh token) set this.
   */
  allowPublic?: boolean;
  handle(request: GrantRequest, ctx: Context): Promise<GrantResult>;
}
