import type { FastifyInstance } from 'fastify';
import type { Authentication } from '../../authorization/contract.ts';
import type { Context } from '../../context.ts';
import { acr, acrSatisfies } from '../../identity/acr.ts';
import { enrolmentLink, openOwnRecovery } from '../../identity/recovery/requests.ts';
import { recoverySettings } from '../../identity/recovery/settings.ts';
import { requestOpenedPage } from '../../ui/recovery.ts';
import { guarded, sendErrorPage, sendPage } from '../../ui/respond.ts';
import { issuerPath } from '../endpoint.ts';
import { forbidden, signedInForm } from './forms.ts';

/**
 * The person asks for a recovery of their own lost credentials (src/identity/recovery,
 * docs/recovery.md "Who opens"):
 *
 * POST /account/recovery (lost=passkeys&lost=authenticator)
 *   1. a foreign Origin, no valid session, or a missing or wrong CSRF token → 403 page;
 *   2. a session that did not prove two factors (a password alone) → 403 page: ask the help desk;
 *   3. openOwnRecovery: refused (another waits, no password, nothing named) → 409/400 page;
 *   4. the page with the enrolment link, shown this once (no-store), inert until a second person
 *      approves; useless without the person's password.
 */
export function accountRecoveryRoutes(app: FastifyInstance, ctx: Context): void {
  const base = issuerPath(ctx.config.issuer);
  app.post(`${base}/account/recovery`, async (request, reply) =>
    guarded(ctx, request, reply, async () => {
      const checked = await signedInForm(ctx, request);
      if (!checked) return forbidden(ctx, request, reply);
      const { session, form, user } = checked;
      if (!mayOpenOwnRecovery(session)) {
        return sendErrorPage(ctx, request, reply, {
          status: 403,
          title: 'Sign in with two factors first',
          message: 'To ask for a recovery yourself, sign in with your password and your authenticator app or a recovery code. If you cannot, ask your help desk. Nothing was changed.',
        });
      }
      const lost = form.all('lost').slice(0, 4);
      const opened = await openOwnRecovery(ctx, { user, session, lost, requestId: request.id });
      if (!opened.ok) {
        const pending = opened.reason === 'already_pending';
        return sendErrorPage(ctx, request, reply, {
          status: pending ? 409 : 400,
          title: 'The recovery could not be requested',
          message: pending
            ? 'A recovery of your account already waits for approval. Use the link you were given then. Nothing was changed.'
            : opened.reason === 'no_password'
              ? 'Your account has no password, which the recovery link needs: ask your help desk. Nothing was changed.'
              : 'Choose what you lost (your passkeys, your authenticator app, or both). Nothing was changed.',
        });
      }
      const settings = await recoverySettings(ctx.storage.db);
      return sendPage(reply, {
        status: 200,
        csp: 'static',
        page: requestOpenedPage(base, { link: enrolmentLink(ctx.config.issuer, opened.token), expiresAt: opened.request.expiresAt, enrolmentMinutes: Math.round(settings.enrolmentTtlMs / 60_000) }),
      });
    }),
  );
}

/** Whether a session may open a recovery of its person: it proved two factors (never a password alone). */
export function mayOpenOwnRecovery(session: Pick<Authentication, 'acr'>): boolean {
  return acrSatisfies(session.acr, acr.multiFactor);
}
