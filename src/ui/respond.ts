import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Context } from '../context.ts';
import { issuerPath } from '../endpoints/endpoint.ts';
import { errorPage } from './error.ts';
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
 */
export const pageCsp = {
  form: "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'",
  ownForm: "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  static: "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
} as const;

export interface PageResponse {
  status: number;
  page: SafeHtml;
  csp: keyof typeof pageCsp;
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
      'content-security-policy': pageCsp[response.csp],
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
