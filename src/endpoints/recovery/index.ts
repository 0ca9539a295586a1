import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Context } from '../../context.ts';
import { sendError } from '../../http/errors.ts';
import { sendJson } from '../../http/json.ts';
import { passkeyName } from '../../identity/passkeys/store.ts';
import { enrolmentBinding, enrolmentOptions, enrolThroughLink, readEnrolmentLink, recordLinkRefusal, type LinkRefusal, type LiveLink } from '../../identity/recovery/enrolment.ts';
import { OAuthError } from '../../oauth-error.ts';
import type { FormParameters } from '../../parameters.ts';
import { passkeyScriptSources } from '../../ui/assets.ts';
import { csrfBinding, csrfField, csrfToken, csrfTokenValid } from '../../ui/csrf.ts';
import { enrolledPage, enrolmentPage } from '../../ui/recovery.ts';
import { guarded, sendErrorPage, sendPage } from '../../ui/respond.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';

/**
 * The enrolment link of an approved recovery (src/identity/recovery/enrolment.ts,
 * docs/recovery.md "The link"). It opens ONE thing: enrolling a new passkey. No session is made
 * and no token issued; afterwards the person signs in normally. The token is in the path, so the
 * log writes the path with the token replaced (src/log.ts loggedPath) and no audit event holds it;
 * pages carry Referrer-Policy no-referrer (every response) and are never cached.
 *
 * GET /recovery/{token}
 *   1. a token that is no live link → an error page: 404 (unknown), 403 (not approved yet),
 *      410 (expired, used, the password changed since the request was opened); each refusal, here
 *      as at the two POSTs, is `recovery.link_refused` with its reason (recordLinkRefusal);
 *   2. the enrolment page: the person's password and a name, the passkey form (the passkey
 *      scripts only), its CSRF token bound to this browser and this recovery.
 *
 * POST /recovery/{token}/options (JSON, for the page's script)
 *   1. a foreign Origin or a missing or wrong CSRF token → 403 access_denied JSON;
 *   2. no live link → 404 not_found JSON;
 *   3. the creation options of a passkey for the person, with a challenge bound to this recovery.
 *
 * POST /recovery/{token} (password, name, credential)
 *   1. as for the options (403 page), then a bad name → the page again, 400;
 *   2. enrolThroughLink: a wrong password → the page again, 400
 *      (the link dies at the fifth); a failed registration → the page with the reason, 400; a link
 *      no longer live → its error page; else the passkey is enrolled, the link used, and the answer
 *      says to sign in through the application — with no session cookie.
 */
export const recovery: Endpoint = {
  register(app, ctx) {
    const base = issuerPath(ctx.config.issuer);
    const path = `${base}/recovery/:token`;

    app.get<{ Params: { token: string } }>(path, async (request, reply) =>
      guarded(ctx, request, reply, async () => {
        const state = await readEnrolmentLink(ctx, request.params.token);
        await recordLinkRefusal(ctx, state, { sourceAddress: request.ip, requestId: request.id });
        if (!state.ok) return linkError(ctx, request, reply, state.reason);
        return showPage(request, reply, state.link, 200);
      }),
    );

    app.post<{ Params: { token: string } }>(`${path}/options`, async (request, reply) =>
      guarded(ctx, request, reply, async () => {
        const state = await readEnrolmentLink(ctx, request.params.token);
        await recordLinkRefusal(ctx, state, { sourceAddress: request.ip, requestId: request.id });
        if (!state.ok) return sendError(reply, new OAuthError('not_found', 'this recovery link is not valid now'));
        if (!checkedForm(ctx, request, state.link.requestId)) return sendError(reply, new OAuthError('access_denied', 'the form could not be checked; reload the page'));
        return sendJson(reply, await enrolmentOptions(ctx, state.link));
      }),
    );

    app.post<{ Params: { token: string } }>(path, async (request, reply) =>
      guarded(ctx, request, reply, async () => {
        const token = request.params.token;
        const state = await readEnrolmentLink(ctx, token);
        await recordLinkRefusal(ctx, state, { sourceAddress: request.ip, requestId: request.id });
        if (!state.ok) return linkError(ctx, request, reply, state.reason);
        const form = checkedForm(ctx, request, state.link.requestId);
        if (!form) {
          return sendErrorPage(ctx, request, reply, { status: 403, title: 'This form has expired', message: 'The form could not be checked, so nothing was changed. Open the link again and retry.' });
        }
        const name = passkeyName(form.get('name'));
        if (!name) return showPage(request, reply, state.link, 400, 'Give the passkey a name of 1 to 64 characters.');
        const outcome = await enrolThroughLink(ctx, {
          token,
          password: (form.get('password') ?? '').slice(0, 1024),
          name,
          credential: form.get('credential'),
          sourceAddress: request.ip,
          requestId: request.id,
        });
        if (outcome.ok) return sendPage(reply, { status: 200, csp: 'static', page: enrolledPage(base) });
        if (outcome.reason === 'wrong_password') {
          if (outcome.killed) return linkError(ctx, request, reply, 'unknown');
          return showPage(request, reply, state.link, 400, 'That password is not right. Enter the password you sign in with.');
        }
        if (outcome.reason === 'registration_failed') return showPage(request, reply, state.link, 400, outcome.message);
        return linkError(ctx, request, reply, outcome.reason);
      }),
    );

    function showPage(request: FastifyRequest<{ Params: { token: string } }>, reply: FastifyReply, link: LiveLink, status: number, error?: string): FastifyReply {
      const csrf = csrfBinding(ctx.config.issuer, request.headers.cookie);
      return sendPage(reply, {
        status,
        csp: 'ownForm',
        scripts: passkeyScriptSources(ctx.config.issuer),
        page: enrolmentPage({
          base,
          action: `${base}/recovery/${request.params.token}`,
          csrfToken: csrfToken(csrf.secret, enrolmentBinding(link.requestId), 'recovery'),
          username: link.user.username,
          expiresAt: link.expiresAt,
          asksPassword: link.passwordFingerprint !== null,
          ...(error ? { error } : {}),
        }),
        ...(csrf.setCookie ? { setCookie: [csrf.setCookie] } : {}),
      });
    }
  },
};

/** The form of a POST with exactly one CSRF token for this recovery, and no foreign Origin. */
function checkedForm(ctx: Context, request: FastifyRequest, requestId: string): FormParameters | undefined {
  const form = request.form;
  if (!form) return undefined;
  const origin = request.headers.origin;
  if (origin !== undefined && origin !== 'null' && origin !== new URL(ctx.config.issuer).origin) return undefined;
  if (form.all(csrfField).length !== 1) return undefined;
  return csrfTokenValid(ctx.config.issuer, request.headers.cookie, enrolmentBinding(requestId), 'recovery', form.get(csrfField)) ? form : undefined;
}

const linkErrors: Record<LinkRefusal, { status: number; title: string; message: string }> = {
  unknown: { status: 404, title: 'This link is not valid', message: 'This recovery link does not exist or no longer works. Ask your help desk for a new recovery.' },
  not_approved: { status: 403, title: 'Not approved yet', message: 'This recovery has not been approved yet. Open the link again once a recovery approver has approved it.' },
  expired: { status: 410, title: 'This link has expired', message: 'This recovery link has expired. Ask your help desk for a new recovery.' },
  password_changed: {
    status: 410,
    title: 'This link no longer works',
    message: 'The password of this account was changed after this recovery was opened, so its link no longer works. Ask your help desk for a new recovery.',
  },
  used: { status: 410, title: 'This link has been used', message: 'This recovery link was already used. Sign in through your application with the passkey you enrolled.' },
};

function linkError(ctx: Context, request: FastifyRequest, reply: FastifyReply, reason: LinkRefusal): FastifyReply {
  return sendErrorPage(ctx, request, reply, linkErrors[reason]);
}
