import { randomBytes } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { detailTypes } from '../../authorization/authorization-details.ts';
import { resumeAuthorization, startAuthorization, type AuthorizeOutcome } from '../../authorization/flow.ts';
import { AuthorizationParameters } from '../../authorization/parameters.ts';
import { codeChallengeMethods } from '../../authorization/pkce.ts';
import { requestObjectAlgs } from '../../authorization/request-object.ts';
import { oidcScopes } from '../../authorization/scopes.ts';
import { signingAlgs } from '../../config.ts';
import type { Context } from '../../context.ts';
import { cookieValues, serializeCookie } from '../../identity/cookies.ts';
import { cookieName, cookieScope, readSession } from '../../identity/sessions.ts';
import { OAuthError } from '../../oauth-error.ts';
import type { Flight } from '../../storage/flight.ts';
import { FormParameters } from '../../parameters.ts';
import { sendErrorPage } from '../../ui/respond.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';
import { acrLadder } from '../../identity/acr.ts';
import { subjectTypes } from '../../identity/pairwise.ts';

/**
 * The authorization endpoint (RFC 6749 §3.1, §4.1; OIDC Core §3.1.2). The protocol is in
 * src/authorization/flow.ts; this file only carries its outcomes over HTTP:
 * 1. GET (query) or POST (form) /authorize: the parameters (RFC 6749 §3.1: GET MUST be
 *    supported, POST MAY), the person's session (the people side's readSession) and this browser's
 *    binding cookie go to `startAuthorization`; a POST whose body is not a form → an error page;
 * 2. GET /authorize/resume/{id}: where the people side sends the browser after login or consent;
 * 3. outcomes: an error page (400, never a redirect, when the client or redirect_uri is not
 *    established; RFC 6749 §4.1.2.1), or a 303 See Other — to the client with the response
 *    (code or error, always with iss, RFC 9207) or to /interaction/{id}. 303, never 307, so the
 *    browser never re-posts a form to the client (RFC 9700 §4.12);
 * 4. no CORS (RFC 9700 §2.6: the endpoint is for top-level navigation), never framed, never cached,
 *    no referrer (the app's security headers).
 */
export const authorization: Endpoint = {
  register(app, ctx) {
    const base = issuerPath(ctx.config.issuer);

    app.get(`${base}/authorize`, async (request, reply) => {
      const query = request.url.includes('?') ? request.url.slice(request.url.indexOf('?') + 1) : '';
      return start(ctx, request, reply, AuthorizationParameters.fromForm(new FormParameters(query), 'query'));
    });
    app.post(`${base}/authorize`, async (request, reply) => {
      if (!request.form) {
        const error = new OAuthError('invalid_request', 'the body must be application/x-www-form-urlencoded');
        return sendOutcome(ctx, request, reply, { kind: 'page', error });
      }
      return start(ctx, request, reply, AuthorizationParameters.fromForm(request.form, 'form'));
    });
    // A wildcard rather than `:id`: an overlong id must get our error page, not the router's bare 414.
    app.get<{ Params: { '*': string } }>(`${base}/authorize/resume/*`, async (request, reply) => {
      // The session is read only when the interaction needs it (nobody logged in during it).
      const session = () => readSession(ctx, request.headers.cookie);
      const outcome = await resumeAuthorization(ctx, request.params['*'], { session, browserId: presentedBrowserId(ctx, request), requestId: request.id });
      return sendOutcome(ctx, request, reply, outcome);
    });
  },
  metadata: (ctx) => ({
    authorization_endpoint: `${ctx.config.issuer}/authorize`,
    response_types_supported: ['code'],
    response_modes_supported: ['query'],
    code_challenge_methods_supported: [...codeChallengeMethods],
    // RFC 9207 §3: iss is in every authorization response.
    authorization_response_iss_parameter_supported: true,
    // OIDC Discovery §3; pairwise per OIDC Core §8.1 (src/identity/pairwise.ts).
    subject_types_supported: [...subjectTypes],
    id_token_signing_alg_values_supported: [...signingAlgs],
    scopes_supported: [...oidcScopes],
    claims_supported: ['sub', 'iss', 'aud', 'exp', 'iat', 'auth_time', 'nonce', 'acr', 'amr', 'name', 'email', 'preferred_username'],
    // OIDC Core §5.5: the claims parameter is read for its id_token acr request (essential or not).
    claims_parameter_supported: true,
    // OIDC Discovery §3: the levels Clearance asserts, weakest first (src/identity/acr.ts).
    acr_values_supported: [...acrLadder],
    request_parameter_supported: true,
    // Only PAR request_uris (RFC 9126); Clearance never fetches a request_uri from the web.
    request_uri_parameter_supported: false,
    request_object_signing_alg_values_supported: [...requestObjectAlgs],
    authorization_details_types_supported: [...detailTypes.keys()],
  }),
};

/**
 * The browser-binding cookie's base name: interactions may only be resumed by the browser that
 * started them. A browser holds it as `cookieName(browserCookieName, cookieScope(issuer))` (prefixed on https).
 */
export const browserCookieName = 'clearance_browser';

const browserIdPattern = /^[A-Za-z0-9_-]{43}$/;

async function start(ctx: Context, request: FastifyRequest, reply: FastifyReply, params: AuthorizationParameters): Promise<FastifyReply> {
  // Read with the pushed request, in one round trip.
  const session = (flight: Flight) => readSession(ctx, request.headers.cookie, flight);
  let browserId = presentedBrowserId(ctx, request);
  let setCookie: string | undefined;
  if (!browserId) {
    browserId = randomBytes(32).toString('base64url');
    const scope = cookieScope(ctx.config.issuer);
    // Sent to /authorize, /authorize/resume and /interaction (the sign-in and consent pages check
    // it too); Lax, because the browser arrives from the client's site by a top-level navigation.
    setCookie = serializeCookie(cookieName(browserCookieName, scope), browserId, { path: scope.path, secure: scope.secure, sameSite: 'Lax' });
  }
  const outcome = await startAuthorization(ctx, { params, session, browserId, requestId: request.id });
  if (setCookie && outcome.kind === 'interaction') reply.header('set-cookie', setCookie);
  return sendOutcome(ctx, request, reply, outcome);
}

/** The binding cookie's value, when exactly one well-formed value was sent. */
export function presentedBrowserId(ctx: Pick<Context, 'config'>, request: FastifyRequest): string | undefined {
  const values = [...new Set(cookieValues(request.headers.cookie, cookieName(browserCookieName, cookieScope(ctx.config.issuer))).filter((v) => browserIdPattern.test(v)))];
  return values.length === 1 ? values[0] : undefined;
}

function sendOutcome(ctx: Context, request: FastifyRequest, reply: FastifyReply, outcome: AuthorizeOutcome): FastifyReply {
  if (outcome.kind === 'page') {
    const { error } = outcome;
    request.log.info({ error: error.error, detail: error.detail ?? error.description }, 'authorization request refused without redirect');
    return sendErrorPage(ctx, request, reply, {
      status: error.status >= 400 && error.status < 500 ? error.status : 400,
      title: 'This sign-in request cannot be completed',
      message: `${error.toJSON().error_description ?? 'The request is invalid.'} (${error.error})`,
    });
  }
  // RFC 9700 §4.12: 303 See Other, so the browser follows with a GET and never re-posts.
  return reply.code(303).header('location', outcome.location).header('cache-control', 'no-store').send();
}
