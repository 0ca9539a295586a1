import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Authentication } from '../../authorization/contract.ts';
import type { Context } from '../../context.ts';
import type { FormParameters } from '../../parameters.ts';
import { csrfField, csrfTokenValid } from '../../ui/csrf.ts';
import { sendErrorPage } from '../../ui/respond.ts';

/**
 * The form of a POST, if it carries exactly one CSRF token, valid for this browser's secret and
 * this session, and no foreign Origin. `Origin: null` is what browsers send for a form POST from
 * a page with Referrer-Policy no-referrer (Fetch §3.1), so it is accepted; the token decides.
 */
export function checkedForm(ctx: Context, request: FastifyRequest, session: Authentication): FormParameters | undefined {
  const form = request.form;
  if (!form) return undefined;
  const origin = request.headers.origin;
  if (origin !== undefined && origin !== 'null' && origin !== new URL(ctx.config.issuer).origin) return undefined;
  if (form.all(csrfField).length !== 1) return undefined;
  if (!csrfTokenValid(ctx.config.issuer, request.headers.cookie, session.sessionId, 'account', form.get(csrfField))) return undefined;
  return form;
}

export function forbidden(ctx: Context, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  return sendErrorPage(ctx, request, reply, {
    status: 403,
    title: 'This form has expired',
    message: 'The form could not be checked, so nothing was changed. Make sure cookies are allowed for this site, open your account page again and retry.',
  });
}

