import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Context } from '../context.ts';
import { issuerPath } from '../endpoints/endpoint.ts';
import { errorPage } from './error.ts';
import { OAuthError } from '../oauth-error.ts';
import { PasswordHasherBusyError } from '../identity/passwords.ts';
import { isDatabaseUnavailable } from '../storage/faults.ts';
import { isMasterKeyUnavailable } from '../keys/keyring.ts';
import type { SafeHtml } from './html.ts';

/**
 * The Content-Security-Policy of Clearance's pages: no script at all, styles only from our own
 * stylesheet, never framed (RFC 9700 §4.16), no <base> rewriting.
 *
 * Pages with a form that leads back to the application (login, consent) carry no `form-action`:
 * Chrome and Safari apply it to every redirect that follows the submission
 * (w3c/webappsec-csp#8), and ours end in a redirect to the client's redirect_uri, which may go on
 * to the client's other origins or a native app's scheme. Escaping every value and allowing no
 * script is what keeps injected forms out. Pages whose forms post to Clearance and are answered
 * with a 303 back to Clearance (the account page) allow `form-action 'self'`. Pages without a form
 * forbid form submission altogether.
 *
 * The pages that run a passkey ceremony (sign-in, consent with an approval, account, a request
 * to approve) add `script-src` naming exactly the two passkey scripts' URLs (src/ui/assets.ts) and `connect-src 'self'` (the script asks
 * Clearance for the ceremony's options): no inline script, no eval, nothing from elsewhere.
 */
export const pageCsp = {
  form: "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'",
  ownForm: "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  static: "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
} as const;

/** A page's CSP: `pageCsp[csp]`, plus the passkey scripts' sources when it runs them. */
export function pageCspOf(csp: keyof typeof pageCsp, scripts?: readonly string[]): string {
  return scripts ? `${pageCsp[csp]}; script-src ${scripts.join(' ')}; connect-src 'self'` : pageCsp[csp];
}

export interface PageResponse {
  status: number;
  page: SafeHtml;
  csp: keyof typeof pageCsp;
  /** The page runs the passkey scripts: their URLs (passkeyScriptSources), which its CSP allows. */
  scripts?: readonly string[];
  setCookie?: string[];
  headers?: Record<string, string>;
}

/**
 * Sends an HTML page: its CSP (the app adds X-Frame-Options DENY, Referrer-Policy no-referrer and
 * nosniff to every response), never cached (it holds a CSRF token, or personal data).
 */
export function sendPage(reply: FastifyReply, response: PageResponse): FastifyReply {
  reply
    .code(response.status)
    .headers({
      ...response.headers,
      'content-security-policy': pageCspOf(response.csp, response.scripts),
      'cache-control': 'no-store',
      pragma: 'no-cache',
    })
    .type('text/html; charset=utf-8');
  if (response.setCookie && response.setCookie.length > 0) reply.header('set-cookie', response.setCookie);
  return reply.send(response.page.toString());
}

export interface ErrorPageOptions {
  status: number;
  title: string;
  message: string;
  headers?: Record<string, string>;
}

/**
 * Sends the error page (for errors that must not redirect, e.g. an unregistered redirect_uri at
 * the authorization endpoint), with the request id as the reference a person can quote.
 */
export function sendErrorPage(ctx: Pick<Context, 'config'>, request: FastifyRequest, reply: FastifyReply, options: ErrorPageOptions): FastifyReply {
  return sendPage(reply, {
    status: options.status,
    csp: 'static',
    page: errorPage({ base: issuerPath(ctx.config.issuer), title: options.title, message: options.message, reference: request.id }),
    ...(options.headers ? { headers: options.headers } : {}),
  });
}

/** RFC 9110 §15.4.4 and RFC 9700 §4.12: 303 after a form POST, so the browser follows with a GET and never re-posts it. */
export function seeOther(reply: FastifyReply, location: string): FastifyReply {
  return reply.code(303).header('location', location).header('cache-control', 'no-store').send();
}

/**
 * Runs a handler; an error becomes an error page, never JSON (a person is looking at it): an
 * OAuthError keeps its status and public description, a busy password hasher or an unavailable
 * database (storage/faults.ts) is 503, anything else 500 with no detail (logged with the request id).
 */
export async function guarded(ctx: Context, request: FastifyRequest, reply: FastifyReply, handler: () => Promise<FastifyReply>): Promise<FastifyReply> {
  try {
    return await handler();
  } catch (error) {
    if (error instanceof OAuthError && error.status < 500) {
      if (error.detail) request.log.info({ error: error.error, detail: error.detail }, 'interaction refused');
      return sendErrorPage(ctx, request, reply, {
        status: error.status,
        title: 'This request cannot continue',
        message: error.description ?? 'Return to the application and start again.',
        headers: { ...error.headers },
      });
    }
    if (error instanceof PasswordHasherBusyError) {
      return sendErrorPage(ctx, request, reply, { status: 503, title: 'Busy', message: 'Too many people are signing in right now. Try again in a moment.', headers: { 'retry-after': '5' } });
    }
    if (isMasterKeyUnavailable(error)) {
      // This node no longer holds the key the database seals with (src/keys/keyring.ts): fail closed.
      request.log.warn({ reqId: request.id, cause: (error as Error).message }, 'master key unavailable');
      return sendErrorPage(ctx, request, reply, { status: 503, title: 'Temporarily unavailable', message: 'The service is temporarily unavailable. Try again in a moment.', headers: { 'retry-after': '5' } });
    }
    if (isDatabaseUnavailable(error)) {
      request.log.warn({ reqId: request.id, cause: (error as Error).message }, 'database unavailable');
      return sendErrorPage(ctx, request, reply, { status: 503, title: 'Temporarily unavailable', message: 'The service is temporarily unavailable. Try again in a moment.', headers: { 'retry-after': '1' } });
    }
    request.log.error({ err: error, reqId: request.id }, 'unexpected error');
    return sendErrorPage(ctx, request, reply, { status: 500, title: 'Something went wrong', message: 'The server could not complete the request. Try again, or quote the reference below to support.' });
  }
}
