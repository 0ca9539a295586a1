import type { AuditEvent } from '../audit/events.ts';
import type { AuthenticatedClient } from '../clients/authentication/types.ts';
import type { Context } from '../context.ts';
import type { FormParameters } from '../parameters.ts';
import type { VerifiedDpopProof } from '../tokens/dpop.ts';
import { settleIssuance, type IssuedAccessToken } from '../tokens/issue.ts';

/**
 * The parameters a grant may read: only those it declares (RFC 6749 §3.2: the endpoint ignores
 * unrecognized parameters), so reading an undeclared one is a type error and, at run time, absent.
 */
export interface GrantParameters<P extends string = string> {
  /** The value of a parameter sent once; undefined when absent or empty. */
  get(name: P): string | undefined;
  /** Every value of a parameter that may repeat. */
  all(name: P): string[];
}

/** The view of `params` a grant with these declared parameters gets. */
export function declaredParameters<P extends string>(params: FormParameters, declared: readonly P[]): GrantParameters<P> {
  const allowed = new Set<string>(declared);
  return {
    get: (name) => (allowed.has(name) ? params.get(name) : undefined),
    all: (name) => (allowed.has(name) ? params.all(name) : []),
  };
}

/** A token request after client authentication, as a grant sees it (no HTTP). */
export interface GrantRequest<P extends string = string> {
  params: GrantParameters<P>;
  client: AuthenticatedClient;
  requestId: string;
  /** The request's verified DPoP proof (RFC 9449 §5), when it carried one. */
  dpop?: VerifiedDpopProof;
  /** The request's source address (after trusted proxies), for the risk signals (src/risk). */
  address?: string;
}

/** The successful token response (RFC 6749 §5.1 and extensions). */
export interface TokenResponse {
  access_token: string;
  /** `N_A`: RFC 8693 §2.2.1 for an issued token that is no access token (a JWT authorization grant). */
  token_type: 'Bearer' | 'DPoP' | 'N_A';
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
   * The `token.issued` event carrying the decisions that allowed it (or, when they could not be
   * folded into it, those as separate events too), for the endpoint to make durable before the
   * response leaves; absent when the grant recorded them itself, in the transaction of
   * its writes (`AuditLog.recordWith`).
   */
  events?: AuditEvent[];
  /**
   * For the endpoint to call once the events are durable: the risk signals remember what the
   * issuance saw (src/tokens/issue.ts `observe`).
   */
  observe?: () => Promise<void>;
}

/**
 * The handler of one grant type at the token endpoint (DESIGN §2: one file per grant). Not to be
 * confused with a person's consent grant (src/authorization/consent.ts).
 */
export interface GrantHandler<P extends string = string> {
  grantType: string;
  /** Parameters this grant reads besides grant_type and client authentication; it sees no others. */
  parameters: readonly P[];
  /** Parameters that may be sent more than once (RFC 8707 `resource`, RFC 8693 `audience`). */
  repeatable?: readonly P[];
  /**
   * Accept public clients (token_endpoint_auth_method none, identified by client_id alone): only
   * grants whose proof does not rest on client authentication (a PKCE-bound code, a rotating
   * refresh token) set this.
   */
  allowPublic?: boolean;
  handle(request: GrantRequest<P>, ctx: Context): Promise<GrantResult>;
}

/** Declares a grant handler, its parameter names inferred from `parameters`. */
export function defineGrant<const P extends string>(grant: GrantHandler<P>): GrantHandler {
  return grant as unknown as GrantHandler;
}

/**
 * The end of a grant whose events the endpoint would make durable (client credentials, token
 * exchange): `finish` runs its own writes (a txn's start) and answers. For a token carrying
 * transfers (`issued.release`), the grant records the events itself, so that a failure of any of
 * it — the write refused, the events' commit — takes the transfers' reservations back
 * (src/tokens/issue.ts `settleIssuance`; docs/transfers.md "What is counted"). Otherwise `finish`
 * alone, its events left to the endpoint as before: nothing more on the hot path. `contended`: a
 * failure may be another issuance of the same txn winning (see `settleIssuance`).
 */
export function settleGrant(ctx: Context, issued: Pick<IssuedAccessToken, 'release'>, finish: () => Promise<GrantResult>, options: { contended?: boolean } = {}): Promise<GrantResult> {
  if (!issued.release) return finish();
  return settleIssuance(
    issued,
    async () => {
      const result = await finish();
      // All in one transaction (AuditLog.commit), as the endpoint would: none durable without the others.
      if (result.events && result.events.length > 0) await ctx.audit.commit(ctx.storage.flight(), result.events);
      return { response: result.response, ...(result.observe ? { observe: result.observe } : {}) };
    },
    options,
  );
}
