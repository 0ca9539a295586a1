import { randomUUID } from 'node:crypto';
import type { Context } from '../context.ts';
import { OAuthError } from '../oauth-error.ts';
import type { Issuance } from '../policy/issuance.ts';
import { refuseFrozenOrSanctioned, wouldRefuseFrozenOrSanctioned } from '../risk/kyc/enforce.ts';
import { withBookNames } from '../transfers/beneficiary-name.ts';
import type { AuthorizationRequest } from './request.ts';
import { userinfoAudience } from './scopes.ts';

/**
 * KYC/AML before a person is asked (docs/authorization.md "Refused before the person is asked"):
 * what the token endpoint refuses whoever consents (src/risk/kyc/enforce.ts: a frozen person, a
 * frozen firm owning the client, a counterparty of authorization_details that the screening list
 * names or Clearance's records hold frozen — AMENDMENTS: "counterparties named in
 * authorization_details are screened too" — among them an IBAN transfer naming no beneficiary,
 * by its address book's name: src/transfers/beneficiary-name.ts) is refused before a consent page
 * is shown or a code issued, with the token endpoint's error and audit (`policy.denied`; a
 * `screening.matched` alert for a listed counterparty). `refuseBeforeAsking` is that check, for
 * /bc-authorize too (src/ciba/open.ts).
 *
 * Asked once the person is known — signed in already at /authorize, or after signing in during the
 * request — never for an anonymous browser: an unauthenticated caller must not be able to probe the
 * list or raise compliance alerts. The grant the code would be redeemed through is the audit's `via`.
 */
function issuanceOf(ctx: Pick<Context, 'config'>, request: AuthorizationRequest, userId: string, requestId: string): Issuance {
  return {
    subject: { type: 'User', id: userId },
    clientId: request.clientId,
    audience: request.resource ?? userinfoAudience(ctx.config.issuer),
    scopes: request.resource !== undefined ? request.scopes : request.oidcScopes,
    authorizationDetails: request.authorizationDetails,
    requestId,
    ...(request.txn !== undefined ? { txn: request.txn } : {}),
    grantType: 'authorization_code',
  };
}

/**
 * The refusal, audited as at the token endpoint, for the caller to answer as an authorization
 * error response (a redirect: the redirect_uri is established); undefined when nothing is refused.
 */
export async function refusalBeforeAsking(ctx: Context, request: AuthorizationRequest, userId: string, requestId: string = randomUUID()): Promise<OAuthError | undefined> {
  return refusalOf(ctx, await withBookNames(ctx, issuanceOf(ctx, request, userId, requestId)));
}

/**
 * `refusalBeforeAsking` for an issuance `refusedBeforeAsking` already screened: its entries are not
 * screened again.
 */
export async function refusalOf(ctx: Context, screened: Issuance): Promise<OAuthError | undefined> {
  try {
    await refuseFrozenOrSanctioned(ctx, screened);
    return undefined;
  } catch (error) {
    if (error instanceof OAuthError) return asRequestError(error);
    throw error;
  }
}

/**
 * The token endpoint's KYC/AML refusal of an issuance, made before anyone is asked to approve it
 * (here, and at /bc-authorize: src/ciba/open.ts), recorded as there: its entries screened as the
 * token endpoint screens them (src/transfers/beneficiary-name.ts `withBookNames`: a nameless IBAN
 * transfer by its address book's name; the book is read only for such an entry).
 */
export async function refuseBeforeAsking(ctx: Context, issuance: Issuance): Promise<void> {
  await refuseFrozenOrSanctioned(ctx, await withBookNames(ctx, issuance));
}

/**
 * The token endpoint's refusal as an authorization request's error: a frozen principal is the
 * token endpoint's `invalid_grant`, which is no error of an authorization response (RFC 6749
 * §4.1.2.1) nor of a backchannel authentication request (CIBA Core §13); both register
 * `access_denied`, "the resource owner or authorization server denied the request". Anything else
 * (invalid_authorization_details, RFC 9396 §5) passes as it is.
 */
export function asRequestError(error: OAuthError): OAuthError {
  return error.error === 'invalid_grant' ? new OAuthError('access_denied', error.description, error.detail !== undefined ? { detail: error.detail } : {}) : error;
}

/**
 * Whether `refusalBeforeAsking` would refuse (its entries screened as it screens them), recording
 * nothing: the screened issuance when it would, for `refusalOf` to refuse without screening it
 * again; undefined when it would not. The people side is told there is nothing to ask
 * (`nextStep` → done) and /authorize/resume answers the refusal.
 */
export async function refusedBeforeAsking(ctx: Context, request: AuthorizationRequest, userId: string, requestId: string = randomUUID()): Promise<Issuance | undefined> {
  const screened = await withBookNames(ctx, issuanceOf(ctx, request, userId, requestId));
  return (await wouldRefuseFrozenOrSanctioned(ctx, screened)) ? screened : undefined;
}
