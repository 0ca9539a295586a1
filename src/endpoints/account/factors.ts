import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Authentication } from '../../authorization/contract.ts';
import type { Context } from '../../context.ts';
import type { ChangedFactor } from '../../identity/factor-changes.ts';
import { accountFactors, confirmTotpEnrolment, regenerateRecoveryCodes, removeTotp } from '../../identity/factors/enrolment.ts';
import { takeNotices, type AccountNotice } from '../../identity/factors/notices.ts';
import { beginTotpEnrolment, pendingEnrolmentIsFor, pendingTotpEnrolment } from '../../identity/factors/totp.ts';
import { readSession } from '../../identity/sessions.ts';
import { findUser, type User } from '../../identity/users.ts';
import { recoveryCodesPage, totpSetupPage, type AccountFactorsView } from '../../ui/account-factors.ts';
import { csrfBinding, csrfToken } from '../../ui/csrf.ts';
import { qrSvg } from '../../ui/qr.ts';
import { guarded, seeOther, sendErrorPage, sendPage } from '../../ui/respond.ts';
import { issuerPath } from '../endpoint.ts';
import { factorGate, refusedChange, type FactorGate } from './factor-gate.ts';
import { forbidden, signedInForm } from './forms.ts';

/**
 * A person's second factors on their account page (src/identity/factors). Every POST needs a
 * valid session and the account forms' CSRF token (forms.ts), else a 403 page and nothing changes.
 * Every route below, GET /account/totp included, then follows the one rule for changing factors
 * (factor-gate.ts, src/identity/factor-changes.ts): a fresh session (15 minutes) made with the
 * person's strongest factor, not through an upstream identity provider nor with a smart card —
 * else a 403 page saying how to sign in, nothing changes. So whoever has only the
 * password of a person with a passkey cannot enrol an authenticator of their own (and reach `mfa`,
 * and lock the person's password sign-in behind it). A session made with a recovery code changes
 * no factor (rule 2 there): a person who lost their authenticator asks for a recovery
 * (POST /account/recovery), which a second person approves.
 *
 * POST /account/totp — begins enrolling an authenticator: a new secret, sealed bound to this
 *   session, stored unconfirmed (replacing an unconfirmed one); 303 to GET /account/totp. A person
 *   who has a confirmed one must remove it first (303 to /account, nothing changes).
 * GET /account/totp — the QR code (inline SVG: the strict CSP stays) and the secret in text, with
 *   the form for the first code; 303 to /account when no enrolment begun by this session is pending
 *   (another session of the person never sees its secret).
 * POST /account/totp/confirm — the first code (confirmTotpEnrolment, this session's enrolment
 *   only): wrong → the page again, 400; right → the authenticator signs in from now on, its code's
 *   time step is used, and the ten recovery codes are shown on the answer, once (none for a
 *   privileged role: the page says how they recover instead).
 * POST /account/totp/remove — removes the authenticator and its recovery codes; 303 to /account. A
 *   password-only session (one from before the enrolment, or a stolen one) cannot undo it. The
 *   authenticator that is the only factor meeting the person's role minimum stays (409 page saying
 *   to add a passkey first, `user.factor_removal_refused`): else the password alone would enrol
 *   the next one (src/identity/factor-changes.ts removalLeavesBelowMinimum). Removing a confirmed
 *   one signs the person out everywhere but here (this session goes on under a new cookie).
 * POST /account/recovery-codes — refused for a privileged role (403); ten new codes replace the
 *   old ones, shown on the answer, once.
 */
export function accountFactorRoutes(app: FastifyInstance, ctx: Context): void {
  const base = issuerPath(ctx.config.issuer);
  const accountUrl = `${ctx.config.issuer}/account`;
  const totpUrl = `${ctx.config.issuer}/account/totp`;

  const change = (request: FastifyRequest) => ({ sourceAddress: request.ip, requestId: request.id });

  app.post(`${base}/account/totp`, async (request, reply) =>
    guarded(ctx, request, reply, async () => {
      const signedIn = await signedInForm(ctx, request);
      if (!signedIn) return forbidden(ctx, request, reply);
      const refused = await refusal(signedIn.session, 'authenticator');
      if (refused) return refusedChange(ctx, request, reply, 'authenticator', refused);
      const begun = await beginTotpEnrolment(ctx, signedIn.user.id, signedIn.session.sessionId);
      return seeOther(reply, begun.ok ? totpUrl : accountUrl);
    }),
  );

  app.get(`${base}/account/totp`, async (request, reply) =>
    guarded(ctx, request, reply, async () => {
      const session = await readSession(ctx, request.headers.cookie);
      const user = session && (await findUser(ctx, session.userId));
      if (!session || !user) return seeOther(reply, accountUrl);
      const refused = await refusal(session, 'authenticator');
      if (refused) return refusedChange(ctx, request, reply, 'authenticator', refused);
      return showSetup(request, reply, session, user, 200);
    }),
  );

  app.post(`${base}/account/totp/confirm`, async (request, reply) =>
    guarded(ctx, request, reply, async () => {
      const signedIn = await signedInForm(ctx, request);
      if (!signedIn) return forbidden(ctx, request, reply);
      const { session, user, form } = signedIn;
      const refused = await refusal(session, 'authenticator');
      if (refused) return refusedChange(ctx, request, reply, 'authenticator', refused);
      const confirmed = await confirmTotpEnrolment(ctx, user, session.sessionId, (form.get('code') ?? '').slice(0, 32), change(request));
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
      const signedIn = await signedInForm(ctx, request);
      if (!signedIn) return forbidden(ctx, request, reply);
      const refused = await refusal(signedIn.session, 'authenticator');
      if (refused) return refusedChange(ctx, request, reply, 'authenticator', refused);
      const removal = await removeTotp(ctx, signedIn.user, { ...change(request), session: signedIn.session.sessionId });
      if (!removal.removed && removal.reason === 'last_required_factor') {
        return sendErrorPage(ctx, request, reply, {
          status: 409,
          title: 'Your authenticator cannot be removed',
          message:
            'Your role needs more than a password, and your authenticator app is the strongest way you have to sign in, so it cannot be removed. Add a passkey first, then remove the authenticator. Nothing was changed.',
        });
      }
      // Every other session of the person ended with the authenticator; this one goes on under a new id.
      if (removal.removed && removal.setCookie) reply.header('set-cookie', removal.setCookie);
      return seeOther(reply, accountUrl);
    }),
  );

  app.post(`${base}/account/recovery-codes`, async (request, reply) =>
    guarded(ctx, request, reply, async () => {
      const signedIn = await signedInForm(ctx, request);
      if (!signedIn) return forbidden(ctx, request, reply);
      const refused = await refusal(signedIn.session, 'recovery_codes');
      if (refused) return refusedChange(ctx, request, reply, 'recovery_codes', refused);
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
    const pending = await pendingTotpEnrolment(ctx, user.id, user.username, session.sessionId);
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

  /** What this session must do before changing `factor` (factor-gate.ts), or undefined when it may. */
  async function refusal(session: Authentication, factor: ChangedFactor): Promise<string | undefined> {
    return (await factorGate(ctx, session)).refused(factor);
  }
}

/**
 * What the account page shows of the person's factors — with what this session may change
 * (`gate`) — and the notices kept for them (marked seen only by a session made with the
 * authenticator or a passkey: takeNotices).
 */
export async function accountFactorsView(ctx: Context, session: Authentication, user: User, gate: FactorGate): Promise<{ factors: AccountFactorsView; notices: AccountNotice[] }> {
  const factors = await accountFactors(ctx, user);
  const notices = await takeNotices(ctx, session);
  const totp = factors.totp;
  // An enrolment is continued only in the session that began it (its secret opens for no other).
  const pendingHere = totp !== undefined && totp.confirmedAt === null && (await pendingEnrolmentIsFor(ctx, user.id, session.sessionId));
  const authenticatorLocked = gate.refused('authenticator');
  const recoveryCodesLocked = gate.refused('recovery_codes');
  return {
    factors: {
      ...(totp ? { totp: { confirmed: totp.confirmedAt !== null, createdAt: totp.confirmedAt ?? totp.createdAt, lastUsedAt: totp.lastUsedAt, pendingHere } } : {}),
      recoveryCodesLeft: factors.recoveryCodesLeft,
      privilegedRoles: factors.privilegedRoles,
      ...(authenticatorLocked ? { authenticatorLocked } : {}),
      ...(recoveryCodesLocked ? { recoveryCodesLocked } : {}),
    },
    notices,
  };
}
