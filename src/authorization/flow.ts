import type { AuditEvent } from '../audit/events.ts';
import type { Client } from '../clients/store.ts';
import { epochSeconds } from '../clock.ts';
import type { Context } from '../context.ts';
import { OAuthError } from '../oauth-error.ts';
import type { Flight } from '../storage/flight.ts';
import { refusedFor } from '../storage/flight.ts';
import { issueCode } from './codes.ts';
import { findActiveGrant, type ConsentGrant } from './consent.ts';
import type { Authentication } from './contract.ts';
import {
  browserDigest,
  completeInteraction,
  completeInteractionIn,
  createInteraction,
  createInteractionFromRequestUri,
  evaluateInteraction,
  loadStoredInteraction,
  recordStepUpIn,
  type StoredInteraction,
  approvalNeed,
} from './interactions.ts';
import type { ApprovalRecord } from '../approvals/records.ts';
import type { AuthorizationParameters } from './parameters.ts';
import { consumePushedRequest, consumePushedRequestIn, resolveRequestUri } from './pushed-requests.ts';
import {
  AuthorizationPageError,
  AuthorizationRedirectError,
  pageStep,
  pageStepAsync,
  requireAuthorizationClient,
  validateAuthorizationRequest,
  type AuthorizationRequest,
} from './request.ts';
import { authorizationResponseLocation } from './response.ts';
import { needs } from './steps.ts';
import { authenticationDemands, requirementOf } from './requirements.ts';
import { mergedStepUp, stepUpCompletedEvent, stepUpMet, stepUpOf, stepUpRequestedEvent, type StepUpRecord } from './step-up.ts';
import { maybePruneAuthorizationState } from './pruning.ts';
import { matchesRegisteredRedirectUri } from './redirect-uri.ts';
import { startTxn } from '../transactions/txn.ts';
import { refusalBeforeAsking, refusalOf, refusedBeforeAsking } from './kyc.ts';

/**
 * The authorization endpoint's protocol (RFC 6749 §4.1, OIDC Core §3.1.2, RFC 9126 §4, RFC 9101),
 * without HTTP: what to do with a request, as one of three outcomes the HTTP layer carries out.
 */
export type AuthorizeOutcome =
  /** Render an error page; never redirect (client or redirect_uri not established). */
  | { kind: 'page'; error: OAuthError }
  /** The authorization response (code or error), a 303 to the client's redirect_uri. */
  | { kind: 'redirect'; location: string }
  /** A 303 to the people side, which logs the person in and asks for consent. */
  | { kind: 'interaction'; location: string; interactionId: string };

export interface AuthorizeInput {
  params: AuthorizationParameters;
  /**
   * The person's session, as the people side's readSession finds it — read with `flight`'s
   * statements (the pushed request): it adds its read to the flight, and nothing when no session
   * cookie was sent.
   */
  session: (flight: Flight) => Promise<Authentication | undefined>;
  /** The browser-binding value of this browser (a cookie the HTTP layer keeps). */
  browserId: string;
  /** The HTTP request's id, for the audit events of a refusal. */
  requestId?: string;
}

/**
 * GET|POST /authorize. The rules, in order:
 * 1. the client exists and may use the code flow — else a page (RFC 6749 §4.1.2.1);
 * 2. with `request_uri` (and no `request`): the pushed request of this client, unexpired and not
 *    yet completed (RFC 9126 §4; its redirect_uri still registered) — else a page
 *    (invalid_request_uri / invalid_request);
 * 3. otherwise the request's parameters, or its signed request object (RFC 9101) — errors before
 *    redirect_uri is validated are pages, after it redirects; a client that must use PAR is refused;
 * 4. a signed-in person the session acts for (not one sent to sign in again): what the token endpoint would refuse whoever consents — a frozen person
 *    or client firm (access_denied; the token endpoint's invalid_grant is no authorization error), a counterparty of authorization_details listed or frozen
 *    (invalid_authorization_details) — is refused now, audited as there (./kyc.ts); nobody is asked;
 * 5. `prompt=none`: the session must suffice — else login_required / consent_required (OIDC Core §3.1.2.6);
 * 6. a session that suffices and a grant that covers the request → the code at once;
 * 7. otherwise an interaction, and the browser goes to the people side.
 *
 * Round trips: the session and the pushed request are read together; for a browser with no
 * session cookie (nobody can be signed in, so an interaction is needed) the interaction is
 * created from the pushed request in the statement that reads it (createInteractionFromRequestUri).
 */
export async function startAuthorization(ctx: Context, input: AuthorizeInput): Promise<AuthorizeOutcome> {
  maybePruneAuthorizationState(ctx);
  let request: AuthorizationRequest;
  let created: StoredInteraction | undefined;
  const flight = ctx.storage.flight();
  let session: Promise<Authentication | undefined> | undefined;
  try {
    const client = await requireAuthorizationClient(ctx, input.params);
    session = input.session(flight);
    session.catch(() => undefined); // awaited below; an error path leaves it unread
    // The people side read nothing: no session cookie, so nobody is signed in.
    const signedOut = flight.size === 0;
    ({ request, created } = await readRequest(ctx, client, input.params, flight, signedOut ? input.browserId : undefined));
  } catch (error) {
    if (!flight.sent) await flight.send(); // what was added is read, so nothing waits for it
    return asOutcome(ctx, error);
  }
  const authentication = await session;

  const now = epochSeconds(ctx.clock);
  const [grant, demanded, wouldRefuse] = await Promise.all([
    authentication ? findActiveGrant(ctx, authentication.userId, request.clientId) : undefined,
    authenticationDemands(ctx, request, authentication),
    // Step 4's question, asked beside the reads it does not depend on (the person's KYC record is cached).
    authentication ? refusedBeforeAsking(ctx, request, authentication.userId, input.requestId) : undefined,
  ]);
  // OIDC Core §5.5.1.1: an essential acr no level of Clearance's meets is a failed authentication.
  if (!demanded.ok) return respondError(ctx, request, unmetRequirements());
  // Approving an order is done on the consent page, each time (a remembered grant never stands in for it).
  const approval = authentication ? approvalNeed(demanded, request, null) : undefined;
  const need = needs({ request, authentication, freshLogin: false, required: requirementOf(demanded.demands), grant, approvedHere: false, ...(approval ? { approval } : {}), now });
  // Step 4, for the person this session would act as: not when they are sent to sign in (again,
  // perhaps as someone else: prompt=login, max_age, a hint naming another) — resume asks it then.
  if (wouldRefuse && need.step !== 'login') {
    const refused = await refusalOf(ctx, wouldRefuse);
    if (refused) return created ? endInteraction(ctx, created, [], refused) : respondError(ctx, request, refused);
  }
  if (request.prompt.includes('none')) {
    // OIDC Core §3.1.2.6: with prompt=none the OP MUST NOT display any UI; it returns an error instead.
    if (need.step === 'login') return respondError(ctx, request, new OAuthError('login_required', 'the person must log in'));
    if (need.step === 'consent') return respondError(ctx, request, new OAuthError('consent_required', 'the person must consent'));
    return respondCode(ctx, request, authentication!, grant!);
  }
  if (need.step === 'done') return respondCode(ctx, request, authentication!, grant!);
  // A signed-in person sent to sign in at a higher level: the step-up is kept on the interaction
  // and audited in the transaction that creates it (step-up.ts).
  const stepUp = stepUpOf(need, request, authentication, demanded.demands, ctx.clock.now());
  let interaction: StoredInteraction;
  if (stepUp && !created) {
    const flight = ctx.storage.flight();
    interaction = await createInteraction(ctx, request, input.browserId, { stepUp, flight });
    await ctx.audit.commit(flight, [stepUpRequestedEvent(stepUp, { clientId: request.clientId, userId: authentication!.userId, interactionId: interaction.id })]);
  } else {
    interaction = created ?? (await createInteraction(ctx, request, input.browserId));
  }
  return { kind: 'interaction', interactionId: interaction.id, location: `${ctx.config.issuer}/interaction/${interaction.id}` };
}

/**
 * GET /authorize/resume/{id}, where the people side sends the browser after each step. The
 * interaction must exist, be pending and belong to this browser; then the person's denial is an
 * `access_denied` response; what the token endpoint would refuse whoever consents (./kyc.ts: a
 * frozen person or client firm, a listed or frozen counterparty — the list or a record may have
 * changed since /authorize, or the person signed in during the request) ends the request with
 * that refusal, audited; a remaining step sends the browser back to the people side, and when
 * nothing remains the code is issued (once: completing is a conditional update, in the
 * transaction that issues the code).
 *
 * The interaction is read once, with the grant of the person who logged in during it; the
 * session (`input.session`, the people side's readSession) is read only when nobody did, since
 * the interaction's own login then decides who the person is.
 */
export async function resumeAuthorization(
  ctx: Context,
  id: string,
  input: { session: () => Promise<Authentication | undefined>; browserId: string | undefined; requestId?: string },
): Promise<AuthorizeOutcome> {
  const stored = await loadStoredInteraction(ctx, id);
  if (!stored || stored.completedAt !== null) {
    return page('invalid_request', 'this authorization request is unknown, has expired, or was already completed; start again from the application');
  }
  // The interaction is bound to the browser that started it: a link to another browser's
  // interaction cannot be completed with this browser's session (session swapping).
  if (input.browserId === undefined || browserDigest(input.browserId) !== stored.browserHash) {
    return page('invalid_request', 'this authorization request was started in another browser; start again from the application');
  }
  const request = stored.request;
  const client = await ctx.clients.get(request.clientId);
  // The client may have been removed or changed its redirect URIs meanwhile.
  if (!client || !matchesRegisteredRedirectUri(client.metadata.redirect_uris ?? [], request.redirectUri)) {
    return page('invalid_request', 'the client or its redirect_uri is no longer registered');
  }
  const session = stored.authentication ? undefined : await input.session();
  const { need, authentication, grant, demands, unmet } = await evaluateInteraction(ctx, stored, session);
  const where = { clientId: request.clientId, userId: authentication?.userId, interactionId: id };
  // OIDC Core §5.5.1.1: a requirement the person cannot reach (they said so: declineAuthentication)
  // or no level meets is a failed authentication.
  if (unmet || stored.stepUp?.declined) {
    const events = stored.stepUp ? [stepUpCompletedEvent(stored.stepUp, 'declined', where)] : [];
    return endInteraction(ctx, stored, events, unmetRequirements());
  }
  if (authentication && stored.consent?.decision === 'denied' && stored.consent.userId === authentication.userId) {
    // RFC 6749 §4.1.2.1: the resource owner denied the request.
    const outcome = stored.stepUp && stepUpMet(stored.stepUp, authentication, ctx.clock.now()) ? 'met' : 'unmet';
    const events = stored.stepUp ? [stepUpCompletedEvent(stored.stepUp, outcome, where, authentication)] : [];
    return endInteraction(ctx, stored, events, new OAuthError('access_denied', 'the person denied the request'));
  }
  if (authentication) {
    const refused = await refusalBeforeAsking(ctx, request, authentication.userId, input.requestId);
    if (refused) {
      const outcome = stored.stepUp && stepUpMet(stored.stepUp, authentication, ctx.clock.now()) ? 'met' : 'unmet';
      const events = stored.stepUp ? [stepUpCompletedEvent(stored.stepUp, outcome, where, authentication)] : [];
      return endInteraction(ctx, stored, events, refused);
    }
  }
  if (need.step !== 'done') {
    const next = stepUpOf(need, request, authentication, demands, ctx.clock.now());
    const stepUp = next && stored.stepUp ? mergedStepUp(stored.stepUp, next) : next;
    if (stepUp && JSON.stringify(stepUp) !== JSON.stringify(stored.stepUp)) {
      // A new step-up is audited as it is kept; a pending one asked again keeps its id, silently.
      const flight = ctx.storage.flight();
      recordStepUpIn(flight, ctx, id, stepUp);
      try {
        await ctx.audit.commit(flight, stored.stepUp ? [] : [stepUpRequestedEvent(stepUp, { ...where, userId: authentication!.userId })]);
      } catch (error) {
        if (refusedFor(error, 'interaction_not_pending')) return alreadyCompleted();
        throw error;
      }
    }
    return { kind: 'interaction', interactionId: id, location: `${ctx.config.issuer}/interaction/${id}` };
  }
  return respondCode(ctx, request, authentication!, grant!, id, stored.stepUp ?? undefined, stored.approval ?? undefined);
}

/**
 * Ends an interaction with an error response: completing it, consuming its pushed request and
 * `events` are one transaction (one flight).
 */
async function endInteraction(ctx: Context, stored: StoredInteraction, events: AuditEvent[], error: OAuthError): Promise<AuthorizeOutcome> {
  const flight = ctx.storage.flight();
  completeInteractionIn(flight, ctx, stored.id);
  if (stored.request.pushedRequestId !== undefined) consumePushedRequestIn(flight, ctx, stored.request.pushedRequestId, { required: false });
  try {
    await ctx.audit.commit(flight, events);
  } catch (failure) {
    if (refusedFor(failure, 'interaction_completed')) return alreadyCompleted();
    throw failure;
  }
  return respondError(ctx, { ...stored.request, pushedRequestId: undefined }, error);
}

/** OIDC Core §5.5.1.1; OpenID Connect Core Error Code unmet_authentication_requirements 1.0. */
function unmetRequirements(): OAuthError {
  return new OAuthError('unmet_authentication_requirements', 'the authentication level this request requires was not reached');
}

/**
 * Steps 2-3: the request, from a request_uri, a request object, or plain parameters. Sends
 * `flight` (with what the caller added) once the pushed request's read is in it. With
 * `browserId` (nobody is signed in), a pushed request is read by creating its interaction.
 */
async function readRequest(
  ctx: Context,
  client: Client,
  params: AuthorizationParameters,
  flight: Flight,
  browserId: string | undefined,
): Promise<{ request: AuthorizationRequest; created?: StoredInteraction }> {
  const requestUri = pageStep(() => params.string('request_uri'));
  if (requestUri === undefined) {
    await flight.send();
    const request = await validateAuthorizationRequest(ctx, client, params, { pushed: false });
    // RFC 9126 §6: a client registered with require_pushed_authorization_requests must use PAR.
    if (client.metadata.require_pushed_authorization_requests) {
      throw new AuthorizationRedirectError(
        new OAuthError('invalid_request', 'this client must use pushed authorization requests (PAR)'),
        request.redirectUri,
        request.state,
      );
    }
    // The person's order starts its trade here (src/transactions/txn.ts); a taken txn goes back to the client.
    if (request.txn !== undefined) {
      try {
        await startTxn(ctx, request.txn, client.metadata.client_id);
      } catch (error) {
        if (error instanceof OAuthError) throw new AuthorizationRedirectError(error, request.redirectUri, request.state);
        throw error;
      }
    }
    return { request };
  }
  if (params.has('request')) throw new AuthorizationPageError(new OAuthError('invalid_request', 'send request or request_uri, not both'));
  // RFC 9126 §4: parameters other than client_id and request_uri are ignored.
  const clientId = client.metadata.client_id;
  const creating = browserId !== undefined ? createInteractionFromRequestUri(ctx, clientId, requestUri, browserId, flight) : undefined;
  const resolving = creating ? undefined : pageStepAsync(() => resolveRequestUri(ctx, clientId, requestUri, flight));
  resolving?.catch(() => undefined); // awaited below, after the flight was sent
  await flight.send();
  const created = await creating;
  // Without an interaction made from it, the pushed request is read on its own: it says why not.
  const request = created ? created.request : await (resolving ?? pageStepAsync(() => resolveRequestUri(ctx, clientId, requestUri))).then((p) => p.request);
  if (!matchesRegisteredRedirectUri(client.metadata.redirect_uris ?? [], request.redirectUri)) {
    throw new AuthorizationPageError(new OAuthError('invalid_request', 'redirect_uri is no longer registered for this client'));
  }
  return created ? { request, created } : { request };
}

/**
 * Issues the code and redirects to the client. In one transaction, sent as one flight: the
 * interaction it completes (`interactionId`) is completed — a conditional update, so a double
 * resume issues one code; the pushed request is consumed, once: a second authorization completing
 * from the same request_uri gets invalid_request_uri (RFC 9126 §4), and its interaction is
 * completed all the same; the code is stored and `code.issued` recorded, durable before the
 * response leaves (DESIGN §5). The conditions are the database's to check (storage/flight.ts):
 * when one fails, nothing of the transaction is written.
 */
async function respondCode(
  ctx: Context,
  request: AuthorizationRequest,
  auth: Authentication,
  grant: ConsentGrant,
  interactionId?: string,
  stepUp?: StepUpRecord,
  approval?: ApprovalRecord,
): Promise<AuthorizeOutcome> {
  const binding: Parameters<typeof issueCode>[1] = {
    clientId: request.clientId,
    grantId: grant.id,
    userId: auth.userId,
    redirectUri: request.redirectUri,
    codeChallenge: request.codeChallenge,
    payload: {
      ...(request.resource !== undefined ? { resource: request.resource } : {}),
      scopes: request.scopes,
      oidcScopes: request.oidcScopes,
      authorizationDetails: request.authorizationDetails,
      ...(request.nonce !== undefined ? { nonce: request.nonce } : {}),
      authTime: auth.authTime,
      acr: auth.acr,
      amr: auth.amr,
      sessionId: auth.sessionId,
      // RFC 9449 §10: the code is bound to the DPoP key of dpop_jkt or PAR's proof.
      ...(request.dpopJkt !== undefined ? { dpopJkt: request.dpopJkt } : {}),
      ...(request.mandate !== undefined ? { mandate: request.mandate } : {}),
      ...(request.txn !== undefined ? { txn: request.txn } : {}),
      // The step-up the code concludes: its token.issued names it.
      ...(stepUp ? { stepUpId: stepUp.id } : {}),
      // The person's passkey approval of the order entries: its tokens carry the digest.
      ...(approval ? { approval: { id: approval.id, digest: approval.digest } } : {}),
      // The sign-in's risk signals: every issuance from this grant sees them (Issuance.loginRisk).
      ...(auth.loginRisk !== undefined ? { loginRisk: auth.loginRisk } : {}),
      // The managed device the person signed in from: every token of the grant names it.
      ...(auth.deviceId !== undefined ? { deviceId: auth.deviceId } : {}),
      // The upstream identity provider that vouched for the sign-in: every token of the grant names it.
      ...(auth.assurance !== undefined ? { assurance: auth.assurance } : {}),
    },
  };
  // One flight: of a double resume, or of two authorizations from one request_uri, one commits.
  const flight = ctx.storage.flight();
  if (interactionId !== undefined) completeInteractionIn(flight, ctx, interactionId);
  if (request.pushedRequestId !== undefined) consumePushedRequestIn(flight, ctx, request.pushedRequestId);
  const { code, id } = await issueCode(ctx, binding, flight);
  const issued: AuditEvent = {
    type: 'code.issued',
    actor: auth.userId,
    subject: auth.userId,
    client: request.clientId,
    issuer: ctx.config.issuer,
    ...(request.resource !== undefined ? { audience: request.resource } : {}),
    scopes: [...request.oidcScopes, ...request.scopes],
    details: { code_id: id, grant_id: grant.id, via: request.via, acr: auth.acr, amr: auth.amr, auth_time: auth.authTime, ...(stepUp ? { step_up_id: stepUp.id } : {}), ...(approval ? { approval_id: approval.id } : {}) },
  };
  const where = { clientId: request.clientId, userId: auth.userId, interactionId: interactionId ?? '' };
  const concluded = stepUp ? [stepUpCompletedEvent(stepUp, stepUpMet(stepUp, auth, ctx.clock.now()) ? 'met' : 'unmet', where, auth)] : [];
  try {
    await ctx.audit.commit(flight, [...concluded, issued]);
  } catch (error) {
    if (refusedFor(error, 'interaction_completed')) return alreadyCompleted();
    if (!refusedFor(error, 'request_uri_used')) throw error;
    // Another authorization completed from this request_uri: no code, and this interaction ends too.
    if (interactionId !== undefined && !(await completeInteraction(ctx, interactionId))) return alreadyCompleted();
    return respondError(ctx, { ...request, pushedRequestId: undefined }, new OAuthError('invalid_request_uri', 'the request_uri was already used'));
  }
  return { kind: 'redirect', location: authorizationResponseLocation(request.redirectUri, ctx.config.issuer, request.state, { code }) };
}

/** An error authorization response; it completes (consumes) a pushed request too. */
async function respondError(ctx: Context, request: AuthorizationRequest, error: OAuthError): Promise<AuthorizeOutcome> {
  if (request.pushedRequestId !== undefined) await consumePushedRequest(ctx, request.pushedRequestId);
  return { kind: 'redirect', location: authorizationResponseLocation(request.redirectUri, ctx.config.issuer, request.state, { error }) };
}

function asOutcome(ctx: Context, error: unknown): AuthorizeOutcome {
  if (error instanceof AuthorizationPageError) return { kind: 'page', error: error.oauth };
  if (error instanceof AuthorizationRedirectError) {
    return { kind: 'redirect', location: authorizationResponseLocation(error.redirectUri, ctx.config.issuer, error.state, { error: error.oauth }) };
  }
  throw error;
}

function alreadyCompleted(): AuthorizeOutcome {
  return page('invalid_request', 'this authorization request was already completed');
}

function page(error: string, description: string): AuthorizeOutcome {
  return { kind: 'page', error: new OAuthError(error, description) };
}
