import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Authentication } from '../../authorization/contract.ts';
import type { Context } from '../../context.ts';
import type { FormParameters } from '../../parameters.ts';
import { readSession } from '../../identity/sessions.ts';
import { findUser, type User } from '../../identity/users.ts';
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

/**
 * The session and person of a form POST to the account pages with a valid CSRF token and no
 * foreign Origin (checkedForm), else undefined (then answer `forbidden`).
 */
export async function signedInForm(ctx: Context, request: FastifyRequest): Promise<{ session: Authentication; user: User; form: FormParameters } | undefined> {
  const session = await readSession(ctx, request.headers.cookie);
  const form = session && checkedForm(ctx, request, session);
  const user = form && (await findUser(ctx, session.userId));
  return session && form && user ? { session, user, form } : undefined;
}

export function forbidden(ctx: Context, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  return sendErrorPage(ctx, request, reply, {
    status: 403,
    title: 'This form has expired',
    message: 'The form could not be checked, so nothing was changed. Make sure cookies are allowed for this site, open your account page again and retry.',
  });
}

