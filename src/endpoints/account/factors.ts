import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Authentication } from '../../authorization/contract.ts';
import type { Context } from '../../context.ts';
import { acr, acrSatisfies } from '../../identity/acr.ts';
import { accountFactors, confirmTotpEnrolment, regenerateRecoveryCodes, removeTotp } from '../../identity/factors/enrolment.ts';
import { takeNotices, type AccountNotice } from '../../identity/factors/notices.ts';
import { beginTotpEnrolment, pendingTotpEnrolment } from '../../identity/factors/totp.ts';
import { readSession } from '../../identity/sessions.ts';
import { findUser, type User } from '../../identity/users.ts';
import { recoveryCodesPage, totpSetupPage, type AccountFactorsView } from '../../ui/account-factors.ts';
import { csrfBinding, csrfToken } from '../../ui/csrf.ts';
import { qrSvg } from '../../ui/qr.ts';
import { guarded, seeOther, sendErrorPage, sendPage } from '../../ui/respond.ts';
import { issuerPath } from '../endpoint.ts';
import { checkedForm, forbidden } from './forms.ts';

/**
 * A person's second factors on their account page (src/identity/factors). Every POST needs a
 * valid session and the account forms' CSRF token (forms.ts), else a 403 page and nothing changes.
 *
 * POST /account/totp — begins enrolling an authenticator: a new secret, sealed, stored unconfirmed
 *   (replacing an unconfirmed one); 303 to GET /account/totp. A person who has a confirmed one must
 *   remove it first (303 to /account, nothing changes).
 * GET /account/totp — the QR code (inline SVG: the strict CSP stays) and the secret in text, with
 *   the form for the first code; 303 to /account when no enrolment is pending.
 * POST /account/totp/confirm — the first code (confirmTotpEnrolment): wrong → the page again, 400;
 *   right → the authenticator signs in from now on, its code's time step is used, and the ten
 *   recovery codes are shown on the answer, once (none for a privileged role: the page says how
 *   they recover instead).
 * POST /account/totp/remove — only from a session made with a second factor (acr mfa or above):
 *   a password-only session (one from before the enrolment, or a stolen one) cannot undo it, 403;
 *   removes the authenticator and its recovery codes; 303 to /account.
 * POST /account/recovery-codes — likewise from a session made with a second factor only; refused
 *   for a privileged role (403); ten new codes replace the old ones, shown on the answer, once.
 */
export function accountFactorRoutes(app: FastifyInstance, ctx: Context): void {
  const base = issuerPath(ctx.config.issuer);
  const accountUrl = `${ctx.config.issuer}/account`;
  const totpUrl = `${ctx.config.issuer}/account/totp`;

  /** The session and person of a POST with a valid CSRF token, else undefined (then answer `forbidden`). */
  async function signedInForm(request: FastifyRequest) {
    const session = await readSession(ctx, request.headers.cookie);
    if (!session) return undefined;
    const form = checkedForm(ctx, request, session);
    const user = form && (await findUser(ctx, session.userId));
    return form && user ? { session, user, form } : undefined;
  }
  const change = (request: FastifyRequest) => ({ sourceAddress: request.ip, requestId: request.id });

  app.post(`${base}/account/totp`, async (request, reply) =>
    guarded(ctx, request, reply, async () => {
      const signedIn = await signedInForm(request);
      if (!signedIn) return forbidden(ctx, request, reply);
      const begun = await beginTotpEnrolment(ctx, signedIn.user.id);
      return seeOther(reply, begun.ok ? totpUrl : accountUrl);
    }),
  );

  app.get(`${base}/account/totp`, async (request, reply) =>
    guarded(ctx, request, reply, async () => {
      const session = await readSession(ctx, request.headers.cookie);
      const user = session && (await findUser(ctx, session.userId));
      if (!session || !user) return seeOther(reply, accountUrl);
      return showSetup(request, reply, session, user, 200);
    }),
  );

  app.post(`${base}/account/totp/confirm`, async (request, reply) =>
    guarded(ctx, request, reply, async () => {
      const signedIn = await signedInForm(request);
      if (!signedIn) return forbidden(ctx, request, reply);
      const { session, user, form } = signedIn;
      const confirmed = await confirmTotpEnrolment(ctx, user, (form.get('code') ?? '').slice(0, 32), change(request));
      if (!confirmed.ok && confirmed.reason === 'wrong_code') {
        return showSetup(request, reply, session, user, 400, 'That code is not right. Check that the app shows the account you just added, then enter its current code.');
      }
      if (!confirmed.ok) return seeOther(reply, accountUrl);
      return sendPage(reply, {
        status: 200,
        csp: 'static',
        page: recoveryCodesPage({ base, codes: confirmed.recoveryCodes ?? [], justEnrolled: true, privilegedRoles: (await accountFactors(ctx, user)).privilegedRoles }),
      });
    }),
  );

  app.post(`${base}/account/totp/remove`, async (request, reply) =>
    guarded(ctx, request, reply, async () => {
      const signedIn = await signedInForm(request);
      if (!signedIn) return forbidden(ctx, request, reply);
      if (!strong(signedIn.session)) return needsSecondFactor(request, reply);
      await removeTotp(ctx, signedIn.user, change(request));
      return seeOther(reply, accountUrl);
    }),
  );

  app.post(`${base}/account/recovery-codes`, async (request, reply) =>
    guarded(ctx, request, reply, async () => {
      const signedIn = await signedInForm(request);
      if (!signedIn) return forbidden(ctx, request, reply);
      if (!strong(signedIn.session)) return needsSecondFactor(request, reply);
      const outcome = await regenerateRecoveryCodes(ctx, signedIn.user, change(request));
      if (!outcome.ok && outcome.reason === 'privileged_role') {
        return sendErrorPage(ctx, request, reply, {
          status: 403,
          title: 'Recovery codes are not available',
          message: 'Recovery codes cannot be used with your role. If you lose your authenticator, access is restored only through an independent approval: ask your administrator.',
        });
      }
      if (!outcome.ok) return seeOther(reply, accountUrl);
      return sendPage(reply, { status: 200, csp: 'static', page: recoveryCodesPage({ base, codes: outcome.recoveryCodes, justEnrolled: false }) });
    }),
  );

  async function showSetup(request: FastifyRequest, reply: FastifyReply, session: Authentication, user: User, status: number, error?: string): Promise<FastifyReply> {
    const pending = await pendingTotpEnrolment(ctx, user.id, user.username);
    if (!pending) return seeOther(reply, accountUrl);
    const csrf = csrfBinding(ctx.config.issuer, request.headers.cookie);
    return sendPage(reply, {
      status,
      csp: 'ownForm',
      page: totpSetupPage({
        base,
        csrfToken: csrfToken(csrf.secret, session.sessionId, 'account'),
        qr: await qrSvg(pending.uri, 'QR code to add Clearance to your authenticator app'),
        secret: pending.secret,
        ...(error ? { error } : {}),
      }),
      ...(csrf.setCookie ? { setCookie: [csrf.setCookie] } : {}),
    });
  }

  function needsSecondFactor(request: FastifyRequest, reply: FastifyReply): FastifyReply {
    return sendErrorPage(ctx, request, reply, {
      status: 403,
      title: 'Sign in with your authenticator first',
      message: 'This session was started with your password only. Sign out, sign in again through an application with your authenticator code, then retry. Nothing was changed.',
    });
  }
}

/** Whether a session was made with a second factor (or a stronger sign-in). */
function strong(session: Authentication): boolean {
  return acrSatisfies(session.acr, acr.multiFactor);
}

/** What the account page shows of the person's factors, and the notices kept for them (marked seen). */
export async function accountFactorsView(ctx: Context, session: Authentication, user: User): Promise<{ factors: AccountFactorsView; notices: AccountNotice[] }> {
  const factors = await accountFactors(ctx, user);
  const notices = await takeNotices(ctx, user.id);
  return {
    factors: {
      ...(factors.totp ? { totp: { confirmed: factors.totp.confirmedAt !== null, createdAt: factors.totp.confirmedAt ?? factors.totp.createdAt, lastUsedAt: factors.totp.lastUsedAt } } : {}),
      recoveryCodesLeft: factors.recoveryCodesLeft,
      privilegedRoles: factors.privilegedRoles,
      strongSession: strong(session),
    },
    notices,
  };
}
